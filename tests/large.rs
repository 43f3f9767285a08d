//! Requests and replies larger than one NATS message (1 MiB by default):
//! 16 MiB each way over the NATS plane, in chunks, and over the direct
//! plane, in one frame; and the endpoint's limit, refused one byte over it
//! with a 413 that names the limit, before the request's chunks are sent.

mod support;

use std::time::Duration;

use rotor::config::{DirectConfig, Plane};
use rotor::{ErrorKind, TransportError};
use serde::{Deserialize, Serialize};
use support::Servers;

const SIXTEEN_MIB: usize = 16 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("never")]
pub struct Never;

pub struct Blob;

#[rotor::component(namespace = "test.large")]
impl Blob {
    /// The request's length and a digest of it, so that the whole of it
    /// is seen to arrive in order.
    #[endpoint]
    async fn measure(&self, text: String) -> Result<(usize, u64), Never> {
        Ok((text.len(), digest(&text)))
    }

    /// `measure`, with a limit of its own.
    #[endpoint(max_request = 65536)]
    async fn measure_small(&self, text: String) -> Result<(usize, u64), Never> {
        Ok((text.len(), digest(&text)))
    }

    /// A reply of `len` bytes of text.
    #[endpoint]
    async fn make(&self, len: usize) -> Result<String, Never> {
        Ok(pattern(len))
    }
}

/// Text whose every position differs from its neighbours', so that a chunk
/// out of place changes the digest.
fn pattern(len: usize) -> String {
    (0..len).map(|i| char::from(b'a' + (i % 23) as u8 + (i / 4096 % 3) as u8)).collect()
}

fn digest(text: &str) -> u64 {
    text.bytes().enumerate().fold(0u64, |h, (i, b)| h.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64))
}

