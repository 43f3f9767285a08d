//! The engine behind Rotor's generated code: discovery, transport, serving,
//! clients. Use it through the `rotor` crate.
//!
//! A [`Runtime`] is one instance identity on a [`Transport`](transport::Transport)
//! and a [`Discovery`](discovery::Discovery). `rt.serve(value)` hosts a
//! component; `Type::client(&rt)` makes its typed client.

#![warn(missing_docs)]

mod client;
pub mod codec;
pub mod config;
mod context;
pub mod discovery;
mod error;
mod guard;
mod instance;
pub mod metrics;
pub mod names;
mod registry;
mod runtime;
mod serve;
mod service;
pub mod signal;
mod stats;
pub mod status;
mod stream;
pub mod transport;
pub mod wire;

#[doc(hidden)]
pub mod __private;

pub use client::{ClientCore, ClientStats, Router};
pub use config::Config;
pub use context::Context;
pub use error::{CallError, Error, TransportError};
pub use guard::Guard;
pub use instance::InstanceId;
pub use registry::{ComponentDescriptor, EndpointDescriptor, check as check_registry, components};
pub use runtime::{Mode, Runtime, RuntimeBuilder};
pub use serve::{ServeHandle, ShutdownReport};
pub use service::Service;
pub use signal::shutdown_signal;
pub use stats::{EndpointStats, ServiceSet, ServiceStats};
pub use stream::ResponseStream;
