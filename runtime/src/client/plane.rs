//! Which plane an attempt goes over: the direct connection to its instance
//! when the record advertises one and the client calls directly, NATS
//! otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;

use crate::TransportError;
use crate::engine::discovery::InstanceRecord;
use crate::engine::transport::Transport;
use crate::engine::transport::direct::Reach;
use crate::engine::transport::message::{Headers, Message};
use crate::engines::Engines;
use crate::exchange::stream;

/// The transport of one attempt.
pub(super) struct Plane {
    pub transport: Arc<dyn Transport>,
    /// `true` over a direct connection: its closing is evidence that the
    /// instance is gone, as "no responders" is on NATS.
    pub direct: bool,
}

/// The plane to reach `record` (`None`: the queue group) over; `Err(())`
/// when its direct address refuses connections: nothing listens there.
pub(super) async fn plane(engines: &Engines, record: Option<&InstanceRecord>) -> Result<Plane, ()> {
    let nats = || Plane { transport: engines.transport.clone(), direct: false };
    let (Some(pool), Some(address)) = (&engines.pool, record.and_then(|r| r.direct.as_deref())) else {
        return Ok(nats());
    };
    match pool.reach(address).await {
        Reach::Direct(conn) => Ok(Plane { transport: conn, direct: true }),
        Reach::Gone => Err(()),
        Reach::Nats => Ok(nats()),
    }
}

/// A stream's inbox, subscribed on the plane of the attempt that asks for
/// it, before the request goes out, so that no item can be missed.
pub(super) struct Opening {
    window: (u32, u64),
    heartbeat: Duration,
    subscribed: Mutex<Option<Subscribed>>,
}

/// An inbox and its messages, on one transport.
pub(super) struct Subscribed {
    pub transport: Arc<dyn Transport>,
    pub messages: BoxStream<'static, Message>,
    inbox: String,
}

impl Opening {
    pub(super) fn new(window: (u32, u64), heartbeat: Duration) -> Self {
        Opening { window, heartbeat, subscribed: Mutex::new(None) }
    }

    /// The headers that ask for the stream over `transport`, subscribed to
    /// their inbox there (again, when the last attempt went elsewhere).
    pub(super) async fn headers(&self, transport: &Arc<dyn Transport>) -> Result<Headers, TransportError> {
        let current = self.lock().as_ref().filter(|s| same(&s.transport, transport)).map(|s| s.inbox.clone());
        let inbox = match current {
            Some(inbox) => inbox,
            None => {
                let inbox = transport.inbox();
                let messages = transport.subscribe(inbox.clone()).await?;
                *self.lock() =
                    Some(Subscribed { transport: transport.clone(), messages, inbox: inbox.clone() });
                inbox
            }
        };
        Ok(stream::open_headers(inbox, self.window, self.heartbeat))
    }

    /// The subscription of the last attempt.
    pub(super) fn take(&self) -> Option<Subscribed> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Subscribed>> {
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn same(a: &Arc<dyn Transport>, b: &Arc<dyn Transport>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
