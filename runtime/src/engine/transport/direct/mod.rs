//! The direct plane: requests over persistent, multiplexed TCP connections
//! from callers straight to instances, beside NATS rather than instead of
//! it. NATS stays the control plane (`$SRV`, static components, callers
//! that speak only NATS) and the fallback when a direct address cannot be
//! reached; the exchange (envelopes, errors, streams) is the same on both,
//! only the framing differs.
//!
//! A serving runtime listens on one port ([`DirectServer`]) and its
//! instance records advertise it; a client keeps one connection per
//! instance address it calls.

mod conn;
mod frame;
mod hello;
mod pool;
mod server;
mod stall;
mod tls;

pub(crate) use pool::{DirectPool, Reach};
pub use server::DirectServer;
pub(crate) use tls::{Acceptor, Connector};

/// The largest message the direct plane carries by default: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024 * 1024;
