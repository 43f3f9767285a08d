//! What the macro-generated code calls. Not a public API: it may change in
//! any release.
//!
//! The wire types reach the helpers through codecs made by
//! [`request_codec`], [`response_codec`] and [`error_codec`], whose calls the
//! macro spans on the user's types: a type that is not a serde type is then
//! reported once, on that type, with a message that says what to derive.

use std::fmt::Display;
use std::future::Future;

pub use std::sync::Arc;

pub use bytes::Bytes;
pub use futures::future::BoxFuture;
pub use inventory;
use serde::Serialize;
use serde::de::DeserializeOwned;
pub use serde_json;

pub use crate::client::ClientCore;
use crate::client::RouteSpec;
pub use crate::registry::Registered;
pub use crate::wire::Message as Reply;
use crate::wire::{ErrorKind, Message};
use crate::{CallError, Context, Error, Runtime, Service, codec};

type Encode<T> = fn(&T) -> Result<Bytes, serde_json::Error>;
type Decode<T> = fn(&[u8]) -> Result<T, serde_json::Error>;

/// How one wire type is encoded and decoded.
pub struct Codec<T> {
    encode: Encode<T>,
    decode: Decode<T>,
}

/// How an application error is encoded, decoded and described.
pub struct ErrorCodec<E> {
    codec: Codec<E>,
    describe: fn(&E) -> String,
}

/// The codec of a request type; the bound is the compile-time check.
pub fn request_codec<T: WireRequest>() -> Codec<T> {
    Codec { encode: codec::encode::<T>, decode: codec::decode::<T> }
}

/// The codec of a response type; the bound is the compile-time check.
pub fn response_codec<T: WireResponse>() -> Codec<T> {
    Codec { encode: codec::encode::<T>, decode: codec::decode::<T> }
}

/// The codec of an application error type; the bound is the compile-time check.
pub fn error_codec<E: WireError>() -> ErrorCodec<E> {
    ErrorCodec {
        codec: Codec { encode: codec::encode::<E>, decode: codec::decode::<E> },
        describe: E::to_string,
    }
}

/// Decodes the request, runs the handler, encodes its result.
pub fn unary<Req, Resp, E, F, Fut>(
    ctx: Context,
    payload: Bytes,
    codecs: (Codec<Req>, Codec<Resp>, ErrorCodec<E>),
    handler: F,
) -> BoxFuture<'static, Message>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Send + 'static,
    F: FnOnce(Context, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    let (request, response, error) = codecs;
    // Decoding runs in the request's own task, not the dispatcher's, and
    // under the same panic guard as the handler.
    Box::pin(async move {
        let request = match (request.decode)(&payload) {
            Ok(r) => r,
            Err(e) => return decode_failure::<Req>(&ctx, e),
        };
        match handler(ctx, request).await {
            Ok(value) => match (response.encode)(&value) {
                Ok(bytes) => Message::ok(bytes),
                Err(e) => internal(format!("could not encode the response: {e}")),
            },
            Err(app) => {
                let text = (error.describe)(&app);
                match (error.codec.encode)(&app) {
                    Ok(bytes) => Message::app_error(&text, &bytes),
                    Err(e) => internal(format!("could not encode the error `{text}`: {e}")),
                }
            }
        }
    })
}

fn internal(text: String) -> Message {
    Message::error(ErrorKind::Internal, &text)
}

/// A typed call from a generated client.
pub async fn call<Req, Resp, E>(
    core: &ClientCore,
    endpoint: usize,
    request: &Req,
    codecs: (Codec<Req>, Codec<Resp>, ErrorCodec<E>),
) -> Result<Resp, CallError<E>> {
    let (req, resp, err) = codecs;
    core.unary_with(endpoint, (req.encode)(request), resp.decode, err.codec.decode).await
}

/// What a streaming handler sends its stream (or its early error) into.
pub struct StreamSink<T, E> {
    ctx: Context,
    item: Codec<T>,
    error: ErrorCodec<E>,
}

impl<T, E> StreamSink<T, E> {
    /// Accepts the call and sends `stream` to the caller, item by item.
    pub async fn send<S>(self, stream: S) -> Message
    where
        S: futures::Stream<Item = Result<T, E>>,
    {
        let ErrorCodec { codec, describe } = self.error;
        crate::stream::serve_stream(&self.ctx, stream, self.item.encode, describe, codec.encode).await
    }

    /// Refuses the call with the handler's error, before any item.
    pub fn early_error(self, error: E) -> Message {
        let text = (self.error.describe)(&error);
        match (self.error.codec.encode)(&error) {
            Ok(bytes) => Message::app_error(&text, &bytes),
            Err(e) => internal(format!("could not encode the error `{text}`: {e}")),
        }
    }
}

/// Decodes the request and runs a streaming handler, which sends its items
/// itself through the sink.
pub fn streaming<Req, T, E, F, Fut>(
    ctx: Context,
    payload: Bytes,
    codecs: (Codec<Req>, Codec<T>, ErrorCodec<E>),
    handler: F,
) -> BoxFuture<'static, Message>
where
    Req: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(Context, Req, StreamSink<T, E>) -> Fut + Send + 'static,
    Fut: Future<Output = Message> + Send + 'static,
{
    let (request, item, error) = codecs;
    Box::pin(async move {
        let request = match (request.decode)(&payload) {
            Ok(r) => r,
            Err(e) => return decode_failure::<Req>(&ctx, e),
        };
        let sink = StreamSink { ctx: ctx.clone(), item, error };
        handler(ctx, request, sink).await
    })
}

fn decode_failure<Req>(ctx: &Context, e: serde_json::Error) -> Message {
    let text = format!(
        "the request to {}/{}/{} does not decode as {}: {e}",
        ctx.namespace(),
        ctx.component(),
        ctx.endpoint(),
        std::any::type_name::<Req>()
    );
    Message::error(ErrorKind::Decode, &text)
}

/// A streaming call from a generated client.
pub async fn call_stream<Req, T, E>(
    core: &ClientCore,
    endpoint: usize,
    request: &Req,
    codecs: (Codec<Req>, Codec<T>, ErrorCodec<E>),
) -> Result<crate::ResponseStream<T, E>, CallError<E>> {
    let (req, item, err) = codecs;
    core.stream_with(endpoint, (req.encode)(request), item.decode, err.codec.decode).await
}

/// A component's own statistics, for `$SRV.STATS`.
pub fn stats_value<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// The reply to an endpoint number the component does not have.
pub fn unknown_endpoint(ctx: &Context) -> BoxFuture<'static, Message> {
    let text = format!("{}/{} has no endpoint {}", ctx.namespace(), ctx.component(), ctx.endpoint());
    Box::pin(std::future::ready(Message::error(ErrorKind::UnknownEndpoint, &text)))
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
            idempotent: ep.idempotent,
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
pub trait WireRequest: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WireRequest for T {}

/// A type that can be an endpoint's response.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an endpoint response: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "response type of an `#[endpoint]`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait WireResponse: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WireResponse for T {}

/// A type that can be an endpoint's application error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an endpoint error: it must be `Serialize + DeserializeOwned + Display + Send + 'static`",
    label = "error type of an `#[endpoint]`",
    note = "derive serde's traits and implement `Display` (for example with `thiserror::Error`)"
)]
pub trait WireError: Serialize + DeserializeOwned + Display + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Display + Send + 'static> WireError for T {}
