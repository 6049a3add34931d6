//! What every part of the page reads and writes, and how it is described:
//! the one module the components share (none imports another).

use leptos::prelude::*;
use shared::wire::{Command, Snapshot, Status};

/// The state of the event stream, shown as a live indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // set by the stream, in the browser
pub enum Link {
    /// Not yet open (before hydration, or while opening).
    Connecting,
    /// Open and delivering updates.
    Live,
    /// Dropped; the browser is reconnecting.
    Reconnecting,
}

/// What every part of the page reads and writes.
#[derive(Clone, Copy)]
pub struct PageState {
    /// The session as the server last described it.
    pub snapshot: RwSignal<Snapshot>,
    /// The event stream's state.
    pub link: RwSignal<Link>,
    /// Whether the stream follows a session (a visitor has none until the
    /// first command starts one).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // the stream's, in the browser
    pub attached: RwSignal<bool>,
    /// Bumped when a command succeeded while the stream followed no
    /// session: the command started one, so the stream reopens to follow it.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub rejoin: RwSignal<u64>,
    /// The most digits a number may have (the server's setting).
    pub max_digits: StoredValue<usize>,
    /// The recent values kept, as the server keeps them.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub window: StoredValue<shared::wire::Window>,
    /// Sends a command; commands of one page leave in the order given.
    pub send: Callback<crate::commands::Queued>,
    /// The id of the run the page shows; `None` while it follows no
    /// session. Set by the page (a run opened) and by the stream (the run
    /// it follows).
    pub run: RwSignal<Option<String>>,
    /// The session's runs, newest first, as the stream last said.
    pub runs: RwSignal<Vec<shared::job::Listed>>,
    /// The id of the search the "Record search" region shows (the
    /// session's newest, until another is opened).
    pub search: RwSignal<Option<String>>,
    /// The longest text a search's From or To may be (the server's setting).
    pub max_input_chars: StoredValue<usize>,
}

impl PageState {
    /// Shows run `run` (`None`: the session's default): the stream reopens
    /// for it, and until its first snapshot the page shows no run (not the
    /// one before).
    pub fn open(&self, run: Option<String>) {
        if self.run.get_untracked() == run {
            return;
        }
        let interval_ms = self
            .snapshot
            .with_untracked(|snapshot| snapshot.interval_ms);
        self.snapshot.set(Snapshot {
            version: 0,
            status: Status::Idle,
            interval_ms,
            failure: None,
            unwatched: Default::default(),
            started_at: None,
            run: None,
        });
        self.run.set(run);
    }

    /// Queues `command` for the run shown now.
    pub fn command(&self, command: Command) {
        self.send
            .run((self.run.get_untracked(), command, crate::commands::ignore()));
    }
}

/// The status line under the switch.
pub fn describe(snapshot: &Snapshot) -> String {
    let steps = snapshot.run.as_ref().map_or(0, |run| run.steps);
    let steps_text = shared::group_digits(&steps.to_string());
    match snapshot.status {
        Status::Idle => "Enter a number to start.".to_owned(),
        Status::Running => format!("{steps_text} steps so far"),
        Status::Paused => "Paused".to_owned(),
        Status::Finished => format!("Reached 1 in {steps_text} steps."),
        Status::Cancelled => format!("Cancelled after {steps_text} steps."),
        Status::Failed => {
            let failure = snapshot.failure.unwrap_or_default();
            let next = if failure.may_retry() {
                "Switch it on to try again."
            } else {
                "Enter a number to start another."
            };
            format!("Stopped after {steps_text} steps: {failure}. {next}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::Failure;

    #[test]
    fn a_failed_run_says_why_and_what_to_do() {
        let mut machine = shared::Collatz::new(shared::Settings::default());
        // A hundred nines take thousands of steps to reach 1.
        let set = shared::wire::Command::SetNumber {
            text: "9".repeat(100),
        };
        let generation = machine.apply(&set).unwrap().start_task.unwrap();
        for _ in 0..1234 {
            machine.step(generation).unwrap();
        }
        let mut limited = machine.clone();
        machine.halt(generation, Failure::StoreRefused).unwrap();
        assert_eq!(
            describe(&machine.snapshot()),
            "Stopped after 1,234 steps: the server could not save its steps. Switch it on to try again."
        );
        limited.halt(generation, Failure::StepLimit).unwrap();
        assert_eq!(
            describe(&limited.snapshot()),
            "Stopped after 1,234 steps: it took as many steps as the server lets one run take. \
             Enter a number to start another."
        );
    }
}
