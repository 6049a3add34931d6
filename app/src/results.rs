//! The run's statistics and the result list: the whole run, virtualized.

use leptos::prelude::*;
use shared::group_digits;

use crate::{state::PageState, values::Values};

/// The longest value (in characters) sure to fit its box: about five lines
/// at the narrowest column. A longer one may scroll, so its box takes focus
/// for keyboard users (WCAG 2.1.1, axe's scrollable-region-focusable).
const FITS_CHARS: usize = 60;

/// Start, current value, steps and peak of the run.
#[component]
pub fn Stats() -> impl IntoView {
    let state = expect_context::<PageState>();
    let stat = move |name: &'static str, pick: fn(&shared::wire::RunView) -> String| {
        let text = Memo::new(move |_| {
            state
                .snapshot
                .with(|s| s.run.as_ref().map_or_else(|| "–".to_owned(), pick))
        });
        let focusable = move || text.with(|t| t.len() > FITS_CHARS).then_some("0");
        view! { <dd data-stat=name tabindex=focusable>{text}</dd> }
    };
    view! {
        <section class="stats" aria-label="Statistics">
            <dl>
                <div><dt>"Start"</dt>{stat("start", |run| group_digits(&run.start))}</div>
                <div><dt>"Current"</dt>{stat("current", |run| group_digits(run.current()))}</div>
                <div><dt>"Steps"</dt>{stat("steps", |run| group_digits(&run.steps.to_string()))}</div>
                <div><dt>"Peak"</dt>{stat("peak", |run| group_digits(&run.peak))}</div>
            </dl>
        </section>
    }
}

/// The height of one row, in CSS pixels (the style sheet gives the same).
pub const ROW_PX: f64 = 28.0;
/// The list's height before the browser measures it (22rem).
const VIEWPORT_PX: f64 = 352.0;
/// The tallest the scrolled content is made: browsers cap an element's
/// height (Chromium at about 33.5 million pixels), so past this many pixels
/// a pixel of scrolling moves more than a pixel of rows.
const MAX_HEIGHT_PX: f64 = 8_000_000.0;
/// The most rows in the page at once, whatever the run's length. A run of
/// up to this many values is in the page whole.
pub const MAX_ROWS: u64 = 300;
/// Rows kept above and below the view of a longer run.
const OVERSCAN: u64 = 20;

/// Which rows are in the page and where, for a list of `total` rows
/// scrolled to `scroll` in a view `viewport` pixels tall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// The scrolled content's height.
    pub height: f64,
    /// The first row in the page (its step).
    pub first: u64,
    /// One past the last row in the page.
    pub end: u64,
    /// Where row `first` is drawn, from the content's top.
    pub top: f64,
}

/// The rows' true height and the content's height (capped).
fn heights(total: u64) -> (f64, f64) {
    let full = total as f64 * ROW_PX;
    (full, full.min(MAX_HEIGHT_PX))
}

/// How far down the rows' true height a scroll position is: the same number
/// while the content is not capped, scaled beyond.
pub fn position(total: u64, scroll: f64, viewport: f64) -> f64 {
    let (full, height) = heights(total);
    let scroll = scroll.clamp(0.0, (height - viewport).max(0.0));
    if full <= height || height <= viewport {
        scroll
    } else {
        scroll * (full - viewport) / (height - viewport)
    }
}

/// The scroll position that shows `position` (the inverse of [`position`]).
pub fn scroll_for(total: u64, position: f64, viewport: f64) -> f64 {
    let (full, height) = heights(total);
    let position = position.clamp(0.0, (full - viewport).max(0.0));
    if full <= height || full <= viewport {
        position
    } else {
        position * (height - viewport) / (full - viewport)
    }
}

/// The rows to put in the page.
pub fn layout(total: u64, scroll: f64, viewport: f64) -> Layout {
    let (_, height) = heights(total);
    let scroll = scroll.clamp(0.0, (height - viewport).max(0.0));
    let at = position(total, scroll, viewport);
    let shown = ((at / ROW_PX) as u64).min(total.saturating_sub(1));
    let (first, end) = if total <= MAX_ROWS {
        (0, total)
    } else {
        let in_view = (viewport / ROW_PX).ceil() as u64 + 1;
        let first = shown.saturating_sub(OVERSCAN);
        let end = (shown + in_view + OVERSCAN)
            .min(total)
            .min(first + MAX_ROWS);
        (first, end)
    };
    Layout {
        height,
        first,
        end,
        top: scroll - (at - first as f64 * ROW_PX),
    }
}

