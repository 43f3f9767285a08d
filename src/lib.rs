//! # Rotor
//!
//! Two attribute macros turn an ordinary `impl` block into a distributed
//! service: `#[component(namespace = "ns")]` on the block and `#[endpoint]`
//! on its async methods. Names are checked at compile time; every component
//! gets a typed client.
//!
//! ```
//! use rotor::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! struct Greeter;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hello { name: String }
//!
//! #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
//! #[error("nobody to greet")]
//! struct Nobody;
//!
//! #[rotor::component(namespace = "demo")]
//! impl Greeter {
//!     #[endpoint]
//!     async fn hello(&self, req: Hello) -> Result<String, Nobody> {
//!         if req.name.is_empty() { Err(Nobody) } else { Ok(format!("hello, {}", req.name)) }
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = Runtime::embedded().await?;
//! let _server = rt.serve(Greeter).await?;
//! let client = Greeter::client(&rt).await?;
//! assert_eq!(client.hello(Hello { name: "rotor".into() }).await?, "hello, rotor");
//! assert!(client.hello(Hello { name: "".into() }).await.unwrap_err().app().is_some());
//! # Ok(()) }
//! ```
//!
//! See the book for the model, the names on the wire, and the runtime modes.

pub use rotor_macros::{component, endpoint};
pub use rotor_runtime::*;

/// What most programs need: the macros, the runtime, the handles it gives
/// back, the context, the error types, and `StreamExt` to read a stream.
pub mod prelude {
    pub use crate::{
        CallError, Context, Error, InstanceId, ResponseStream, Router, Runtime, ServeHandle, TransportError,
        component, endpoint,
    };
    pub use futures::StreamExt;
}

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
