//! Record search: the starts of a range whose trajectory takes more steps to
//! reach 1 (a *delay* record) or climbs higher (a *peak* record) than that
//! of every smaller start of the range. From 1 these are OEIS A006877 and
//! A006884. Steps count every step, `3n + 1` and `n / 2` alike (27 takes
//! 111); the range's first start is a record of both kinds.
//!
//! Exact, and far faster than a plain loop ([`plain`]), by three means that
//! change no result:
//!
//! - **A start's height ends where it falls to a smaller start of the
//!   range.** Whatever that start climbs to later is at most the highest
//!   point of some smaller start, which the running maximum already holds;
//!   so the largest of these heights over a prefix of the range *is* the
//!   largest peak, and a start beats it exactly when its true peak does.
//!   Most starts fall within a few steps (every even one within one).
//! - **Steps are finished in jumps.** From there, [`JUMP_BITS`] shortcut
//!   steps at a time come from a table indexed by the low bits: `a·2^k + b`
//!   becomes `a·3^c + d`, with `c` and `d` depending on `b` alone (Terras).
//! - **Small numbers are looked up.** Below [`MEMO`] every number's steps
//!   are in a table built once per process (2 MiB, shared by every search).
//!
//! A range is checked in [`Stretch`]es, each on its own (they can run on any
//! thread or node, in any order), then absorbed in order by a [`Search`]:
//! a stretch's own records that beat everything before it are the range's.
//! Values are 128-bit; a trajectory that would overflow is followed with
//! [`Number`] instead, exact at any size.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Number;

/// Numbers below this have their steps in a table (`u16` each).
pub const MEMO: usize = 1 << 20;

/// Shortcut steps per jump.
pub const JUMP_BITS: u32 = 16;

/// What a start beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// More steps to 1 than every smaller start of the range.
    Delay,
    /// A higher peak than every smaller start of the range.
    Peak,
}

impl Kind {
    /// The kind as the CSV names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Delay => "delay",
            Kind::Peak => "peak",
        }
    }
}

/// One record of a range; its peak a [`Number`], or its decimal digits
/// where it is only shown ([`Shown`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<Peak = Number> {
    /// What it beat.
    pub kind: Kind,
    /// Its start.
    pub start: u64,
    /// Every step of its trajectory to 1.
    pub steps: u64,
    /// The highest value of its trajectory.
    pub peak: Peak,
}

/// A record as a page shows it: the same JSON as a [`Record`]'s, its peak
/// kept as the digits it came in (read as a [`Number`], it would bring
/// big-number parsing and printing into the page's wasm for nothing).
pub type Shown = Record<String>;

impl Record {
    /// The record as a page shows it.
    pub fn shown(&self) -> Shown {
        Record {
            kind: self.kind,
            start: self.start,
            steps: self.steps,
            peak: self.peak.to_string(),
        }
    }
}

/// The exact trajectory of `start`: its steps to 1 and its highest value.
/// One step at a time, 128-bit, moving to [`Number`] if it would overflow.
pub fn trajectory(start: u64) -> (u64, Number) {
    let mut x = u128::from(start);
    let mut peak = x;
    let mut steps = 0;
    while x != 1 {
        if x % 2 == 0 {
            x /= 2;
        } else {
            match x.checked_mul(3).and_then(|t| t.checked_add(1)) {
                Some(up) => x = up,
                None => {
                    let (more, high) = huge_trajectory(wide(x));
                    return (steps + more, high);
                }
            }
            peak = peak.max(x);
        }
        steps += 1;
    }
    (steps, wide(peak))
}

/// A value of a trajectory (never 0) as a [`Number`].
fn wide(x: u128) -> Number {
    Number::from_u128(x).expect("trajectories hold positive values")
}

/// The rest of a trajectory from `x`, at any size.
fn huge_trajectory(mut x: Number) -> (u64, Number) {
    let mut peak = x.clone();
    let mut steps = 0;
    while !x.is_one() {
        x.step();
        steps += 1;
        if x > peak {
            peak = x.clone();
        }
    }
    (steps, peak)
}

/// The records of `from..=to`, one start at a time, every step: the
/// reference the fast search is checked and measured against.
pub fn plain(from: u64, to: u64) -> Vec<Record> {
    let mut records = Vec::new();
    let mut best: Option<(u64, Number)> = None;
    for start in from..=to {
        let (steps, peak) = trajectory(start);
        let (delay, higher) = match &best {
            None => (true, true),
            Some((most, highest)) => (steps > *most, peak > *highest),
        };
        for (beat, kind) in [(delay, Kind::Delay), (higher, Kind::Peak)] {
            if beat {
                records.push(Record {
                    kind,
                    start,
                    steps,
                    peak: peak.clone(),
                });
            }
        }
        best = Some(match best {
            None => (steps, peak),
            Some((most, highest)) => (most.max(steps), highest.max(peak)),
        });
    }
    records
}

