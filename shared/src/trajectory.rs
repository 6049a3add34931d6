//! Any part of a run's trajectory, on demand and exact.
//!
//! A session keeps only its newest values. Older ones are recomputed from
//! [`Marks`]: the value at every `stride`-th step, at most [`MARKS`] of them
//! whatever the run's length (the stride doubles when they fill up). A page
//! then costs at most `stride` steps of walking before its first value.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{group_digits, Number};

/// The most values one page may hold.
pub const MAX_PAGE: u64 = 1000;

/// The most marks kept for one run; even, so halving is exact.
pub const MARKS: usize = 32;

/// Why a page of values cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PageError {
    /// The session has no run yet.
    NoRun,
    /// `count` is zero or more than [`MAX_PAGE`].
    Count {
        /// The most values a page may hold.
        max: u64,
    },
    /// `from` is past the run's last step.
    Beyond {
        /// The step asked for.
        from: u64,
        /// The run's last step.
        steps: u64,
    },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::NoRun => f.write_str("There is no run yet: enter a number first."),
            PageError::Count { max } => write!(f, "A page holds from 1 to {max} values."),
            PageError::Beyond { from, steps } => write!(
                f,
                "Step {} does not exist: the run has {} steps so far.",
                group_digits(&from.to_string()),
                group_digits(&steps.to_string())
            ),
        }
    }
}

impl std::error::Error for PageError {}

/// A page of a run's values, as the server answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The run's start, so a page of an older run is recognised.
    pub start: String,
    /// The step of `values[0]`.
    pub from: u64,
    /// The values of steps `from`, `from + 1`, …, as decimal strings.
    pub values: Vec<String>,
}

/// The value at every `stride`-th step of one trajectory, from its start:
/// a bounded index to recompute any page from.
#[derive(Debug, Clone)]
pub struct Marks {
    /// Steps between two marks; a power of two.
    stride: u64,
    /// `values[i]` is the value at step `i * stride`; `values[0]` is the
    /// start.
    values: Vec<Number>,
}

impl Marks {
    /// The marks of the trajectory from `start`: only the start, so far.
    pub fn new(start: Number) -> Marks {
        Marks {
            stride: 1,
            values: vec![start],
        }
    }

    /// The value the trajectory starts from.
    pub fn start(&self) -> &Number {
        &self.values[0]
    }

    /// Steps between two marks.
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// The step of the last mark.
    fn last_step(&self) -> u64 {
        (self.values.len() as u64 - 1) * self.stride
    }

    /// `count` values from step `from` of a run that has taken `steps`
    /// steps (the values `from ..= min(from + count - 1, steps)`), as
    /// decimal strings. Marks are added on the way (and thinned when full),
    /// so later pages near this one are cheap.
    ///
    /// `steps` must be a step the trajectory has: the caller's run took them.
    pub fn page(&mut self, from: u64, count: u64, steps: u64) -> Result<Vec<String>, PageError> {
        if count == 0 || count > MAX_PAGE {
            return Err(PageError::Count { max: MAX_PAGE });
        }
        if from > steps {
            return Err(PageError::Beyond { from, steps });
        }
        let mut value = self.walk_to(from);
        let last = steps.min(from + count - 1);
        let mut page = Vec::with_capacity((last - from + 1) as usize);
        page.push(value.to_string());
        for _ in from..last {
            value.step();
            page.push(value.to_string());
        }
        Ok(page)
    }

    /// The value at `step`, adding the marks up to it.
    fn walk_to(&mut self, step: u64) -> Number {
        while self.last_step() + self.stride <= step {
            let mut next = self.values[self.values.len() - 1].clone();
            for _ in 0..self.stride {
                next.step();
            }
            self.push(next);
        }
        let index = (step / self.stride) as usize;
        let mut value = self.values[index].clone();
        for _ in 0..step % self.stride {
            value.step();
        }
        value
    }

    /// Adds the next mark, halving the marks and doubling the stride first
    /// when they are full (`values[0]` stays: even indices are kept).
    fn push(&mut self, next: Number) {
        if self.values.len() == MARKS {
            let kept: Vec<Number> = self.values.drain(..).step_by(2).collect();
            self.values = kept;
            // `next` is at step MARKS * stride: a multiple of the new one.
            self.stride *= 2;
        }
        self.values.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    /// The trajectory by plain big-integer arithmetic, without `Number`.
    fn trajectory(start: &str) -> Vec<String> {
        let mut n: BigUint = start.parse().unwrap();
        let one = BigUint::from(1u32);
        let mut all = vec![n.to_string()];
        while n != one {
            n = if n.bit(0) { n * 3u32 + 1u32 } else { n >> 1 };
            all.push(n.to_string());
        }
        all
    }

    #[test]
    fn refuses_empty_huge_and_missing_pages() {
        let mut marks = Marks::new(Number::from_digits("27").unwrap());
        let count = Err(PageError::Count { max: MAX_PAGE });
        assert_eq!(marks.page(0, 0, 111), count);
        assert_eq!(marks.page(0, MAX_PAGE + 1, 111), count);
        assert_eq!(
            marks.page(112, 1, 111),
            Err(PageError::Beyond {
                from: 112,
                steps: 111
            })
        );
        assert_eq!(
            PageError::Beyond {
                from: 5000,
                steps: 111
            }
            .to_string(),
            "Step 5,000 does not exist: the run has 111 steps so far."
        );
        // A page is cut at the run's last step.
        assert_eq!(marks.page(110, 10, 111).unwrap(), ["2", "1"]);
    }

    #[test]
    fn stays_bounded_on_a_long_run() {
        // 10^60 + 1 takes hundreds of steps; every page of it is right.
        let start = format!("1{}1", "0".repeat(59));
        let all = trajectory(&start);
        let steps = all.len() as u64 - 1;
        let mut marks = Marks::new(Number::from_digits(&start).unwrap());
        assert_eq!(marks.page(steps, 1, steps).unwrap(), ["1"]);
        assert!(marks.values.len() <= MARKS);
        assert!(marks.stride() * MARKS as u64 >= steps);
        assert_eq!(marks.page(3, 5, steps).unwrap(), all[3..8]);
    }

    proptest! {
        #[test]
        fn any_page_is_that_slice_of_the_trajectory(
            start in 1u64..1_000_000_000_000,
            big in proptest::bool::ANY,
            picks in proptest::collection::vec((0.0f64..1.0, 1u64..300), 1..6),
        ) {
            // Some starts far past a machine word.
            let start = if big { format!("{start}{}", "7".repeat(40)) } else { start.to_string() };
            let all = trajectory(&start);
            let steps = all.len() as u64 - 1;
            let mut marks = Marks::new(Number::from_digits(&start).unwrap());
            for (at, count) in picks {
                let from = (at * steps as f64) as u64;
                let page = marks.page(from, count, steps).unwrap();
                let end = (from + count).min(steps + 1) as usize;
                prop_assert_eq!(&page[..], &all[from as usize..end]);
                prop_assert!(marks.values.len() <= MARKS);
            }
        }
    }
}
