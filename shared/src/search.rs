//! The record search task kind: a range of starts checked stretch by
//! stretch ([`crate::records`]), its records kept as they are found.
//!
//! One step absorbs one stretch of [`STRETCH`] starts. The stretches are
//! planned under the run's lock and checked outside it, several at once on
//! the tasks' threads ([`SearchRun::plan`]); the step only absorbs what was
//! found, so the lock is held for microseconds however long a stretch
//! takes. Memory per search: its records (a few hundred at most below
//! 2^64, each under 100 bytes) and the step at which each was found; the
//! engine's tables are shared by every search of the process.

use serde::{Deserialize, Serialize};

use crate::{
    input::{check_number, InputError},
    records::{self, Record, Search, Shown, Stretch},
    task::Unrestorable,
    wire::{Bound, CommandError},
};

/// Starts per stretch (one step) by default: about 0.15 s of one core over [1, 10^9]
/// (see BENCHMARKS.md), so a running search's page hears from it several
/// times a second and a pause wastes at most that much work.
pub const STRETCH: u64 = 1 << 22;

/// A step with no fitting work (its range was just changed under it) checks
/// this many starts itself, under the lock: a few hundred microseconds.
const OWN_STRETCH: u64 = 1 << 12;

/// The default longest text of a bound, separators included.
pub const DEFAULT_MAX_INPUT_CHARS: usize = 40;

/// Fixed choices for searches, from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchSettings {
    /// The longest text of From or To, separators included.
    pub max_input_chars: usize,
    /// Starts per stretch, one step ([`STRETCH`]; tests take fewer).
    pub stretch: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            max_input_chars: DEFAULT_MAX_INPUT_CHARS,
            stretch: STRETCH,
        }
    }
}

/// A user's command to a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SearchCommand {
    /// Search From…To, as typed: raising To goes on, anything else starts
    /// over.
    SetRange {
        /// What the user typed as From.
        from: String,
        /// What the user typed as To.
        to: String,
    },
}

/// Parses a bound as typed: digits, with `_`, `,`, `'` or spaces between
/// groups if the user likes; at most `max_chars` characters; below 2^64 - 1.
pub fn parse_bound(text: &str, max_chars: usize) -> Result<u64, InputError> {
    let chars = text.trim().chars().count();
    if chars > max_chars {
        return Err(InputError::TooWide {
            chars,
            max: max_chars,
        });
    }
    let is_separator = |c: char| matches!(c, '_' | ',' | '\'') || c.is_whitespace();
    let grouped = text.trim();
    let digits: String = grouped.chars().filter(|&c| !is_separator(c)).collect();
    // Separators only between digits: "1,000" is a number, ",1" is not.
    let well_placed = !grouped.starts_with(is_separator) && !grouped.ends_with(is_separator);
    let checked = match check_number(&digits, 20) {
        Ok(digits) if well_placed || grouped == digits => digits,
        Ok(_) => return Err(InputError::NotANumber),
        Err(InputError::TooLong { .. }) => return Err(InputError::TooLarge),
        Err(InputError::Empty) if !grouped.is_empty() => return Err(InputError::NotANumber),
        Err(error) => return Err(error),
    };
    match checked.parse::<u64>() {
        Ok(value) if value < u64::MAX => Ok(value),
        _ => Err(InputError::TooLarge),
    }
}

/// Parses a range as typed, or says which bound is wrong and why.
pub fn parse_range(from: &str, to: &str, max_chars: usize) -> Result<(u64, u64), CommandError> {
    let bound = |field, text| {
        parse_bound(text, max_chars).map_err(|reason| CommandError::Range { field, reason })
    };
    let (from, to) = (bound(Bound::From, from)?, bound(Bound::To, to)?);
    if from > to {
        return Err(CommandError::Backwards);
    }
    Ok((from, to))
}

/// One search run: the engine's state, and when each record was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRun {
    /// Where the search is and its records so far.
    search: Search,
    /// Stretches absorbed: the run's position, one per step.
    steps: u64,
    /// For each record (in order), the step that found it: a page at step
    /// `s` has the records found at or before `s`.
    found: Vec<u64>,
}

