//! The bottom floor: the engines. A transport carries messages
//! ([`transport`]) and speaks the NATS micro protocol ([`micro`]);
//! discovery registers and finds instances ([`discovery`]); [`metrics`]
//! holds the Prometheus registries; [`config`] says how to reach the
//! servers. Nothing here knows of the exchange, serving, clients or the
//! runtime above it.

pub mod config;
pub mod discovery;
pub mod metrics;
pub mod micro;
pub mod transport;