/// The **Results** list: every value of the run, each numbered by its step.
/// Only the rows near the view are in the page (at most [`MAX_ROWS`]); older
/// values are fetched as they scroll into view. It follows the newest value
/// until the user scrolls away, and then stays where it is as values arrive.
#[component]
pub fn ResultList() -> impl IntoView {
    let state = expect_context::<PageState>();
    let values = expect_context::<Values>();
    let scroller = NodeRef::<leptos::html::Div>::new();
    let scroll = RwSignal::new(f64::MAX);
    let viewport = RwSignal::new(VIEWPORT_PX);
    // Whether the view follows the newest value.
    let follow = RwSignal::new(true);
    // The step last gone to, marked in the list.
    let target = RwSignal::new(None::<u64>);
    // Where the reader is, in rows' pixels: kept when values arrive.
    let anchor = StoredValue::new(0.0);
    // The scroll position `place` set last, or the reader's last one.
    let placed = StoredValue::new(None::<i32>);
    let total = Memo::new(move |_| {
        state
            .snapshot
            .with(|s| s.run.as_ref().map_or(0, |run| run.steps + 1))
    });
    let start = Memo::new(move |_| {
        state
            .snapshot
            .with(|s| s.run.as_ref().map(|run| run.start.clone()))
    });
    let layout = Memo::new(move |_| {
        let scroll = if follow.get() { f64::MAX } else { scroll.get() };
        layout(total.get(), scroll, viewport.get())
    });
    // A new run starts at its newest value.
    Effect::new(move |previous: Option<Option<String>>| {
        let now = start.get();
        if previous.is_some_and(|p| p != now) {
            follow.set(true);
            target.set(None);
        }
        now
    });
    // Takes in a move of the reader's: the view is not where `place` put
    // it last. Only the reader's own scrolling starts or stops following
    // (at the bottom, it follows). Checked before every placement too, so a
    // scroll whose event has not arrived yet is never overridden.
    let notice = move || {
        let Some(element) = scroller.get_untracked() else {
            return;
        };
        let at = element.scroll_top();
        if placed.get_value() == Some(at) {
            return;
        }
        placed.set_value(Some(at));
        let (top, seen) = (f64::from(at), f64::from(element.client_height()));
        anchor.set_value(position(total.get_untracked(), top, seen));
        let bottom = f64::from(element.scroll_height()) - seen - ROW_PX / 2.0;
        if follow.get_untracked() != (top >= bottom) {
            follow.set(top >= bottom);
        }
    };
    // Puts the view where it should be as the run grows: at the newest value
    // when following, else at the same rows.
    let place = move || {
        let Some(element) = scroller.get_untracked() else {
            return;
        };
        let to = if follow.get_untracked() {
            f64::from(element.scroll_height())
        } else {
            scroll_for(
                total.get_untracked(),
                anchor.get_value(),
                viewport.get_untracked(),
            )
        };
        element.set_scroll_top(to as i32);
        placed.set_value(Some(element.scroll_top()));
    };
    // After the next render: the rows' new height must be in the page
    // before the view can be put at its bottom (an effect may run before
    // the bindings that size the rows, and a scroll past the old height
    // would stop one row short of the newest value).
    Effect::new(move |_| {
        total.track();
        follow.track();
        request_animation_frame(move || {
            notice();
            place();
        });
    });
    let on_scroll = move |_| {
        let Some(element) = scroller.get_untracked() else {
            return;
        };
        viewport.set(f64::from(element.client_height()));
        scroll.set(f64::from(element.scroll_top()));
        notice();
    };
    // Goes to a step, or (`None`) back to following the newest value.
    let go_to = move |step: Option<u64>| {
        notice();
        target.set(step);
        match step {
            Some(step) => {
                follow.set(false);
                // Two rows of context above it.
                anchor.set_value((step as f64 - 2.0).max(0.0) * ROW_PX);
                place();
            }
            None => follow.set(true),
        }
    };
    let rows = move || {
        let Layout { first, end, .. } = layout.get();
        let shown = values.range(first, end);
        shown
            .into_iter()
            .enumerate()
            .map(|(i, value)| (first + i as u64, value))
            .collect::<Vec<_>>()
    };
    let count = move || match total.get() {
        0 => "No values yet.".to_owned(),
        1 => "1 value.".to_owned(),
        total => format!("{} values.", group_digits(&total.to_string())),
    };
    let height = move || format!("{}px", layout.get().height.round() as i64);
    let top = move || format!("{}px", layout.get().top.round() as i64);
    view! {
        <section class="results" aria-labelledby="results-heading">
            <h2 id="results-heading">"Results"</h2>
            <p class="count" data-count=total>{count}</p>
            <Navigation total go_to follow/>
            <div class="scroller" tabindex="0" aria-label="Results, scrollable" node_ref=scroller on:scroll=on_scroll>
                <div class="rows" style:height=height>
                    <ol role="list" aria-label="Results" style:top=top>
                        <For each=rows key=|(step, value)| (*step, value.clone()) let((step, value))>
                            <li
                                value=step.to_string()
                                data-step=step.to_string()
                                class:target=move || target.get() == Some(step)
                                aria-current=move || (target.get() == Some(step)).then_some("true")
                                aria-busy=value.is_none().then_some("true")
                            >
                                {value.clone().unwrap_or_else(|| "…".to_owned())}
                            </li>
                        </For>
                    </ol>
                </div>
            </div>
            {move || values.error.get().map(|error| view! {
                <p class="list-error" role="alert">
                    "Older values could not be loaded: " {error} " "
                    <button type="button" on:click=move |_| values.retry()>"Try again"</button>
                </p>
            })}
        </section>
    }
}

