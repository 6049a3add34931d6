//! Hailstone's pure domain, shared by the server and the browser.
//!
//! Nothing here knows about tokio, axum, leptos, clocks or I/O: it compiles to
//! native code and to `wasm32-unknown-unknown` alike.
//!
//! - [`Number`]: exact positive integers of any size, and the Collatz step.
//! - [`input`]: the one validation of what a user types.
//! - [`task`]: what a kind of background task is ([`task::Task`]), and the
//!   machine that runs any kind (status, generation, version, saving).
//! - [`collatz`]: the Collatz kind; [`Collatz`] is a session's machine for it.
//! - [`records`]: record search over a range of starts, exact and fast.
//! - [`search`]: the record search kind, a range checked stretch by stretch.
//! - [`job`]: both kinds as the one the runtime runs ([`job::Job`]).
//! - [`wire`]: the commands and updates that travel as JSON.
//! - [`trajectory`]: any page of a run, recomputed exactly from bounded marks.
//! - [`when`]: a Unix time in words, alike on the server and in the browser.

pub mod collatz;
pub mod input;
pub mod job;
mod number;
mod profile;
pub mod records;
pub mod search;
mod tagged;
pub mod task;
pub mod trajectory;
pub mod when;
pub mod wire;

pub use collatz::{Collatz, Outcome, Resume, Saved, SavedRun, Settings};
pub use number::{group_digits, magnitude, Number};
pub use profile::{Profile, PROFILE_POINTS};
pub use task::{Refused, Unrestorable};