/// The tables every search shares: steps of small numbers, and the jumps.
struct Tables {
    /// Steps to 1 of every number below [`MEMO`] (index 0 unused).
    memo: Vec<u16>,
    /// For each low part `b` of [`JUMP_BITS`] bits: `T^k(b)` in the low 32
    /// bits, and the number of odd steps among the `k` above them.
    jumps: Vec<u64>,
    /// Powers of 3 up to `3^JUMP_BITS`.
    pow3: [u128; JUMP_BITS as usize + 1],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Tables::build)
}

impl Tables {
    fn build() -> Tables {
        let mut memo = vec![0u16; MEMO];
        for v in 2..MEMO {
            memo[v] = if v % 2 == 0 {
                memo[v / 2] + 1
            } else {
                // Until it falls below `v`, whose steps are known.
                let (mut x, mut steps) = (3 * v as u64 + 1, 1u16);
                while x >= v as u64 {
                    x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
                    steps += 1;
                }
                steps + memo[x as usize]
            };
        }
        let jumps = (0..1u64 << JUMP_BITS)
            .map(|b| {
                let (mut d, mut odd) = (b, 0u64);
                for _ in 0..JUMP_BITS {
                    if d % 2 == 1 {
                        d = (3 * d).div_ceil(2);
                        odd += 1;
                    } else {
                        d /= 2;
                    }
                }
                debug_assert!(d < 1 << 32);
                d | odd << 32
            })
            .collect();
        let mut pow3 = [1u128; JUMP_BITS as usize + 1];
        for i in 1..pow3.len() {
            pow3[i] = pow3[i - 1] * 3;
        }
        Tables { memo, jumps, pow3 }
    }

    /// The steps of `start` and its height (the highest value before its
    /// trajectory falls to a smaller start of a range beginning at `from`,
    /// or to 1); `None` if a value would not fit in 128 bits.
    #[inline]
    fn check(&self, start: u64, from: u64) -> Option<(u64, u128)> {
        let n = u128::from(start);
        if n == 1 {
            return Some((0, 1));
        }
        let (mut x, mut height, mut steps) = (n, n, 0u64);
        loop {
            if x % 2 == 1 {
                let up = x.checked_mul(3)?.checked_add(1)?;
                height = height.max(up);
                x = up / 2;
                steps += 2;
            } else {
                x /= 2;
                steps += 1;
                if x < n && (x >= u128::from(from) || x == 1) {
                    break;
                }
            }
        }
        // Values at least 2^k cannot reach 1 within k shortcut steps.
        const _: () = assert!(MEMO >= 1 << JUMP_BITS);
        while x >= MEMO as u128 {
            let jump = self.jumps[(x as usize) & ((1 << JUMP_BITS) - 1)];
            let odd = jump >> 32;
            x = (x >> JUMP_BITS)
                .checked_mul(self.pow3[odd as usize])?
                .checked_add(u128::from(jump as u32))?;
            steps += u64::from(JUMP_BITS) + odd;
        }
        Some((steps + u64::from(self.memo[x as usize]), height))
    }
}

/// [`Tables::check`] at any size: the start's steps and height.
fn check_huge(start: u64, from: u64) -> (u64, Number) {
    let (steps, _) = trajectory(start);
    let n = Number::from(start);
    let from = Number::from(from);
    let mut x = n.clone();
    let mut height = x.clone();
    loop {
        x.step();
        if x > height {
            height = x.clone();
        }
        if x.is_one() || (x < n && x >= from) {
            return (steps, height);
        }
    }
}

/// What one stretch of a range holds: its own records (each beats every
/// earlier start of the stretch), to be absorbed in order by a [`Search`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    /// Its first start.
    pub first: u64,
    /// Its last start.
    pub last: u64,
    /// Starts with more steps than every earlier one of the stretch, with
    /// their steps.
    pub delays: Vec<(u64, u64)>,
    /// Starts higher than every earlier one of the stretch, with their
    /// heights (see the module's notes: a record's height is its peak).
    pub peaks: Vec<(u64, Number)>,
}

/// Checks `first..=last` of the range that begins at `from`. Pure: the same
/// stretch gives the same answer on any thread or node.
pub fn scan(from: u64, first: u64, last: u64) -> Stretch {
    assert!(
        1 <= from && from <= first && first <= last,
        "a stretch of the range"
    );
    let tables = tables();
    let mut delays: Vec<(u64, u64)> = Vec::new();
    let mut peaks: Vec<(u64, Number)> = Vec::new();
    // The stretch's most steps and greatest height so far (the height
    // saturated to 128 bits: a larger one is in `peaks` exactly).
    let (mut most, mut highest) = (0u64, 0u128);
    for start in first..=last {
        // The start's steps, and its height when it beats the stretch's.
        let (steps, higher) = match tables.check(start, from) {
            Some((steps, height)) => (steps, (height > highest).then(|| wide(height))),
            None => {
                let (steps, height) = check_huge(start, from);
                let higher = peaks.last().is_none_or(|(_, high)| height > *high);
                (steps, higher.then_some(height))
            }
        };
        if steps > most || delays.is_empty() {
            most = steps;
            delays.push((start, steps));
        }
        if let Some(height) = higher {
            highest = height.to_u128().unwrap_or(u128::MAX);
            peaks.push((start, height));
        }
    }
    Stretch {
        first,
        last,
        delays,
        peaks,
    }
}

