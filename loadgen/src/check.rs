//! Checks every value a browser is sent against the trajectory computed
//! here, by step index: lost, duplicated and out-of-order values are
//! counted exactly. Pure: no I/O, no clock.

use shared::{
    wire::{Delta, Snapshot},
    Number,
};

/// What the checks found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Values received and correct.
    pub values: u64,
    /// Values that never arrived (a step index skipped inside the deltas).
    pub lost: u64,
    /// Values that arrived twice.
    pub duplicated: u64,
    /// Values at the right step but wrong.
    pub out_of_order: u64,
    /// Values a slow reader never saw because the server sent it a snapshot
    /// of the newest values instead (by design: streams coalesce rather than
    /// queue without bound).
    pub coalesced: u64,
}

impl Counts {
    /// Lost, duplicated and out-of-order values: each one is a bug.
    pub fn bad(&self) -> u64 {
        self.lost + self.duplicated + self.out_of_order
    }

    /// Adds `other` to these.
    pub fn add(&mut self, other: Counts) {
        self.values += other.values;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.coalesced += other.coalesced;
    }
}

/// One browser's check of its current run.
#[derive(Debug, Default)]
pub struct Checker {
    /// The step index and value expected next, once a run is known.
    next: Option<(u64, Number)>,
    /// What was found so far.
    pub counts: Counts,
    /// What [`Checker::take_new`] returned so far, summed.
    taken: Counts,
}

impl Checker {
    /// What was found since the last call.
    pub fn take_new(&mut self) -> Counts {
        let (now, taken) = (self.counts, self.taken);
        self.taken = now;
        Counts {
            values: now.values - taken.values,
            lost: now.lost - taken.lost,
            duplicated: now.duplicated - taken.duplicated,
            out_of_order: now.out_of_order - taken.out_of_order,
            coalesced: now.coalesced - taken.coalesced,
        }
    }

    /// A run starting at `start` begins (a restarting delta, or a snapshot of
    /// a new run).
    pub fn begin(&mut self, start: &str) -> Result<(), String> {
        let start = Number::from_digits(start).ok_or_else(|| format!("bad start {start:?}"))?;
        self.next = Some((0, start));
        Ok(())
    }

    /// Checks a delta's values (after its restart, if it has one).
    pub fn delta(&mut self, delta: &Delta) -> Result<(), String> {
        if delta.restart {
            self.begin(
                delta
                    .change
                    .appended
                    .first()
                    .ok_or("a restart without a start")?,
            )?;
        }
        let first = delta.change.steps + 1 - delta.change.appended.len() as u64;
        for (offset, value) in delta.change.appended.iter().enumerate() {
            self.value(first + offset as u64, value);
        }
        Ok(())
    }

    /// Checks a snapshot's values; values it skipped over are coalesced.
    pub fn snapshot(&mut self, snapshot: &Snapshot) {
        let (Some(run), Some((index, _))) = (&snapshot.run, &self.next) else {
            return;
        };
        let first = run.first_recent_step();
        let mut index = *index;
        while index < first {
            self.counts.coalesced += 1;
            self.skip();
            index += 1;
        }
        for (offset, value) in run.recent.iter().enumerate() {
            let step = first + offset as u64;
            if step >= index {
                self.value(step, value);
            }
        }
    }

    /// Checks the value at step `index`.
    fn value(&mut self, index: u64, value: &str) {
        let Some((expected, _)) = &self.next else {
            return;
        };
        if index < *expected {
            self.counts.duplicated += 1;
            return;
        }
        while self.next.as_ref().is_some_and(|(next, _)| *next < index) {
            self.counts.lost += 1;
            self.skip();
        }
        if let Some((_, number)) = &self.next {
            if number.to_string() == value {
                self.counts.values += 1;
            } else {
                self.counts.out_of_order += 1;
            }
        }
        self.skip();
    }

    /// Moves the expectation one step on.
    fn skip(&mut self) {
        if let Some((index, number)) = &mut self.next {
            number.step();
            *index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::{RunChange, RunView, Status};

    fn delta(steps: u64, values: &[&str], restart: bool) -> Delta {
        Delta {
            base: 0,
            version: 1,
            status: None,
            interval_ms: None,
            failure: None,
            unwatched: None,
            restart,
            started_at: None,
            change: RunChange {
                appended: values.iter().map(|v| v.to_string()).collect(),
                steps,
                peak: None,
                peak_step: None,
            },
        }
    }

    #[test]
    fn a_whole_run_in_deltas_is_all_correct() {
        let mut check = Checker::default();
        check.delta(&delta(0, &["6"], true)).unwrap();
        check.delta(&delta(2, &["3", "10"], false)).unwrap();
        check.delta(&delta(3, &["5"], false)).unwrap();
        assert_eq!(
            check.counts,
            Counts {
                values: 4,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_skipped_value_is_lost_a_repeated_one_duplicated_a_wrong_one_out_of_order() {
        let mut check = Checker::default();
        check.delta(&delta(0, &["6"], true)).unwrap();
        check.delta(&delta(2, &["10"], false)).unwrap(); // step 1 (3) missing
        assert_eq!(check.counts.lost, 1);
        check.delta(&delta(2, &["10"], false)).unwrap(); // again
        assert_eq!(check.counts.duplicated, 1);
        check.delta(&delta(3, &["6"], false)).unwrap(); // step 3 is 5
        assert_eq!(check.counts.out_of_order, 1);
        assert_eq!(check.counts.bad(), 3);
        assert_eq!(check.counts.values, 2);
        assert_eq!(check.take_new(), check.counts);
        assert_eq!(check.take_new(), Counts::default(), "nothing new");
    }

    #[test]
    fn a_snapshot_ahead_counts_what_it_skipped_as_coalesced() {
        let mut check = Checker::default();
        check.delta(&delta(0, &["6"], true)).unwrap();
        // 6 3 10 5 16 8 4 2 1: the snapshot holds steps 5.. only.
        let snapshot = Snapshot {
            version: 9,
            status: Status::Finished,
            interval_ms: 0,
            failure: None,
            unwatched: Default::default(),
            started_at: None,
            run: Some(RunView {
                start: "6".into(),
                steps: 8,
                peak: "16".into(),
                peak_step: 4,
                recent: ["8", "4", "2", "1"].iter().map(|v| v.to_string()).collect(),
                profile: shared::Profile::new(),
            }),
        };
        check.snapshot(&snapshot);
        assert_eq!(
            check.counts,
            Counts {
                values: 5,
                coalesced: 4,
                ..Counts::default()
            }
        );
        assert_eq!(check.counts.bad(), 0);
    }

    #[test]
    fn values_before_any_run_are_not_judged() {
        let mut check = Checker::default();
        check.delta(&delta(3, &["5"], false)).unwrap();
        assert_eq!(check.counts, Counts::default());
        assert!(check.begin("abc").is_err());
    }
}
