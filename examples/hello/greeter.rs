//! The component shared by `hello_server` and `hello_client`. In a real
//! deployment it would live in a library crate both depend on.

use std::sync::atomic::{AtomicU64, Ordering};

use rotor::prelude::*;
use serde::{Deserialize, Serialize};

/// Greets people; counts what it has done.
pub struct Greeter {
    pub greeting: String,
    pub greeted: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HelloRequest {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HelloReply {
    pub text: String,
    pub served_by: InstanceId,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub enum HelloError {
    #[error("a name is required")]
    EmptyName,
}

#[rotor::component(namespace = "hello")]
impl Greeter {
    /// Greets someone by name.
    #[endpoint]
    pub async fn hello(&self, ctx: Context, req: HelloRequest) -> Result<HelloReply, HelloError> {
        if req.name.is_empty() {
            return Err(HelloError::EmptyName);
        }
        self.greeted.fetch_add(1, Ordering::Relaxed);
        Ok(HelloReply { text: format!("{}, {}!", self.greeting, req.name), served_by: ctx.instance_id() })
    }

    /// Which instance answered: cheap, idempotent, for health checks and tests.
    #[endpoint]
    pub async fn ping(&self, ctx: Context) -> Result<InstanceId, HelloError> {
        Ok(ctx.instance_id())
    }

    /// How many greetings this instance has given. Marked non-idempotent to
    /// show the flag: such a call is never retried on another instance.
    #[endpoint(idempotent = false)]
    pub async fn greeted(&self) -> Result<u64, HelloError> {
        Ok(self.greeted.load(Ordering::Relaxed))
    }
}