/// A search of one range as far as it has got: the next start to check and
/// the records so far. Stretches are absorbed in order; raising the range's
/// end goes on from where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    /// The range's first start.
    from: u64,
    /// Its last start.
    to: u64,
    /// The first start not checked yet (`to + 1` once done, which fits:
    /// `to < 2^64 - 1`).
    next: u64,
    /// The most steps of a checked start.
    most: Option<u64>,
    /// The highest peak of a checked start.
    highest: Option<Number>,
    /// The records so far, by start (a start that is both is listed once
    /// per kind, delay first).
    records: Vec<Record>,
}

impl Search {
    /// A search of `from..=to`, nothing checked; `None` unless
    /// `1 <= from <= to < 2^64 - 1`.
    pub fn new(from: u64, to: u64) -> Option<Search> {
        (1 <= from && from <= to && to < u64::MAX).then_some(Search {
            from,
            to,
            next: from,
            most: None,
            highest: None,
            records: Vec::new(),
        })
    }

    /// The range's first start.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The range's last start.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The first start not checked yet.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// How many starts are checked.
    pub fn checked(&self) -> u64 {
        self.next - self.from
    }

    /// How many starts the range has (at most 2^64 - 1, as `to < 2^64 - 1`).
    pub fn starts(&self) -> u64 {
        self.to - self.from + 1
    }

    /// Whether every start is checked.
    pub fn is_done(&self) -> bool {
        self.next > self.to
    }

    /// The records so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether a search read back from a store could have been made by
    /// [`Search::absorb`]: its range and position in bounds, its records
    /// in order inside what was checked, the first start a record of both
    /// kinds, the most steps and the highest peak those of its records.
    pub fn is_consistent(&self) -> bool {
        let bounded = 1 <= self.from
            && self.from <= self.to
            && self.to < u64::MAX
            && self.from <= self.next
            && self.next <= self.to + 1;
        let ordered = self
            .records
            .windows(2)
            .all(|pair| (pair[0].start, pair[0].kind) < (pair[1].start, pair[1].kind));
        let inside = self
            .records
            .iter()
            .all(|record| self.from <= record.start && record.start < self.next);
        let best = |kind| self.records.iter().rev().find(|record| record.kind == kind);
        let led = match self.records.first() {
            None => self.next == self.from && self.most.is_none() && self.highest.is_none(),
            Some(first) => {
                first.start == self.from
                    && best(Kind::Delay).map(|record| record.steps) == self.most
                    && best(Kind::Peak).map(|record| &record.peak) == self.highest.as_ref()
            }
        };
        bounded && ordered && inside && led
    }

    /// The next stretch to check, of at most `len` starts.
    pub fn next_stretch(&self, len: u64) -> Option<(u64, u64)> {
        (!self.is_done()).then(|| (self.next, self.to.min(self.next + len.max(1) - 1)))
    }

    /// Goes on to a larger end; `false` (and nothing changes) unless `to`
    /// is above the present end and below 2^64 - 1.
    pub fn raise_to(&mut self, to: u64) -> bool {
        let raised = to > self.to && to < u64::MAX;
        if raised {
            self.to = to;
        }
        raised
    }

    /// Takes in the next stretch: its records that beat every start before
    /// it are the range's. Panics unless it is the next stretch of this
    /// range (the caller keeps stretches in order).
    pub fn absorb(&mut self, stretch: &Stretch) {
        assert!(
            stretch.first == self.next && stretch.last <= self.to,
            "stretches are absorbed in order"
        );
        let mut found: Vec<(u64, Kind)> = Vec::new();
        for &(start, steps) in &stretch.delays {
            if self.most.is_none_or(|most| steps > most) {
                self.most = Some(steps);
                found.push((start, Kind::Delay));
            }
        }
        for (start, height) in &stretch.peaks {
            if self.highest.as_ref().is_none_or(|highest| height > highest) {
                self.highest = Some(height.clone());
                found.push((*start, Kind::Peak));
            }
        }
        found.sort_unstable();
        self.records.extend(found.into_iter().map(|(start, kind)| {
            let (steps, peak) = trajectory(start);
            Record {
                kind,
                start,
                steps,
                peak,
            }
        }));
        self.next = stretch.last + 1;
    }
}

