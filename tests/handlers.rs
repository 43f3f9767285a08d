//! Serving without the macro: endpoints whose names are read at run time,
//! served from handlers, against real etcd and nats-server processes, and
//! in the embedded mode.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rotor::prelude::*;
use rotor::wire::{ErrorKind, Message};
use rotor::{Handler, Mode};
use serde::{Deserialize, Serialize};
use support::Servers;
use tokio::sync::Notify;

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum TextError {
    #[error("empty text")]
    Empty,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Shout {
    text: String,
    by: InstanceId,
}

/// The names a gateway would read from its configuration.
const CONFIG: &str = "namespace=test.handlers component=text upper=shout count=count raw=echo";

struct Names {
    namespace: String,
    component: String,
    upper: String,
    count: String,
    raw: String,
}

fn names() -> Names {
    let get =
        |key: &str| CONFIG.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap().to_string();
    Names {
        namespace: get("namespace"),
        component: get("component"),
        upper: get("upper"),
        count: get("count"),
        raw: get("raw"),
    }
}

/// The gateway's three endpoints, from handlers: typed unary, typed stream,
/// raw.
fn service(rt: &Runtime, names: &Names) -> rotor::handler::ServiceBuilder {
    let shout = Handler::unary(|ctx: Context, text: String| async move {
        if text.is_empty() {
            return Err(TextError::Empty);
        }
        Ok(Shout { text: text.to_uppercase(), by: ctx.instance_id() })
    });
    let count = Handler::stream(|_ctx: Context, n: u32| async move {
        if n == 0 {
            return Err(TextError::Empty);
        }
        Ok(futures::stream::iter((1..=n).map(Ok::<u32, TextError>)))
    });
    let echo = Handler::raw(|_ctx: Context, payload: Bytes| async move {
        match &payload[..] {
            b"fail" => Err(Message::app_error("asked to fail", b"\"fail\"")),
            _ => Ok(payload),
        }
    });
    let component = rt.namespace(&names.namespace).unwrap().component(&names.component).unwrap();
    component
        .service()
        .endpoint(&names.upper, shout)
        .unwrap()
        .endpoint(&names.count, count)
        .unwrap()
        .endpoint(&names.raw, echo)
        .unwrap()
        .label("team", "edge")
        .unwrap()
        .version("2.1.0")
}

/// Calls every endpoint through run-time-named clients: typed as a
/// generated client would, and raw.
async fn call_every_endpoint(rt: &Runtime, names: &Names, served_by: InstanceId) {
    let component = rt.namespace(&names.namespace).unwrap().component(&names.component).unwrap();
    let upper = component.endpoint(&names.upper).unwrap().client().await.unwrap();
    upper.wait_for_instances_within(Duration::from_secs(20)).await.unwrap();
    let shout: Shout = upper.unary::<_, _, TextError>(&names.upper, "hi").await.unwrap();
    assert_eq!(shout, Shout { text: "HI".into(), by: served_by });
    let err = upper.unary::<_, Shout, TextError>(&names.upper, "").await.unwrap_err();
    assert_eq!(err.into_app().unwrap(), TextError::Empty);

    let count = component.endpoint(&names.count).unwrap().client().await.unwrap();
    count.wait_for_instances_within(Duration::from_secs(20)).await.unwrap();
    let items: Vec<u32> = count
        .stream::<_, u32, TextError>(&names.count, &3u32)
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(items, [1, 2, 3]);
    let err = count.stream::<_, u32, TextError>(&names.count, &0u32).await.expect_err("an early error");
    assert_eq!(err.into_app().unwrap(), TextError::Empty);

    let raw = component.endpoint(&names.raw).unwrap().client().await.unwrap();
    raw.wait_for_instances_within(Duration::from_secs(20)).await.unwrap();
    let (reply, by) = raw.call_raw(&names.raw, Bytes::from_static(b"\x01\x02bytes")).await.unwrap();
    assert_eq!((&reply.payload[..], by), (&b"\x01\x02bytes"[..], Some(served_by)));
    let (reply, _) = raw.call_raw(&names.raw, Bytes::from_static(b"fail")).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Application));
    // A typed endpoint called raw gets its JSON.
    let (reply, _) = upper.call_raw(&names.upper, Bytes::from_static(b"\"ok\"")).await.unwrap();
    let shout: Shout = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(shout.text, "OK");
}

