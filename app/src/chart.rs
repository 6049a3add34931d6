//! The trajectory on a log scale, drawn from the run's downsampled profile.

use leptos::prelude::*;
use shared::Profile;

use crate::page::PageState;

/// The drawing's size in SVG units; it scales to the page's width.
const WIDTH: u64 = 1000;
const HEIGHT: u64 = 240;
const MARGIN: u64 = 8;

/// The chart: the size of each value (its magnitude, about log2) across the
/// run. The profile is bounded, so a run of any length draws at most 1,024
/// points, and the same on the server and in the browser.
#[component]
pub fn Chart() -> impl IntoView {
    let state = expect_context::<PageState>();
    let points = move || {
        state.snapshot.with(|s| {
            s.run
                .as_ref()
                .map(|run| polyline(&run.profile))
                .unwrap_or_default()
        })
    };
    let label = move || {
        state.snapshot.with(|s| match &s.run {
            Some(run) => format!(
                "Chart of the trajectory on a log scale: {} values, peak {}.",
                run.steps + 1,
                run.peak
            ),
            None => "Chart of the trajectory: empty until a number is entered.".to_owned(),
        })
    };
    view! {
        <figure class="chart">
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                preserveAspectRatio="none"
                role="img"
                aria-label=label
            >
                <polyline points=points vector-effect="non-scaling-stroke"></polyline>
            </svg>
            <figcaption>"Size of each value (log scale) from start to 1"</figcaption>
        </figure>
    }
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
