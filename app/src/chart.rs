//! The trajectory on a log scale, drawn from the run's downsampled profile.

use leptos::prelude::*;
use shared::{group_digits, magnitude, wire::RunView, Profile};

use crate::{state::PageState, values::Values};

/// The drawing's size in SVG units; it scales to the page's width.
const WIDTH: u64 = 1000;
const HEIGHT: u64 = 240;
const MARGIN: u64 = 8;

/// Where the chart's labels and marks go, as percentages of the plot.
fn left(step: u64, steps: u64) -> f64 {
    if steps == 0 {
        0.0
    } else {
        step as f64 * 100.0 / steps as f64
    }
}

/// How far down the plot a magnitude is drawn, in percent (as [`polyline`]
/// draws it).
fn top(magnitude: u32, low: u32, high: u32) -> f64 {
    let span = (HEIGHT - 2 * MARGIN) as f64;
    let range = f64::from(high.saturating_sub(low).max(1));
    let y = (HEIGHT - MARGIN) as f64 - f64::from(magnitude.saturating_sub(low)) * span / range;
    y * 100.0 / HEIGHT as f64
}

/// A CSS percentage with three decimals, formatted as integers (float
/// formatting would add to the page's download).
fn percent(value: f64) -> String {
    let thousandths = (value * 1000.0).round() as i64;
    let sign = if thousandths < 0 { "-" } else { "" };
    let abs = thousandths.unsigned_abs();
    format!("{sign}{}.{:03}%", abs / 1000, abs % 1000)
}

