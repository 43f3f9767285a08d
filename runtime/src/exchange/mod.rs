//! The middle floor: the exchange. It owns what a call is made of on top of
//! a transport's messages: the request envelope and wire version
//! ([`wire`]), payload encoding ([`codec`]), the encoding and decoding of
//! every outcome (one mapping from a reply to a
//! [`CallError`](crate::CallError), for unary replies and streams alike), the
//! server's reply sink that answers once or opens a stream, the stream
//! protocol, and the trace context. It knows the engines' transport and
//! metrics, never serving, clients or the runtime above it.

pub mod codec;
pub(crate) mod outcome;
pub(crate) mod sink;
pub mod stream;
pub(crate) mod trace;
pub mod wire;
