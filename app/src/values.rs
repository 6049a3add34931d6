//! Any value of the run, for the list and the chart: the newest from the
//! snapshot's window, older ones fetched from the server a page at a time
//! (exact, recomputed there) and kept for a while.

use leptos::prelude::*;

use crate::state::PageState;

/// Values per fetched page.
pub const PAGE: u64 = 100;
/// The most pages kept; past it the cache starts again (what is on screen is
/// fetched again at once).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // fetching is the browser's
const KEPT: usize = 40;

/// Pages of one run's values.
#[derive(Debug, Default)]
struct Cache {
    /// The start of the run the pages belong to.
    start: String,
    /// Page numbers (`step / PAGE`) and their values; a short list, so a
    /// plain vector (a map would add to the page's download).
    pages: Vec<(u64, Vec<String>)>,
    /// Pages asked for and not answered yet.
    pending: Vec<u64>,
}

impl Cache {
    /// The values of one page, if kept.
    fn page(&self, page: u64) -> Option<&Vec<String>> {
        self.pages
            .iter()
            .find_map(|(number, values)| (*number == page).then_some(values))
    }
}

/// The run's values, wherever they are.
#[derive(Clone, Copy)]
pub struct Values {
    state: PageState,
    cache: RwSignal<Cache>,
    /// Why older values could not be loaded, until a page arrives.
    pub error: RwSignal<Option<String>>,
}

impl Values {
    /// The values of the run `state` shows.
    pub fn new(state: PageState) -> Values {
        Values {
            state,
            cache: RwSignal::new(Cache::default()),
            error: RwSignal::new(None),
        }
    }

    /// The value of `step`, if it is at hand; otherwise its page is asked
    /// for (in the browser) and this is read again when it arrives.
    pub fn get(&self, step: u64) -> Option<String> {
        self.range(step, step + 1).pop().flatten()
    }

    /// The values of steps `first .. end`, each if it is at hand; the pages
    /// of the others are asked for, and this is read again when they arrive.
    pub fn range(&self, first: u64, end: u64) -> Vec<Option<String>> {
        let Some((start, mut shown, from_window)) = self.state.snapshot.with(|s| {
            let run = s.run.as_ref()?;
            let window = run.first_recent_step();
            let shown: Vec<Option<String>> = (first..end)
                .map(|step| {
                    let at = usize::try_from(step.checked_sub(window)?).ok()?;
                    run.recent.get(at).cloned()
                })
                .collect();
            Some((run.start.clone(), shown, window))
        }) else {
            return Vec::new();
        };
        if first >= from_window {
            return shown;
        }
        let mut missing = Vec::new();
        self.cache.with(|cache| {
            for (step, value) in (first..end).zip(shown.iter_mut()) {
                if value.is_some() {
                    continue;
                }
                let page = step / PAGE;
                *value = (cache.start == start)
                    .then(|| cache.page(page)?.get((step % PAGE) as usize).cloned())
                    .flatten();
                if value.is_none() && missing.last() != Some(&page) {
                    missing.push(page);
                }
            }
        });
        for page in missing {
            self.fetch(start.clone(), page);
        }
        shown
    }

    /// Asks again for the pages that could not be loaded.
    pub fn retry(&self) {
        self.error.set(None);
        self.cache.update(|cache| cache.pending.clear());
    }

    /// Asks the server for one page, once at a time.
    fn fetch(&self, start: String, page: u64) {
        let asked = self
            .cache
            .try_update_untracked(|cache| {
                if cache.start != start {
                    *cache = Cache {
                        start: start.clone(),
                        ..Cache::default()
                    };
                }
                let asked = !cache.pending.contains(&page);
                if asked {
                    cache.pending.push(page);
                }
                asked
            })
            .unwrap_or(false);
        if asked {
            self.request(page);
        }
    }

    /// Nothing to ask while rendering on the server: the page is rendered
    /// at the newest values, which the snapshot holds.
    #[cfg(not(feature = "hydrate"))]
    fn request(&self, _page: u64) {}

    /// Sends the request for one page; its answer fills the cache.
    #[cfg(feature = "hydrate")]
    fn request(&self, page: u64) {
        {
            let (cache, error, run) = (self.cache, self.error, self.state.run);
            leptos::task::spawn_local(async move {
                let answer = crate::api::load_values(page * PAGE, PAGE, run.get_untracked()).await;
                cache.update(|cache| {
                    // A failed page stays asked for until [`Values::retry`],
                    // so a server that is down is not asked in a loop.
                    if answer.is_ok() {
                        cache.pending.retain(|p| *p != page);
                    }
                    match answer {
                        // A page of another run (the number changed) is
                        // dropped.
                        Ok(values) if values.start == cache.start => {
                            if cache.pages.len() >= KEPT {
                                cache.pages.clear();
                            }
                            cache.pages.push((page, values.values));
                            error.set(None);
                        }
                        Ok(_) => {}
                        Err(e) => error.set(Some(e.to_string())),
                    }
                });
            });
        }
    }
}
