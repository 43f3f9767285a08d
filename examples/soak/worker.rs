//! The component the soak and the fault tests load: one idempotent endpoint
//! that answers at once, and one that is not idempotent and holds its call.

use std::time::Duration;

use rotor::prelude::*;
use serde::{Deserialize, Serialize};

/// Does nothing much, on purpose: the soak measures Rotor, not work.
pub struct Worker;

#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    /// The number the caller sent.
    pub n: u64,
    pub by: InstanceId,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub enum WorkError {
    #[error("asked to hold for {0} ms, more than a minute")]
    TooLong(u64),
}

#[rotor::component(namespace = "soak")]
impl Worker {
    /// Echoes `n` with the instance that answered. Idempotent (the default):
    /// a call in flight to a lost instance is sent again elsewhere.
    #[endpoint]
    pub async fn work(&self, ctx: Context, n: u64) -> Result<Done, WorkError> {
        Ok(Done { n, by: ctx.instance_id() })
    }

    /// Answers after `ms` milliseconds. Not idempotent: a call in flight to
    /// a lost instance fails with `InstanceLost` instead of running twice.
    /// Prints `holding` as it starts, for a test that must know a call is
    /// under way.
    #[endpoint(idempotent = false)]
    pub async fn hold(&self, ctx: Context, ms: u64) -> Result<InstanceId, WorkError> {
        if ms > 60_000 {
            return Err(WorkError::TooLong(ms));
        }
        println!("holding {ms} ms");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ctx.instance_id())
    }
}
