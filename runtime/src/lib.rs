//! The engine behind Rotor's generated code: discovery, transport, serving,
//! clients. Use it through the `rotor` crate.
//!
//! A [`Runtime`] is one instance identity on a [`Transport`](transport::Transport)
//! and a [`Discovery`](discovery::Discovery). `rt.serve(value)` hosts a
//! component; `Type::client(&rt)` makes its typed client.
//!
//! The crate is built on three floors, and a module's imports only point
//! down:
//!
//! | floor | modules | what it holds |
//! | --- | --- | --- |
//! | top | `runtime`, `serve`, `client`, `status`, `names` | hosting, routing, health; [`Runtime`] is a thin facade over them |
//! | middle | `exchange` | the envelope, codecs, every outcome encoded and decoded, the reply sink, streams |
//! | bottom | `engine` | transports and the NATS micro model, discovery, metrics, config |
//!
//! Beneath all three: the error types, [`InstanceId`] and
//! [`Guard`](transport::Guard).

#![warn(missing_docs)]

mod error;
mod guard;
mod instance;

mod engine;

mod exchange;

mod client;
mod component;
mod connections;
mod context;
pub mod describe;
mod engines;
pub mod handler;
pub mod names;
pub mod registry;
mod runtime;
mod serve;
pub mod signal;
pub mod state;
pub mod status;

#[doc(hidden)]
pub mod __private_0_1;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod __fuzz;

pub use engine::{config, discovery, metrics, transport};
pub use exchange::{codec, wire};
/// The JSON Schema derive Rotor reads endpoint types with: `#[derive(rotor::schemars::JsonSchema)]`
/// and `#[schemars(crate = "rotor::schemars")]`, or schemars as a dependency of your own.
#[cfg(feature = "schemas")]
pub use schemars;

/// NATS micro service statistics, as `$SRV.STATS` returns them, typed.
pub mod stats {
    pub use crate::engine::micro::stats::*;
}

pub use client::{Answers, ClientCore, ClientStats, FanOut, Router};
pub use component::Endpoints;
pub use config::Config;
pub use context::Context;
pub use error::{CallError, Error, ErrorKind, TransportError};
pub use exchange::stream::ResponseStream;
pub(crate) use guard::Guard;
pub use handler::Handler;
pub use instance::InstanceId;
pub use registry::{ComponentDescriptor, EndpointDescriptor, components};
pub use runtime::{Mode, Runtime, RuntimeBuilder, Serving};
pub use serve::{ServeHandle, ShutdownReport};
pub use signal::shutdown_signal;
pub use stats::{EndpointStats, ServiceSet, ServiceStats};