#[tokio::test]
async fn endpoints_named_at_run_time_are_served_from_handlers_registered_and_called_typed_and_raw() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    assert_eq!(rt.mode(), Mode::Distributed);
    let names = names();
    let server = service(&rt, &names).serve().await.unwrap();
    let id = server.instance_id();
    let served: Vec<&str> = server.service().endpoints().collect();
    assert_eq!(served, ["shout", "count", "echo"]);

    // Registered in etcd under the run-time names, like a #[component].
    let component = rt.namespace(&names.namespace).unwrap().component(&names.component).unwrap();
    let mut records = component.list_instances().await.unwrap();
    records.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    let endpoints: Vec<&str> = records.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["count", "echo", "shout"]);
    assert!(records.iter().all(|r| r.instance_id == id));

    call_every_endpoint(&rt, &names, id).await;

    // A NATS micro service like any other.
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let info = nats.request("$SRV.INFO.test_handlers_text", Bytes::new()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["version"], "2.1.0");
    assert_eq!(info["metadata"]["rotor.instance"], id.to_string());
    let shout =
        info["endpoints"].as_array().unwrap().iter().find(|e| e["subject"] == "test_handlers_text.shout");
    let shout = shout.expect("the shout endpoint in $SRV.INFO");
    assert_eq!(shout["metadata"]["rotor.request"], std::any::type_name::<String>());
    assert!(shout["metadata"]["rotor.response"].as_str().unwrap().ends_with("Shout"), "{shout}");
    let stats = component.scrape_stats(Duration::from_secs(1)).await.unwrap();
    let own = format!("test_handlers_text.shout-{id:x}");
    let shout = stats.services[0].endpoints.iter().find(|e| e.subject == own).unwrap();
    // Two typed calls and one raw one; one of them an application error.
    assert_eq!((shout.num_requests, shout.num_errors), (3, 1));

    // Metrics, with the run-time label.
    let text = rt.metrics().render();
    let series = text
        .lines()
        .find(|l| l.starts_with("rotor_requests_total{") && l.contains("endpoint=\"echo\""))
        .unwrap_or_else(|| panic!("no request count of echo in {text}"));
    assert!(series.contains("team=\"edge\"") && series.ends_with(" 2"), "{series}");

    server.shutdown().await;
    until_empty(&component).await;
}

async fn until_empty(component: &rotor::names::Component) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !component.list_instances().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the registrations outlived shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn handlers_serve_the_same_way_in_the_embedded_mode() {
    let rt = Runtime::embedded().await.unwrap();
    let names = names();
    let server = service(&rt, &names).serve().await.unwrap();
    call_every_endpoint(&rt, &names, server.instance_id()).await;
}

#[tokio::test]
async fn a_handler_keeps_the_callers_deadline_and_shutdown_drains_it() {
    let rt = Runtime::embedded().await.unwrap();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let hold = {
        let (entered, release) = (entered.clone(), release.clone());
        Handler::unary(move |ctx: Context, forever: bool| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                match forever {
                    true => std::future::pending::<()>().await,
                    false => release.notified().await,
                }
                Ok::<_, TextError>(ctx.deadline().is_some())
            }
        })
    };
    let endpoint =
        rt.namespace("test.handlers").unwrap().component("hold").unwrap().endpoint("hold").unwrap();
    let server = endpoint.serve(hold).await.unwrap();
    let client = endpoint.client().await.unwrap();

    let impatient = client.with_timeout(Duration::from_millis(200));
    let err = impatient.unary::<_, bool, TextError>("hold", &true).await.unwrap_err();
    assert!(
        matches!(err.transport(), Some(TransportError::DeadlineExceeded { instance: Some(_), .. })),
        "the handler past its deadline is cancelled and says so: {err:?}"
    );

    let call = tokio::spawn(async move { client.unary::<_, bool, TextError>("hold", &false).await });
    entered.notified().await;
    let shutdown = tokio::spawn(server.shutdown());
    release.notify_one();
    assert!(shutdown.await.unwrap().drained);
    assert!(call.await.unwrap().unwrap(), "the drained call ran to its end, with a deadline");
}

#[tokio::test]
async fn an_endpoint_given_twice_or_a_bad_run_time_name_is_refused_naming_it() {
    let rt = Runtime::embedded().await.unwrap();
    let component = rt.namespace("test.handlers").unwrap().component("dup").unwrap();
    let echo = || Handler::raw(|_ctx: Context, payload: Bytes| async move { Ok(payload) });
    let err = component.service().endpoint("a", echo()).unwrap().endpoint("a", echo()).unwrap_err();
    assert!(matches!(err, Error::DuplicateEndpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("test.handlers/dup") && err.to_string().contains("`a`"), "{err}");
    let err = component.service().endpoint("Bad Name", echo()).unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");

    // One runtime serves a component once, whichever way it is served.
    let _first = component.service().endpoint("a", echo()).unwrap().serve().await.unwrap();
    let err = component.service().endpoint("b", echo()).unwrap().serve().await.unwrap_err();
    assert!(matches!(err, Error::AlreadyServing { .. }), "{err:?}");
}
