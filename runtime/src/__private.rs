//! What the macro-generated code calls. Not a public API: it may change in
//! any release.

use std::fmt::Display;
use std::future::Future;

pub use std::sync::Arc;

pub use bytes::Bytes;
pub use futures::future::BoxFuture;
pub use inventory;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::client::ClientCore;
use crate::client::RouteSpec;
pub use crate::registry::Registered;
pub use crate::wire::Message as Reply;
use crate::wire::{ErrorKind, Message};
use crate::{Context, Error, Runtime, Service, codec};

/// Decodes the request, runs the handler, encodes its result.
pub fn unary<Req, Resp, E, F, Fut>(ctx: Context, payload: Bytes, handler: F) -> BoxFuture<'static, Message>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize,
    E: Serialize + Display,
    F: FnOnce(Context, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    Box::pin(async move {
        let request = match codec::decode::<Req>(&payload) {
            Ok(r) => r,
            Err(e) => {
                let text = format!(
                    "the request to {}/{}/{} does not decode as {}: {e}",
                    ctx.namespace(),
                    ctx.component(),
                    ctx.endpoint(),
                    std::any::type_name::<Req>()
                );
                return Message::error(ErrorKind::Decode, &text, Bytes::new());
            }
        };
        match handler(ctx, request).await {
            Ok(response) => match codec::encode(&response) {
                Ok(bytes) => Message::ok(bytes),
                Err(e) => Message::error(
                    ErrorKind::Internal,
                    &format!("could not encode the response: {e}"),
                    Bytes::new(),
                ),
            },
            Err(error) => match codec::encode(&error) {
                Ok(bytes) => Message::error(ErrorKind::Application, &error.to_string(), bytes),
                Err(e) => Message::error(
                    ErrorKind::Internal,
                    &format!("could not encode the error `{error}`: {e}"),
                    Bytes::new(),
                ),
            },
        }
    })
}

/// The reply to an endpoint number the component does not have.
pub fn unknown_endpoint(ctx: &Context) -> BoxFuture<'static, Message> {
    let text = format!("{}/{} has no endpoint {}", ctx.namespace(), ctx.component(), ctx.endpoint());
    Box::pin(std::future::ready(Message::error(ErrorKind::UnknownEndpoint, &text, Bytes::new())))
}

/// The typed client of `S`.
pub async fn client<S: Service>(rt: &Runtime) -> Result<S::Client, Error> {
    let desc = S::DESCRIPTOR;
    let specs: Vec<RouteSpec> = desc
        .endpoints
        .iter()
        .map(|ep| RouteSpec {
            namespace: desc.namespace,
            component: desc.name,
            endpoint: ep.name,
            is_static: desc.is_static,
        })
        .collect();
    Ok(S::client(ClientCore::new(rt, &specs).await?))
}

/// A type that can be an endpoint's request.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an endpoint request: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "request type of an `#[endpoint]`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait WireRequest {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WireRequest for T {}

/// A type that can be an endpoint's response.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an endpoint response: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "response type of an `#[endpoint]`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait WireResponse {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WireResponse for T {}

/// A type that can be an endpoint's application error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an endpoint error: it must be `Serialize + DeserializeOwned + Display + Send + 'static`",
    label = "error type of an `#[endpoint]`",
    note = "derive serde's traits and implement `Display` (for example with `thiserror::Error`)"
)]
pub trait WireError {}
impl<T: Serialize + DeserializeOwned + Display + Send + 'static> WireError for T {}

/// Compile-time check, spanned on the user's request type.
pub const fn assert_request<T: WireRequest>() {}
/// Compile-time check, spanned on the user's response type.
pub const fn assert_response<T: WireResponse>() {}
/// Compile-time check, spanned on the user's error type.
pub const fn assert_error<T: WireError>() {}
