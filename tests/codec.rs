//! A component declared with `codec = "msgpack"`: its generated client,
//! a plain NATS caller and a client from run-time names all speak
//! MessagePack to it; its description and records say so; a JSON payload
//! gets a decode error, and the server keeps serving.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rotor::codec::Format;
use rotor::prelude::*;
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub values: Vec<f32>,
    pub by: f32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refused {
    #[error("nothing to scale")]
    Empty,
}

pub struct Vectors;

#[rotor::component(namespace = "test.codec", codec = "msgpack")]
impl Vectors {
    #[endpoint]
    async fn scale(&self, req: Scale) -> Result<Vec<f32>, Refused> {
        if req.values.is_empty() {
            return Err(Refused::Empty);
        }
        Ok(req.values.iter().map(|v| v * req.by).collect())
    }

    #[endpoint]
    async fn count(
        &self,
        up_to: u32,
    ) -> Result<impl Stream<Item = Result<u32, Refused>> + Send + 'static, Refused> {
        Ok(futures::stream::iter((1..=up_to).map(Ok)))
    }
}

fn request() -> Scale {
    Scale { values: vec![1.0, 2.5], by: 2.0 }
}

#[tokio::test]
async fn a_message_pack_component_is_called_by_its_client_and_by_plain_nats_and_refuses_json() {
    let servers = support::Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Vectors).await.unwrap();
    let id = server.instance_id();
    let client = Vectors::client(&rt).await.unwrap();
    tokio::time::timeout(WAIT, client.core().wait_for_instances()).await.unwrap().unwrap();

    assert_eq!(client.scale(request()).await.unwrap(), [2.0, 5.0]);
    let err = client.scale(Scale { values: vec![], by: 1.0 }).await.unwrap_err();
    assert_eq!(err.into_app().unwrap(), Refused::Empty, "the typed error crosses in MessagePack too");
    let items: Vec<u32> = client.count(3).await.unwrap().map(Result::unwrap).collect().await;
    assert_eq!(items, [1, 2, 3]);
    // Its core, called by endpoint name, speaks the component's codec too.
    let by_name: Vec<f32> = client.core().unary::<_, _, Refused>("scale", &request()).await.unwrap();
    assert_eq!(by_name, [2.0, 5.0]);

    // On the wire: MessagePack, both ways.
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let payload = Bytes::from(rmp_serde::to_vec_named(&request()).unwrap());
    let reply = nats.request("test_codec_vectors.scale", payload).await.unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&reply.payload).is_err(), "not JSON");
    assert_eq!(rmp_serde::from_slice::<Vec<f32>>(&reply.payload).unwrap(), [2.0, 5.0]);

    // JSON is refused, clearly, and nothing else is lost.
    let json = Bytes::from(serde_json::to_vec(&request()).unwrap());
    let reply = nats.request("test_codec_vectors.scale", json).await.unwrap();
    let headers = reply.headers.expect("an error reply");
    assert_eq!(headers.get("Rotor-Error").unwrap().as_str(), "decode");
    let text = headers.get("Nats-Service-Error").unwrap().as_str().to_string();
    assert!(text.contains("not MessagePack") && text.contains("looks like JSON"), "{text}");
    assert_eq!(client.scale(request()).await.unwrap(), [2.0, 5.0]);

    // Declared where callers look.
    let described = client.core().published().await.unwrap();
    assert_eq!(described[0].1.codec, "msgpack");
    let info = nats.request("$SRV.INFO.test_codec_vectors", Bytes::new()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    let description: serde_json::Value =
        serde_json::from_str(info["metadata"]["rotor.descriptor"].as_str().unwrap()).unwrap();
    assert_eq!(description["codec"], "msgpack");
    let mut etcd = servers.etcd.client().await;
    let record = etcd.get(format!("instances/test.codec/vectors/scale:{id:x}"), None).await.unwrap();
    let record: serde_json::Value = serde_json::from_slice(record.kvs()[0].value()).unwrap();
    assert_eq!(record["codec"], "msgpack");
}

#[tokio::test]
async fn a_client_from_run_time_names_speaks_the_codec_of_a_linked_component_or_the_one_it_is_given() {
    let rt = Runtime::embedded().await.unwrap();
    let _server = rt.serve(Vectors).await.unwrap();
    let endpoint =
        rt.namespace("test.codec").unwrap().component("vectors").unwrap().endpoint("scale").unwrap();
    let linked = endpoint.client().await.unwrap();
    let answer: Vec<f32> = linked.unary::<_, _, Refused>("scale", &request()).await.unwrap();
    assert_eq!(answer, [2.0, 5.0]);

    let json = linked.with_codec(Format::Json);
    let err = json.unary::<_, Vec<f32>, Refused>("scale", &request()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not MessagePack") && text.contains("looks like JSON"), "{text}");
    let again = json.with_codec(Format::MessagePack);
    assert_eq!(again.unary::<_, Vec<f32>, Refused>("scale", &request()).await.unwrap(), [2.0, 5.0]);
}

mod support;