/// The records of `from..=to`, a stretch of `len` starts at a time on the
/// calling thread. Panics unless `1 <= from <= to < 2^64 - 1`.
pub fn find(from: u64, to: u64, len: u64) -> Vec<Record> {
    let mut search = Search::new(from, to).expect("a range 1 <= from <= to < 2^64 - 1");
    while let Some((first, last)) = search.next_stretch(len) {
        search.absorb(&scan(from, first, last));
    }
    search.records
}

/// The records as CSV: `kind,start,steps,peak`, one line each.
pub fn csv(records: &[Record]) -> String {
    let mut out = String::from("kind,start,steps,peak\n");
    for record in records {
        out.push_str(&format!(
            "{},{},{},{}\n",
            record.kind.name(),
            record.start,
            record.steps,
            record.peak
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn starts(records: &[Record], kind: Kind) -> Vec<u64> {
        records
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.start)
            .collect()
    }

    #[test]
    fn from_one_the_delay_records_are_oeis_a006877() {
        // The sequence's first 44 terms (oeis.org/A006877).
        let a006877 = [
            1, 2, 3, 6, 7, 9, 18, 25, 27, 54, 73, 97, 129, 171, 231, 313, 327, 649, 703, 871, 1161,
            2223, 2463, 2919, 3711, 6171, 10971, 13255, 17647, 23529, 26623, 34239, 35655, 52527,
            77031, 106239, 142587, 156159, 216367, 230631, 410011, 511935, 626331, 837799,
        ];
        let records = find(1, 1_000_000, 65_536);
        assert_eq!(starts(&records, Kind::Delay), a006877);
        let of_27 = records.iter().find(|r| r.start == 27).unwrap();
        assert_eq!((of_27.steps, of_27.peak.to_string()), (111, "9232".into()));
    }

    #[test]
    fn from_one_the_peak_records_are_oeis_a006884() {
        // The sequence's terms below 6,000,000 (oeis.org/A006884).
        let a006884 = [
            1, 2, 3, 7, 15, 27, 255, 447, 639, 703, 1819, 4255, 4591, 9663, 20895, 26623, 31911,
            60975, 77671, 113383, 138367, 159487, 270271, 665215, 704511, 1042431, 1212415,
            1441407, 1875711, 1988859, 2643183, 2684647, 3041127, 3873535, 4637979, 5656191,
        ];
        let records = find(1, 6_000_000, 1 << 20);
        assert_eq!(starts(&records, Kind::Peak), a006884);
    }

    #[test]
    fn the_first_start_is_a_record_of_both_kinds() {
        let records = find(28, 28, 1);
        assert_eq!(
            records.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Delay, Kind::Peak]
        );
        assert_eq!(records[0].steps, 18);
        assert_eq!(
            csv(&records),
            "kind,start,steps,peak\ndelay,28,18,52\npeak,28,18,52\n"
        );
    }

    #[test]
    fn raising_the_end_goes_on_where_it_is() {
        let mut raised = Search::new(1, 500).unwrap();
        while let Some((first, last)) = raised.next_stretch(64) {
            raised.absorb(&scan(1, first, last));
        }
        assert!(raised.raise_to(3000));
        assert!(!raised.raise_to(2000), "only up");
        assert_eq!(raised.checked(), 500);
        while let Some((first, last)) = raised.next_stretch(64) {
            raised.absorb(&scan(1, first, last));
        }
        assert_eq!(raised.records, plain(1, 3000));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(Search::new(0, 5).is_none());
        assert!(Search::new(6, 5).is_none());
        assert!(Search::new(1, u64::MAX).is_none());
    }

    proptest! {
        #[test]
        fn any_range_in_any_stretches_equals_the_plain_loop(
            from in 1u64..200_000,
            len in 1u64..3_000,
            stretch in 1u64..700,
        ) {
            let to = from + len - 1;
            prop_assert_eq!(find(from, to, stretch), plain(from, to));
        }

        /// What a trajectory past 128 bits would take (none is known
        /// below 2^64) gives what the fast path gives.
        #[test]
        fn the_path_at_any_size_agrees_with_the_fast_one(
            start in 2u64..u64::MAX / 4,
            below in 0u64..1000,
        ) {
            let from = start.saturating_sub(below).max(1);
            let (steps, height) = tables().check(start, from).unwrap();
            prop_assert_eq!(check_huge(start, from), (steps, wide(height)));
            prop_assert_eq!(trajectory(start), huge_trajectory(Number::from(start)));
        }

        #[test]
        fn large_starts_equal_the_plain_loop(
            from in (1u64 << 40)..(1u64 << 62),
            len in 1u64..300,
        ) {
            let to = from + len - 1;
            prop_assert_eq!(find(from, to, 97), plain(from, to));
        }
    }
}