fn loopback() -> DirectConfig {
    DirectConfig { bind: "127.0.0.1:0".parse().unwrap(), advertise: None }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn sixteen_mib_each_way(client: &BlobClient) {
    let text = pattern(SIXTEEN_MIB);
    assert_eq!(client.measure(text.clone()).await.unwrap(), (SIXTEEN_MIB, digest(&text)));
    let made = client.make(SIXTEEN_MIB).await.unwrap();
    assert!(made == text, "the 16 MiB reply arrived whole and in order");
    assert_eq!(client.measure("small".into()).await.unwrap().0, 5, "and small calls after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_each_way_over_nats_travel_in_chunks_and_arrive_whole() {
    let servers = Servers::start();
    let server_rt = servers.runtime().await;
    let _served = server_rt.serve(Blob).await.unwrap();
    let rt = servers.builder().plane(Plane::Nats).build().await.unwrap();
    let client = Blob::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let limit = rt.transport().max_payload();
    assert!(limit < SIXTEEN_MIB, "NATS's max_payload is {limit}: the test needs it under 16 MiB");
    let before = servers.nats.in_msgs();
    sixteen_mib_each_way(&client).await;
    let messages = servers.nats.in_msgs() - before;
    assert!(
        messages >= 2 * 16,
        "16 MiB each way crossed nats-server as {messages} messages of at most {limit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_each_way_over_the_direct_plane_go_in_one_frame() {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let _served = server_rt.serve(Blob).await.unwrap();
    let rt = servers.runtime().await;
    let client = Blob::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let before = servers.nats.in_msgs();
    sixteen_mib_each_way(&client).await;
    let messages = servers.nats.in_msgs() - before;
    assert!(messages < 10, "over the direct plane, not NATS: {messages} messages crossed nats-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_one_byte_over_the_endpoint_s_limit_is_refused_with_413_naming_it_on_both_planes() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).max_request(LIMIT).build().await.unwrap();
    let _served = server_rt.serve(Blob).await.unwrap();
    for plane in [Plane::Nats, Plane::Direct] {
        let rt = servers.builder().plane(plane).build().await.unwrap();
        let client = Blob::client(&rt).await.unwrap();
        within("the instance", client.core().wait_for_instances()).await.unwrap();
        // JSON adds the two quotes: LIMIT - 1 characters encode to LIMIT + 1 bytes.
        let before = servers.nats.in_msgs();
        let e = client.measure(pattern(LIMIT - 1)).await.unwrap_err();
        match e.transport() {
            Some(TransportError::Remote { kind: ErrorKind::Oversize, code: 413, message, .. }) => {
                assert!(message.contains(&format!("limit of {LIMIT} bytes")), "{plane:?}: {message}");
            }
            other => panic!("{plane:?}: expected a 413, got {other:?}"),
        }
        if plane == Plane::Nats {
            let messages = servers.nats.in_msgs() - before;
            assert!(messages <= 4, "refused from its head, before its chunks: {messages} messages");
        }
        let at_limit = pattern(LIMIT - 2);
        assert_eq!(
            client.measure(at_limit.clone()).await.unwrap(),
            (LIMIT - 2, digest(&at_limit)),
            "{plane:?}"
        );
    }
}

#[tokio::test]
async fn a_malformed_head_or_a_chunk_past_the_announced_size_is_refused_and_the_instance_keeps_serving() {
    use async_nats::HeaderMap;
    use bytes::Bytes;

    let servers = Servers::start();
    let server_rt = servers.builder().max_request(1024 * 1024).build().await.unwrap();
    let _served = server_rt.serve(Blob).await.unwrap();
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let head = |size: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("Rotor-Upload", size);
        headers
    };
    let code = |reply: &async_nats::Message| {
        let headers = reply.headers.as_ref().expect("a refusal carries headers");
        headers.get("Nats-Service-Error-Code").map(|c| c.to_string())
    };
    let subject = "test_large_blob.measure";
    let reply = nats.request_with_headers(subject, head("lots"), Bytes::new()).await.unwrap();
    assert_eq!(code(&reply).as_deref(), Some("400"), "a size that is not a number");
    let reply = nats.request_with_headers(subject, head("99999999999"), Bytes::new()).await.unwrap();
    assert_eq!(code(&reply).as_deref(), Some("413"), "over the limit, from the head alone");

    let reply = nats.request_with_headers(subject, head("10"), Bytes::new()).await.unwrap();
    let to = reply.headers.as_ref().and_then(|h| h.get("Rotor-Upload-To")).expect("an inbox for the chunks");
    let reply = nats.request(to.to_string(), Bytes::from_static(b"more than ten bytes")).await.unwrap();
    assert_eq!(code(&reply).as_deref(), Some("400"), "a chunk past the announced size");

    let rt = servers.runtime().await;
    let client = Blob::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    assert_eq!(client.measure("still".into()).await.unwrap().0, 5);
}

#[tokio::test]
async fn an_endpoint_s_own_max_request_replaces_the_runtime_s_on_both_planes() {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let _served = server_rt.serve(Blob).await.unwrap();
    for plane in [Plane::Nats, Plane::Direct] {
        let rt = servers.builder().plane(plane).build().await.unwrap();
        let client = Blob::client(&rt).await.unwrap();
        within("the instance", client.core().wait_for_instances()).await.unwrap();
        // 65,535 characters encode to 65,537 bytes of JSON: one over.
        let e = client.measure_small(pattern(65_535)).await.unwrap_err();
        match e.transport() {
            Some(TransportError::Remote { kind: ErrorKind::Oversize, code: 413, message, .. }) => {
                assert!(message.contains("limit of 65536 bytes"), "{plane:?}: {message}");
            }
            other => panic!("{plane:?}: expected a 413, got {other:?}"),
        }
        assert_eq!(client.measure_small(pattern(65_534)).await.unwrap().0, 65_534, "{plane:?}: at the limit");
        assert_eq!(
            client.measure(pattern(65_535)).await.unwrap().0,
            65_535,
            "{plane:?}: the runtime's limit"
        );
    }
}
