//! A bounded summary of a whole trajectory for the chart.

use serde::{Deserialize, Serialize};

/// The most points a profile keeps; even, so halving is exact.
pub const PROFILE_POINTS: usize = 1024;

/// The trajectory's [`magnitude`](crate::magnitude)s, downsampled so that it
/// never holds more than [`PROFILE_POINTS`] points, however long the run.
///
/// Point `i` is the largest magnitude among values `i * stride ..
/// (i + 1) * stride`; when the points are full, neighbours merge and the
/// stride doubles. Peaks are never lost. The server and the browser fold the
/// same values with the same code, so both draw the same chart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Values per point; a power of two.
    pub stride: u64,
    /// How many values were folded in.
    pub count: u64,
    /// The largest magnitude of each group of `stride` values.
    pub points: Vec<u32>,
}

impl Profile {
    /// An empty profile.
    pub fn new() -> Profile {
        Profile {
            stride: 1,
            count: 0,
            points: Vec::new(),
        }
    }

    /// Folds in the magnitude of the next value of the trajectory.
    pub fn push(&mut self, magnitude: u32) {
        if self.count.is_multiple_of(self.stride) && self.points.len() == PROFILE_POINTS {
            self.points = self
                .points
                .chunks(2)
                .map(|pair| pair.iter().copied().max().unwrap_or(0))
                .collect();
            self.stride *= 2;
        }
        match self.points.last_mut() {
            Some(last) if !self.count.is_multiple_of(self.stride) => *last = (*last).max(magnitude),
            _ => self.points.push(magnitude),
        }
        self.count += 1;
    }

    /// The largest magnitude seen, for the chart's scale.
    pub fn max(&self) -> u32 {
        self.points.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_point_while_short() {
        let mut profile = Profile::new();
        for m in [5, 3, 8] {
            profile.push(m);
        }
        assert_eq!(profile.points, [5, 3, 8]);
        assert_eq!((profile.stride, profile.count), (1, 3));
    }

    proptest::proptest! {
        #[test]
        fn stays_bounded_and_keeps_the_peaks(values in proptest::collection::vec(0u32..1_000_000, 0..5000)) {
            let mut profile = Profile::new();
            for &m in &values {
                profile.push(m);
            }
            proptest::prop_assert!(profile.points.len() <= PROFILE_POINTS);
            proptest::prop_assert_eq!(profile.count, values.len() as u64);
            // Every point is exactly the max of its group.
            let stride = profile.stride as usize;
            let expected: Vec<u32> = values.chunks(stride).map(|g| *g.iter().max().unwrap()).collect();
            proptest::prop_assert_eq!(&profile.points, &expected);
        }
    }
}
