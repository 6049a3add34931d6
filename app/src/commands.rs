//! Sending commands from the page, in order.
//!
//! Each command waits for the previous one's answer before it leaves, so
//! the server applies a page's commands in the order the user gave them
//! (two requests in flight could otherwise overtake each other).

use leptos::prelude::*;
use shared::wire::Command;

use crate::api::AppError;

/// A command, the run it is for (its id when the command was given; `None`
/// while the page follows no session), and what to do with its answer.
pub type Queued = (Option<String>, Command, Reply);

/// What to do with a command's answer. A plain closure, not a `Callback`:
/// a callback made in a click handler belongs to the handler's owner, which
/// a redraw disposes (a list row's buttons are redrawn with every change of
/// their run), and running a disposed callback when the answer comes panics.
pub type Reply = Box<dyn FnOnce(Result<u64, AppError>) + Send>;

/// A reply that does nothing with the answer.
pub fn ignore() -> Reply {
    Box::new(|_| {})
}

/// A callback that queues a command for sending. A command that succeeds
/// while the page follows no session has started one: `rejoin` is bumped so
/// the stream reopens to follow it.
pub fn sender(attached: RwSignal<bool>, rejoin: RwSignal<u64>) -> Callback<Queued> {
    #[cfg(feature = "hydrate")]
    {
        use futures::{channel::mpsc, StreamExt};
        let (queue, mut pending) = mpsc::unbounded::<Queued>();
        leptos::task::spawn_local(async move {
            while let Some((run, command, reply)) = pending.next().await {
                let answer = crate::api::send_command(command, run).await;
                if answer.is_ok() && !attached.get_untracked() {
                    rejoin.update(|n| *n += 1);
                }
                reply(answer);
            }
        });
        Callback::new(move |item: Queued| {
            let _ = queue.unbounded_send(item);
        })
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // Server rendering sends nothing.
        let _ = (attached, rejoin);
        Callback::new(|_: Queued| {})
    }
}
