//! One task that receives the requests of every subscription a NATS
//! connection serves.
//!
//! A task per subscription woke once per request when requests were spread
//! over many instances: with 64 calls in flight over 1,000 instances in one
//! process, nearly every request woke a task of its own and moved a worker
//! thread in and out of sleep, where one instance's task took a batch per
//! wake-up. In one task the listeners are polled only when woken, like
//! futures in a `FuturesUnordered`, and a wake-up drains every request that
//! is ready, whichever instance it is for. What each listener does with a
//! request (start the handler's task) stays as cheap as it was.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

/// The listeners of one connection, run by one task started on first use
/// and ended when the connection's last handle goes and every listener has
/// finished.
#[derive(Debug, Default)]
pub(super) struct Listeners {
    hub: Mutex<Option<mpsc::UnboundedSender<BoxFuture<'static, ()>>>>,
}

impl Listeners {
    /// Runs `listener` in the shared task.
    pub(super) fn run(&self, listener: impl Future<Output = ()> + Send + 'static) {
        let mut hub = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        let listener: BoxFuture<'static, ()> = Box::pin(listener);
        // A hub whose runtime has shut down is replaced, not sent to.
        let sent = match hub.as_ref() {
            Some(tx) => tx.send(listener).map_err(|back| back.0),
            None => Err(listener),
        };
        if let Err(listener) = sent {
            let (tx, rx) = mpsc::unbounded_channel();
            tx.send(listener).expect("the receiver is here");
            tokio::spawn(run_all(rx));
            *hub = Some(tx);
        }
    }
}

async fn run_all(mut arriving: mpsc::UnboundedReceiver<BoxFuture<'static, ()>>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            listener = arriving.recv() => match listener {
                Some(listener) => running.push(listener),
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
}
