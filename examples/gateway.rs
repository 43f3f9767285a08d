//! Serving without the macro: a gateway reads its endpoint names from its
//! configuration at run time and serves each from a handler, typed or raw.
//!
//! `cargo run --example gateway` (embedded), or with `ROTOR_NATS_URL` and
//! `ROTOR_ETCD_ENDPOINTS` set, on real servers.

use bytes::Bytes;
use rotor::prelude::*;
use rotor::wire::Message;
use rotor::{Handler, handler::Handlers};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Route {
    endpoint: String,
    reply: String,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("unknown item {0}")]
struct Unknown(u32);

// ANCHOR: serve
/// Serves `gateway/routes`: one raw endpoint per configured route, and a
/// typed `lookup` and streaming `range` beside them.
async fn serve(rt: &Runtime, routes: &[Route]) -> Result<ServeHandle<Handlers>, rotor::Error> {
    let component = rt.namespace("gateway")?.component("routes")?;
    let mut service = component.service().label("tier", "edge")?;
    for route in routes {
        let reply = Bytes::from(route.reply.clone());
        // Raw: bytes in, bytes out; `Err` is a failure reply.
        let handler = Handler::raw(move |_ctx: Context, body: Bytes| {
            let reply = reply.clone();
            async move {
                match body.is_empty() {
                    true => Ok(reply),
                    false => Err(Message::app_error("this route takes no body", b"null")),
                }
            }
        });
        service = service.endpoint(&route.endpoint, handler)?;
    }
    // Typed: decoded and encoded as an #[endpoint] method's would be.
    let lookup = Handler::unary(|_ctx: Context, id: u32| async move {
        match id {
            1..=9 => Ok(format!("item {id}")),
            _ => Err(Unknown(id)),
        }
    });
    let range = Handler::stream(|_ctx: Context, n: u32| async move {
        Ok::<_, Unknown>(futures::stream::iter((0..n).map(Ok)))
    });
    service.endpoint("lookup", lookup)?.endpoint("range", range)?.serve().await
}
// ANCHOR_END: serve

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::from_env().await?;
    // What a configuration file would hold.
    let routes: Vec<Route> = serde_json::from_str(
        r#"[{"endpoint": "health", "reply": "ok"}, {"endpoint": "version", "reply": "1.4.2"}]"#,
    )?;
    let served = serve(&rt, &routes).await?;

    // ANCHOR: call
    let routes_component = rt.namespace("gateway")?.component("routes")?;
    let version = routes_component.endpoint("version")?.client().await?;
    version.wait_for_instances().await?;
    let (reply, by) = version.call_raw("version", Bytes::new()).await?;
    println!("version: {} (from {})", String::from_utf8_lossy(&reply.payload), by.unwrap());

    let lookup = routes_component.endpoint("lookup")?.client().await?;
    lookup.wait_for_instances().await?;
    let item: String = lookup.unary::<_, _, Unknown>("lookup", &3u32).await?;
    let missing = lookup.unary::<_, String, Unknown>("lookup", &42u32).await.unwrap_err();
    println!("lookup: {item}; {}", missing.into_app().map(|e| e.to_string()).unwrap_or_default());

    let range = routes_component.endpoint("range")?.client().await?;
    range.wait_for_instances().await?;
    let items: Vec<u32> =
        range.stream::<_, u32, Unknown>("range", &4u32).await?.map(Result::unwrap).collect().await;
    println!("range: {items:?}");
    // ANCHOR_END: call
    assert_eq!((&reply.payload[..], item.as_str(), items.len()), (&b"1.4.2"[..], "item 3", 4));

    served.shutdown().await;
    rt.shutdown().await?;
    Ok(())
}