/// A stretch to check: the range's first start and the stretch's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The range's first start.
    from: u64,
    /// The stretch's first start.
    first: u64,
    /// Its last start.
    last: u64,
}

impl Plan {
    /// Checks the stretch (pure; any thread).
    pub fn work(self) -> Stretch {
        records::scan(self.from, self.first, self.last)
    }
}

/// A search as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchView {
    /// The range's first start.
    pub from: u64,
    /// Its last start.
    pub to: u64,
    /// Starts checked so far.
    pub checked: u64,
    /// Stretches absorbed.
    pub steps: u64,
    /// The records so far, by start.
    pub records: Vec<Shown>,
}

impl SearchView {
    /// Starts in the range.
    pub fn starts(&self) -> u64 {
        self.to - self.from + 1
    }
}

/// What changed in a search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchChange {
    /// The range's first start.
    pub from: u64,
    /// Its last start afterwards (raised, perhaps).
    pub to: u64,
    /// Starts checked afterwards.
    pub checked: u64,
    /// Stretches absorbed afterwards.
    pub steps: u64,
    /// Records found since the page's position, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Shown>,
}

impl crate::wire::Change for SearchChange {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn values(&self) -> usize {
        self.records.len()
    }

    fn merge(&mut self, next: SearchChange) {
        self.records.extend(next.records);
        self.to = next.to;
        self.checked = next.checked;
        self.steps = next.steps;
    }
}

impl crate::wire::View<SearchChange> for SearchView {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn values(&self) -> usize {
        self.records.len()
    }

    fn begin(change: &SearchChange, _window: crate::wire::Window) -> SearchView {
        SearchView {
            from: change.from,
            to: change.to,
            checked: change.checked,
            steps: change.steps,
            records: change.records.clone(),
        }
    }

    fn apply(&mut self, change: &SearchChange, _window: crate::wire::Window) {
        self.records.extend(change.records.iter().cloned());
        self.to = change.to;
        self.checked = change.checked;
        self.steps = change.steps;
    }
}

/// A search in a line, for the list of runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchBrief {
    /// The range's first start.
    pub from: u64,
    /// Its last start.
    pub to: u64,
    /// Starts checked so far.
    pub checked: u64,
    /// Records so far.
    pub records: usize,
}

/// What a store keeps of a search: all of it (its records are few).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSearch {
    /// The engine's state.
    pub search: Search,
    /// Stretches absorbed.
    pub steps: u64,
    /// The step that found each record.
    pub found: Vec<u64>,
    /// The version the run began at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<u64>,
}

impl SearchRun {
    /// A search of the range typed, or why it cannot be one.
    pub fn begin(
        settings: &SearchSettings,
        from: &str,
        to: &str,
    ) -> Result<SearchRun, CommandError> {
        let (from, to) = parse_range(from, to, settings.max_input_chars)?;
        let search = Search::new(from, to).expect("parse_range keeps 1 <= from <= to < 2^64 - 1");
        Ok(SearchRun {
            search,
            steps: 0,
            found: Vec::new(),
        })
    }

    /// The search so far.
    pub fn search(&self) -> &Search {
        &self.search
    }

    /// Goes on to a raised To when the range typed is this one's with a
    /// larger end; `None` when it is another range (or not a range: then
    /// beginning it says why).
    pub fn extend(
        &mut self,
        settings: &SearchSettings,
        from: &str,
        to: &str,
    ) -> Option<SearchChange> {
        let (from, to) = parse_range(from, to, settings.max_input_chars).ok()?;
        (from == self.search.from() && self.search.raise_to(to))
            .then(|| self.change_since(self.steps))
    }

    /// Whether every start is checked.
    pub fn done(&self) -> bool {
        self.search.is_done()
    }

    /// Stretches absorbed.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The next `ways` stretches, to be checked at once.
    pub fn plan(&self, settings: &SearchSettings, ways: usize) -> Vec<Plan> {
        let len = settings.stretch.max(1);
        let mut plans = Vec::with_capacity(ways);
        let mut first = self.search.next();
        let to = self.search.to();
        while plans.len() < ways && first <= to {
            let last = to.min(first.saturating_add(len - 1));
            plans.push(Plan {
                from: self.search.from(),
                first,
                last,
            });
            first = last + 1;
        }
        plans
    }

