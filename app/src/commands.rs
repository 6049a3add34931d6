//! Sending commands from the page, in order.
//!
//! Each command waits for the previous one's answer before it leaves, so
//! the server applies a page's commands in the order the user gave them
//! (two requests in flight could otherwise overtake each other).

use leptos::prelude::*;
use shared::wire::Command;

use crate::api::AppError;

/// A command and what to do with its answer.
pub type Queued = (Command, Callback<Result<u64, AppError>>);

/// A callback that queues a command for sending.
pub fn sender() -> Callback<Queued> {
    #[cfg(feature = "hydrate")]
    {
        use futures::{channel::mpsc, StreamExt};
        let (queue, mut pending) = mpsc::unbounded::<Queued>();
        leptos::task::spawn_local(async move {
            while let Some((command, reply)) = pending.next().await {
                let answer = crate::api::send_command(command).await;
                reply.run(answer);
            }
        });
        Callback::new(move |item: Queued| {
            let _ = queue.unbounded_send(item);
        })
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // Server rendering sends nothing.
        Callback::new(|_: Queued| {})
    }
}