/// "Go to step …", "Go to peak", "Go to newest" and the download.
#[component]
fn Navigation(
    total: Memo<u64>,
    go_to: impl Fn(Option<u64>) + Copy + Send + Sync + 'static,
    follow: RwSignal<bool>,
) -> impl IntoView {
    let state = expect_context::<PageState>();
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let last = total.get_untracked().saturating_sub(1);
        let typed: String = text
            .get_untracked()
            .chars()
            .filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}'))
            .collect();
        match typed.parse::<u64>() {
            Ok(step) if step <= last && total.get_untracked() > 0 => {
                error.set(None);
                go_to(Some(step));
            }
            _ if total.get_untracked() == 0 => error.set(Some("There are no values yet.".into())),
            _ => error.set(Some(format!(
                "Enter a step from 0 to {}.",
                group_digits(&last.to_string())
            ))),
        }
    };
    let peak = move |_| {
        if let Some(step) = state
            .snapshot
            .with_untracked(|s| s.run.as_ref().map(|run| run.peak_step))
        {
            go_to(Some(step));
        }
    };
    let newest = move |_| go_to(None);
    let empty = move || total.get() == 0;
    let followed = move || empty() || follow.get();
    view! {
        <div class="navigate">
            <form class="go" on:submit=submit>
                <label for="go-step">"Go to step"</label>
                <input
                    id="go-step"
                    type="text"
                    inputmode="numeric"
                    autocomplete="off"
                    prop:value=text
                    on:input=move |ev| text.set(event_target_value(&ev))
                    aria-invalid=move || error.get().is_some().then_some("true")
                    aria-describedby="go-error"
                />
                <button type="submit" disabled=empty>"Go"</button>
            </form>
            <button type="button" on:click=peak disabled=empty>"Go to peak"</button>
            <button type="button" on:click=newest disabled=followed>"Go to newest"</button>
            {move || (!empty()).then(|| {
                let href = state.run.get().map_or_else(|| "/trajectory.csv".to_owned(), |run| format!("/trajectory.csv?run={run}"));
                view! { <a class="download" href=href download>"Download CSV"</a> }
            })}
        </div>
        <p id="go-error" class="go-error" role="alert">{error}</p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_is_in_the_page_whole() {
        let l = layout(112, 0.0, 352.0);
        assert_eq!(
            (l.first, l.end, l.top, l.height),
            (0, 112, 0.0, 112.0 * ROW_PX)
        );
        let l = layout(MAX_ROWS, 1e9, 352.0);
        assert_eq!((l.first, l.end), (0, MAX_ROWS));
    }

    #[test]
    fn a_long_run_keeps_few_rows_wherever_it_is_scrolled() {
        for total in [301, 30_579, 1_000_000, 1_000_000_000_000] {
            for scroll in [0.0, 1234.5, 4e6, 7_999_000.0, f64::MAX] {
                let l = layout(total, scroll, 352.0);
                assert!(l.end - l.first <= MAX_ROWS, "{total} {scroll}: {l:?}");
                assert!(l.end > l.first && l.end <= total);
                assert!(l.height <= MAX_HEIGHT_PX);
            }
        }
        // At the bottom, the last row is in the page.
        assert_eq!(layout(1_000_000, f64::MAX, 352.0).end, 1_000_000);
        // Not capped: a row is where its step says.
        let l = layout(30_579, 28_000.0, 352.0);
        assert_eq!(l.first, 1000 - OVERSCAN);
        assert_eq!(l.top, (1000 - OVERSCAN) as f64 * ROW_PX);
    }

    #[test]
    fn a_step_is_reached_by_its_scroll_position_even_when_capped() {
        for total in [30_579, 1_000_000, 1_000_000_000_000] {
            for step in [0, 17, total / 3, total - 20] {
                let at = step as f64 * ROW_PX;
                let scroll = scroll_for(total, at, 352.0);
                let l = layout(total, scroll, 352.0);
                assert!(l.first <= step && step < l.end, "{total} {step}: {l:?}");
                // The row is drawn at the top of the view.
                let drawn = l.top + (step - l.first) as f64 * ROW_PX;
                assert!(
                    (drawn - scroll).abs() < 1.0,
                    "{total} {step}: {drawn} {scroll}"
                );
            }
        }
    }
}