/// A round step between ticks: 1, 2 or 5 times a power of ten, at least
/// `span / 4`.
pub fn tick_step(span: u64) -> u64 {
    let want = span.div_ceil(4).max(1);
    let mut unit = 1u64;
    loop {
        for factor in [1, 2, 5] {
            if unit.saturating_mul(factor) >= want {
                return unit.saturating_mul(factor);
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// `1000 * log2(10)`: the magnitude of each power of ten.
const MILLI_LOG2_10: f64 = 3_321.928_094_887_362;

/// The powers of ten between two magnitudes, at a round step: the value
/// axis's ticks, as exponents.
pub fn decades(low: u32, high: u32) -> Vec<u64> {
    let first = (f64::from(low) / MILLI_LOG2_10).ceil() as u64;
    let last = (f64::from(high) / MILLI_LOG2_10).floor() as u64;
    if last < first {
        return Vec::new();
    }
    let step = tick_step(last - first);
    (0..)
        .map(|i| first.div_ceil(step) * step + i * step)
        .take_while(|k| *k <= last)
        .collect()
}

/// The chart: the size of each value across the run, on a log scale, with
/// labelled axes, the peak marked, and a cursor (pointer or keyboard) that
/// reads the exact value of any step. The profile is bounded, so a run of
/// any length draws at most 1,024 points, the same on the server and in the
/// browser.
#[component]
pub fn Chart() -> impl IntoView {
    let state = expect_context::<PageState>();
    let values = expect_context::<Values>();
    let plot = NodeRef::<leptos::html::Div>::new();
    let cursor = RwSignal::new(None::<u64>);
    let steps = Memo::new(move |_| state.snapshot.with(|s| s.run.as_ref().map(|run| run.steps)));
    let start = Memo::new(move |_| {
        state
            .snapshot
            .with(|s| s.run.as_ref().map(|run| run.start.clone()))
    });
    Effect::new(move |previous: Option<Option<String>>| {
        let now = start.get();
        if previous.is_some_and(|p| p != now) {
            cursor.set(None);
        }
        now
    });
    let points = move || {
        state.snapshot.with(|s| {
            s.run
                .as_ref()
                .map(|run| polyline(&run.profile))
                .unwrap_or_default()
        })
    };
    // The cursor's step and its value, once at hand.
    let reading = move || cursor.get().map(|step| (step, values.get(step)));
    let readout = move || match reading() {
        Some((step, value)) => format!(
            "Step {}: {}",
            group_digits(&step.to_string()),
            value
                .as_deref()
                .map_or_else(|| "loading…".to_owned(), group_digits)
        ),
        None => {
            "Point at the chart, or focus it and use the arrow keys, to read a value.".to_owned()
        }
    };
    // Ticks and marks as one piece of markup (numbers only): one reactive
    // attribute instead of a view per label keeps the download small.
    let overlay = move || {
        let cursor = reading().map(|(step, value)| (step, value.map(|v| magnitude(&v))));
        state.snapshot.with(|s| {
            s.run
                .as_ref()
                .map(|run| overlay(run, cursor))
                .unwrap_or_default()
        })
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let Some(steps) = steps.get_untracked() else {
            return;
        };
        let now = cursor.get_untracked();
        let page = (steps / 10).max(1);
        let next = match ev.key().as_str() {
            "ArrowRight" | "ArrowUp" => now.map_or(0, |s| s.saturating_add(1)),
            "ArrowLeft" | "ArrowDown" => now.map_or(0, |s| s.saturating_sub(1)),
            "PageUp" => now.map_or(0, |s| s.saturating_add(page)),
            "PageDown" => now.map_or(0, |s| s.saturating_sub(page)),
            "Home" => 0,
            "End" => steps,
            _ => return,
        };
        ev.prevent_default();
        cursor.set(Some(next.min(steps)));
    };
    let on_pointer = move |ev: leptos::ev::PointerEvent| {
        let (Some(steps), Some(plot)) = (steps.get_untracked(), plot.get_untracked()) else {
            return;
        };
        let width = f64::from(plot.client_width().max(1));
        let fraction = (f64::from(ev.offset_x()) / width).clamp(0.0, 1.0);
        cursor.set(Some((fraction * steps as f64).round() as u64));
    };
    let label = move || {
        state.snapshot.with(|s| match &s.run {
            Some(run) => format!(
                "Chart of {} values on a log scale, peak {} at step {}",
                group_digits(&(run.steps + 1).to_string()),
                group_digits(&run.peak),
                group_digits(&run.peak_step.to_string())
            ),
            None => "Chart of the trajectory: empty until a number is entered".to_owned(),
        })
    };
    view! {
        <figure class="chart">
            <div class="axes">
                <span class="axis-title y" aria-hidden="true">"value (log scale)"</span>
                <div
                    class="plot"
                    node_ref=plot
                    tabindex="0"
                    role="slider"
                    aria-label=label
                    aria-valuemin="0"
                    aria-valuemax=move || steps.get().unwrap_or(0).to_string()
                    // A slider always has a value: step 0 until one is
                    // chosen, its text saying none is (axe: aria-required-attr).
                    aria-valuenow=move || cursor.get().unwrap_or(0).to_string()
                    aria-valuetext=move || match reading() {
                        Some(_) => readout(),
                        None => "No step chosen".to_owned(),
                    }
                    on:keydown=on_keydown
                    on:pointermove=on_pointer
                    on:pointerdown=on_pointer
                >
                    <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" aria-hidden="true">
                        <polyline points=points vector-effect="non-scaling-stroke"></polyline>
                    </svg>
                    <div class="overlay" inner_html=overlay></div>
                </div>
                <span class="axis-title x" aria-hidden="true">"step"</span>
            </div>
            <p class="readout" aria-live="polite" data-step=move || cursor.get().map(|s| s.to_string()) data-value=move || reading().and_then(|(_, value)| value)>
                {readout}
            </p>
            <figcaption>"Each value's size from start to 1, on a log scale (ticks at powers of ten); the dot marks the peak."</figcaption>
        </figure>
    }
}

/// The chart's labels and marks for `run`, as markup laid over the plot:
/// the step axis's ticks, the value axis's powers of ten, the peak, and the
/// cursor (its step, and its value's magnitude once known). Only numbers go
/// into it.
pub fn overlay(run: &RunView, cursor: Option<(u64, Option<u32>)>) -> String {
    let points = &run.profile.points;
    let low = points.iter().copied().min().unwrap_or(0);
    let high = run.profile.max().max(low);
    let steps = run.steps;
    let mut html = String::new();
    let every = tick_step(steps);
    for i in 0..=steps / every {
        let step = i * every;
        html += &format!(
            r#"<span class="tick x" style="left:{}">{}</span>"#,
            percent(left(step, steps)),
            group_digits(&step.to_string())
        );
    }
    for k in decades(low, high) {
        let at = (k as f64 * MILLI_LOG2_10).round() as u32;
        html += &format!(
            r#"<span class="tick y" style="top:{}">10<sup>{k}</sup></span>"#,
            percent(top(at, low, high))
        );
    }
    html += &format!(
        r#"<span class="mark peak" style="left:{};top:{}" title="Peak at step {}"></span>"#,
        percent(left(run.peak_step, steps)),
        percent(top(magnitude(&run.peak), low, high)),
        group_digits(&run.peak_step.to_string())
    );
    if let Some((step, value)) = cursor {
        let x = percent(left(step.min(steps), steps));
        html += &format!(r#"<span class="cursor-line" style="left:{x}"></span>"#);
        if let Some(m) = value {
            html += &format!(
                r#"<span class="mark cursor" style="left:{x};top:{}"></span>"#,
                percent(top(m, low, high))
            );
        }
    }
    html
}

/// SVG polyline points for a profile, in integer coordinates. The vertical
/// axis spans the run's smallest to largest value, so the shape shows for
/// huge numbers too.
pub fn polyline(profile: &Profile) -> String {
    let points = &profile.points;
    let low = u64::from(points.iter().copied().min().unwrap_or(0));
    let range = (u64::from(profile.max()) - low).max(1);
    let last = (points.len() as u64).saturating_sub(1).max(1);
    let span = HEIGHT - 2 * MARGIN;
    points
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let x = i as u64 * WIDTH / last;
            let y = HEIGHT - MARGIN - (u64::from(m) - low) * span / range;
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_exact_to_a_thousandth() {
        assert_eq!(percent(0.0), "0.000%");
        assert_eq!(percent(12.3456), "12.346%");
        assert_eq!(percent(-0.5), "-0.500%");
        assert_eq!(percent(100.0), "100.000%");
    }

    #[test]
    fn the_overlay_marks_the_ticks_the_peak_and_the_cursor() {
        let mut snapshot = shared::wire::Snapshot {
            version: 0,
            status: shared::wire::Status::Idle,
            interval_ms: 0,
            failure: None,
            unwatched: Default::default(),
            started_at: None,
            run: None,
        };
        let all = ["6", "3", "10", "5", "16", "8", "4", "2", "1"];
        let delta = shared::wire::Delta {
            base: 0,
            version: 1,
            status: Some(shared::wire::Status::Finished),
            interval_ms: None,
            failure: None,
            unwatched: None,
            restart: true,
            started_at: None,
            change: shared::wire::RunChange {
                appended: all.iter().map(|v| v.to_string()).collect(),
                steps: 8,
                peak: Some("16".into()),
                peak_step: Some(4),
            },
        };
        snapshot.apply(&delta, usize::MAX).unwrap();
        let run = snapshot.run.unwrap();
        let html = overlay(&run, Some((4, Some(magnitude("16")))));
        // Steps 0, 2, 4, 6, 8; powers of ten 1 and 10 (values 1 to 16).
        for (step, left) in [(0, "0.000%"), (2, "25.000%"), (8, "100.000%")] {
            assert!(
                html.contains(&format!(r#"style="left:{left}">{step}</span>"#)),
                "{html}"
            );
        }
        assert!(html.contains(">10<sup>0</sup>") && html.contains(">10<sup>1</sup>"));
        // The peak is at the top; the cursor on it.
        assert!(
            html.contains(
                r#"<span class="mark peak" style="left:50.000%;top:3.333%" title="Peak at step 4">"#
            ),
            "{html}"
        );
        assert!(html.contains(r#"<span class="mark cursor" style="left:50.000%;top:3.333%">"#));
        assert!(!overlay(&run, None).contains("cursor"));
    }

    #[test]
    fn ticks_are_round_and_at_most_five() {
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(111), 50);
        assert_eq!(tick_step(30_578), 10_000);
        assert_eq!(tick_step(1_000_000), 500_000);
        // The powers of ten between 1 and 9,232 (the run of 27), and
        // between 1 and a 1,000-digit number.
        assert_eq!(decades(0, magnitude("9232")), [0, 1, 2, 3]);
        assert_eq!(decades(0, magnitude(&"9".repeat(1000))), [0, 500]);
        assert_eq!(
            decades(magnitude("20000"), magnitude("90000")),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn draws_from_bottom_left_to_top() {
        let mut profile = Profile::new();
        for m in [0, 1000, 2000, 500] {
            profile.push(m);
        }
        assert_eq!(polyline(&profile), "0,232 333,120 666,8 1000,176");
        assert_eq!(polyline(&Profile::new()), "");
        // The axis starts at the smallest value, not at zero.
        let mut high = Profile::new();
        for m in [100_000, 101_000] {
            high.push(m);
        }
        assert_eq!(polyline(&high), "0,232 1000,8");
    }
}
