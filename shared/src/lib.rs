//! Hailstone's pure domain, shared by the server and the browser.
//!
//! Nothing here knows about tokio, axum, leptos, clocks or I/O: it compiles to
//! native code and to `wasm32-unknown-unknown` alike.
//!
//! - [`Number`]: exact positive integers of any size, and the Collatz step.
//! - [`input`]: the one validation of what a user types.
//! - [`Collatz`]: one session's state machine (status, run, generation, version).
//! - [`wire`]: the commands and updates that travel as JSON.
//! - [`trajectory`]: any page of a run, recomputed exactly from bounded marks.

pub mod input;
mod machine;
mod number;
mod profile;
pub mod trajectory;
pub mod wire;

pub use machine::{Collatz, Outcome, Refused, Resume, Saved, Settings, Unrestorable};
pub use number::{group_digits, magnitude, Number};
pub use profile::{Profile, PROFILE_POINTS};