    /// One step: absorbs `work` when it is the next stretch of this range,
    /// else checks a short stretch itself.
    pub fn step(&mut self, work: Option<Stretch>) -> SearchChange {
        let stretch = match work {
            Some(stretch)
                if stretch.first == self.search.next() && stretch.last <= self.search.to() =>
            {
                stretch
            }
            _ => {
                let (first, last) = self
                    .search
                    .next_stretch(OWN_STRETCH)
                    .expect("a search that is not done has a next stretch");
                records::scan(self.search.from(), first, last)
            }
        };
        let before = self.search.records().len();
        self.search.absorb(&stretch);
        self.steps += 1;
        let found = self.search.records().len() - before;
        self.found.extend(std::iter::repeat_n(self.steps, found));
        self.change_since(self.steps - 1)
    }

    /// The whole search, for a page.
    pub fn view(&self) -> SearchView {
        SearchView {
            from: self.search.from(),
            to: self.search.to(),
            checked: self.search.checked(),
            steps: self.steps,
            records: self.search.records().iter().map(Record::shown).collect(),
        }
    }

    /// The search in a line.
    pub fn summary(&self) -> SearchBrief {
        SearchBrief {
            from: self.search.from(),
            to: self.search.to(),
            checked: self.search.checked(),
            records: self.search.records().len(),
        }
    }

    /// What a page at `from` steps misses (every record is held, so it is
    /// always known).
    pub fn since(&self, from: Option<u64>) -> SearchChange {
        self.change_since(from.unwrap_or(0).min(self.steps))
    }

    /// The change from a page at `steps`: the records found after it.
    fn change_since(&self, steps: u64) -> SearchChange {
        let first = self.found.partition_point(|&at| at <= steps);
        SearchChange {
            from: self.search.from(),
            to: self.search.to(),
            checked: self.search.checked(),
            steps: self.steps,
            records: self.search.records()[first..]
                .iter()
                .map(Record::shown)
                .collect(),
        }
    }

    /// What a store keeps of it.
    pub fn save(&self, began: u64) -> SavedSearch {
        SavedSearch {
            search: self.search.clone(),
            steps: self.steps,
            found: self.found.clone(),
            began: Some(began),
        }
    }

    /// The search `saved` holds, checked for consistency.
    pub fn restore(saved: &SavedSearch) -> Result<(SearchRun, Option<u64>), Unrestorable> {
        let consistent = saved.search.is_consistent()
            && saved.found.len() == saved.search.records().len()
            && saved.found.is_sorted()
            && saved.found.last().is_none_or(|&at| at <= saved.steps);
        if !consistent {
            return Err(Unrestorable("a search whose records do not fit its range"));
        }
        let run = SearchRun {
            search: saved.search.clone(),
            steps: saved.steps,
            found: saved.found.clone(),
        };
        Ok((run, saved.began))
    }

    /// The records as CSV (`kind,start,steps,peak`).
    pub fn csv(&self) -> String {
        records::csv(self.search.records())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_INPUT_CHARS;

    #[test]
    fn bounds_take_digit_groups_and_refuse_the_rest() {
        assert_eq!(parse_bound("1000000000", MAX), Ok(1_000_000_000));
        assert_eq!(parse_bound(" 1,000,000,000 ", MAX), Ok(1_000_000_000));
        assert_eq!(parse_bound("1_000 000'000", MAX), Ok(1_000_000_000));
        assert_eq!(parse_bound("0027", MAX), Ok(27));
        assert_eq!(parse_bound("18446744073709551614", MAX), Ok(u64::MAX - 1));
        let refused = [
            ("", InputError::Empty),
            ("   ", InputError::Empty),
            ("0", InputError::Zero),
            ("0,000", InputError::Zero),
            ("-5", InputError::Sign),
            ("1.5", InputError::Decimal),
            ("1e9", InputError::Exponent),
            ("abc", InputError::NotANumber),
            (",1", InputError::NotANumber),
            ("1,", InputError::NotANumber),
            ("18446744073709551615", InputError::TooLarge),
            ("99999999999999999999999", InputError::TooLarge),
        ];
        for (text, error) in refused {
            assert_eq!(parse_bound(text, MAX), Err(error), "{text:?}");
        }
        assert_eq!(
            parse_bound("1,000,000", 8),
            Err(InputError::TooWide { chars: 9, max: 8 })
        );
    }

    #[test]
    fn a_range_says_which_bound_is_wrong() {
        assert_eq!(parse_range("1", "1,000", MAX), Ok((1, 1000)));
        assert_eq!(
            parse_range("x", "1", MAX),
            Err(CommandError::Range {
                field: Bound::From,
                reason: InputError::NotANumber
            })
        );
        assert_eq!(
            parse_range("1", "0", MAX),
            Err(CommandError::Range {
                field: Bound::To,
                reason: InputError::Zero
            })
        );
        assert_eq!(parse_range("10", "9", MAX), Err(CommandError::Backwards));
        assert_eq!(
            CommandError::Backwards.to_string(),
            "From must not be above To."
        );
    }

    /// Stretches of 1,000 starts, so tests in a debug build see many.
    const SETTINGS: SearchSettings = SearchSettings {
        max_input_chars: MAX,
        stretch: 1000,
    };

    /// Steps with planned work, two at a time, until done.
    fn finish(run: &mut SearchRun) {
        while !run.done() {
            for plan in run.plan(&SETTINGS, 2) {
                run.step(Some(plan.work()));
            }
        }
    }

    #[test]
    fn planned_own_and_stale_work_give_the_plain_loops_records() {
        let settings = SETTINGS;
        let mut planned = SearchRun::begin(&settings, "1", "100000").unwrap();
        finish(&mut planned);
        assert_eq!(planned.search().records(), records::plain(1, 100_000));
        assert_eq!(planned.steps(), 100);
        // Work of another range (stale) is not taken: the step does its own.
        let mut own = SearchRun::begin(&settings, "5", "100000").unwrap();
        let stale = SearchRun::begin(&settings, "1", "100000")
            .unwrap()
            .plan(&settings, 1);
        own.step(Some(stale[0].work()));
        while !own.done() {
            own.step(None);
        }
        assert_eq!(own.search().records(), records::plain(5, 100_000));
    }

    #[test]
    fn raising_to_goes_on_and_a_page_gets_only_what_it_misses() {
        let settings = SETTINGS;
        let mut run = SearchRun::begin(&settings, "1", "10000").unwrap();
        finish(&mut run);
        let at = run.steps();
        let had = run.search().records().len();
        let page = run.view();
        assert!(
            run.extend(&settings, "1", "500").is_none(),
            "lowering To starts over"
        );
        assert!(
            run.extend(&settings, "2", "50000").is_none(),
            "another From starts over"
        );
        let change = run.extend(&settings, "1", "100,000").unwrap();
        assert_eq!((change.to, change.records.len()), (100_000, 0));
        finish(&mut run);
        assert_eq!(run.search().records(), records::plain(1, 100_000));
        let missed = run.since(Some(at));
        let shown =
            |records: &[Record]| -> Vec<Shown> { records.iter().map(Record::shown).collect() };
        assert_eq!(missed.records, shown(&run.search().records()[had..]));
        assert_eq!(run.since(None).records, shown(run.search().records()));
        // A page at the end of [1, 10000] is brought to the whole search.
        use crate::wire::View as _;
        let mut view = page;
        view.apply(&missed, 1.into());
        assert_eq!(view, run.view());
    }

    #[test]
    fn a_saved_search_comes_back_whole_and_a_damaged_one_is_refused() {
        let settings = SETTINGS;
        let mut run = SearchRun::begin(&settings, "1", "100000").unwrap();
        run.step(None);
        run.step(Some(run.plan(&settings, 1)[0].work()));
        let saved = run.save(7);
        let json = serde_json::to_string(&saved).unwrap();
        let back: SavedSearch = serde_json::from_str(&json).unwrap();
        assert_eq!(SearchRun::restore(&back).unwrap(), (run.clone(), Some(7)));
        let mut damaged = saved.clone();
        damaged.found.push(1);
        assert!(SearchRun::restore(&damaged).is_err());
    }
}
