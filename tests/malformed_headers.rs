//! A message that nats-server relays but async-nats cannot parse (a broken
//! header block, a reply subject that is not UTF-8) costs that message alone:
//! the receiving connection stays up, correct calls keep being answered, and
//! the drop is logged at warn. The patched async-nats in patches/async-nats
//! (see its ROTOR-PATCH.md) is what makes this hold.
//!
//! Only nats-server runs: the instances find each other through one
//! in-memory discovery shared by the runtimes of this process, each runtime
//! on its own NATS connection.

/// Not in `support`: the other crates that build the harness lack tracing-subscriber.
#[path = "support/log.rs"]
mod log;
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::Log;
use rotor::discovery::MemoryDiscovery;
use rotor::prelude::*;
use serde::{Deserialize, Serialize};
use support::Nats;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

const NAMESPACE: &str = "test.malformed";
const COMPONENT: &str = "echo";
const ENDPOINT: &str = "echo";
/// Calls kept in flight throughout the attack.
const IN_FLIGHT: usize = 32;
/// How long the attack lasts, and the interval of its rounds: each round
/// sends every kind of malformed message once to every subject.
const ATTACK: Duration = Duration::from_secs(10);
const ROUND: Duration = Duration::from_millis(100);
/// A correct call that takes this long has failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds every other wait: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

struct Echo;

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum EchoError {
    #[error("never")]
    Never,
}

#[rotor::component(namespace = "test.malformed", name = "echo")]
impl Echo {
    /// Idempotent, as endpoints are by default.
    #[endpoint]
    async fn echo(&self, n: u64) -> Result<u64, EchoError> {
        Ok(n)
    }
}

/// One kind of malformed message: its header block, its reply subject, and
/// what the warn line says was wrong with it.
struct Kind {
    name: &'static str,
    header: &'static [u8],
    reply: &'static [u8],
    error: &'static str,
}

const KINDS: [Kind; 6] = [
    Kind {
        name: "a header value that is not UTF-8",
        header: b"NATS/1.0\r\nRotor-Test: \xff\xfe\r\n\r\n",
        reply: b"_INBOX.attacker.1",
        error: "header isn't valid utf-8",
    },
    Kind {
        name: "a header line without `:`",
        header: b"NATS/1.0\r\nno colon here\r\n\r\n",
        reply: b"_INBOX.attacker.2",
        error: "header line has no `:`",
    },
    Kind {
        name: "a header name that is not ASCII",
        header: "NATS/1.0\r\nN\u{e4}me: v\r\n\r\n".as_bytes(),
        reply: b"_INBOX.attacker.3",
        error: "invalid header name",
    },
    Kind {
        name: "a status that is not a number",
        header: b"NATS/1.0 abc\r\n\r\n",
        reply: b"_INBOX.attacker.4",
        error: "could not parse status parameter",
    },
    Kind {
        name: "a version line other than NATS/1.0",
        header: b"NATS/2.0\r\n\r\n",
        reply: b"_INBOX.attacker.5",
        error: "header version line does not begin with `NATS/1.0`",
    },
    // Not a header block: the same path's control line, which nats-server
    // relays with any bytes in the reply subject.
    Kind {
        name: "a reply subject that is not UTF-8",
        header: b"NATS/1.0\r\n\r\n",
        reply: b"_INBOX.attacker.\xff",
        error: "subject or reply subject isn't valid utf-8",
    },
];

/// The warn lines about dropped messages.
fn drops(log: &Log) -> Vec<String> {
    log.warnings("dropping a malformed message")
}

/// A runtime on its own NATS connection, kept so that the test can tell
/// whether the connection was ever lost.
async fn runtime(nats: &Nats, discovery: &MemoryDiscovery) -> (Runtime, async_nats::Client) {
    let client = async_nats::ConnectOptions::new().name("rotor").connect(nats.url()).await.expect("connect");
    let rt = Runtime::builder()
        .transport(Arc::new(rotor::transport::Nats::from_client(client.clone())))
        .discovery(Arc::new(discovery.clone()))
        .request_timeout(CALL_TIMEOUT)
        .build()
        .await
        .expect("a runtime");
    (rt, client)
}

/// A plain TCP connection speaking the NATS text protocol, as anyone allowed
/// to publish could.
struct Attacker {
    stream: BufReader<tokio::net::TcpStream>,
}

impl Attacker {
    async fn connect(nats: &Nats) -> Attacker {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", nats.port)).await.expect("connect");
        let mut attacker = Attacker { stream: BufReader::new(stream) };
        let info = attacker.line().await;
        assert!(info.starts_with("INFO "), "nats-server greets with INFO: {info:?}");
        attacker
            .stream
            .write_all(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
                  \"no_responders\":true,\"protocol\":1}\r\n",
            )
            .await
            .unwrap();
        attacker.ping().await;
        attacker
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.stream.read_line(&mut line)).await;
        read.expect("nats-server answers").expect("read from nats-server");
        line
    }

    /// PING, then every line up to PONG: nats-server has taken everything
    /// sent before, and refused none of it.
    async fn ping(&mut self) {
        self.stream.write_all(b"PING\r\n").await.unwrap();
        loop {
            let line = self.line().await;
            assert!(!line.starts_with("-ERR"), "nats-server refused what was sent: {line:?}");
            if line.starts_with("PONG") {
                return;
            }
        }
    }

    async fn hpub(&mut self, subject: &str, kind: &Kind) {
        let payload = b"1";
        let mut message = format!("HPUB {subject} ").into_bytes();
        message.extend_from_slice(kind.reply);
        message.extend_from_slice(
            format!(" {} {}\r\n", kind.header.len(), kind.header.len() + payload.len()).as_bytes(),
        );
        message.extend_from_slice(kind.header);
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        self.stream.write_all(&message).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_at_ten_a_second_to_every_subject_cost_no_correct_call() {
    let log = Log::capture();
    let nats = Nats::start();
    let discovery = MemoryDiscovery::new();

    let mut servers = Vec::new();
    for _ in 0..3 {
        let (rt, connection) = runtime(&nats, &discovery).await;
        let handle = rt.serve(Echo).await.expect("serve");
        servers.push((rt, connection, handle));
    }
    let (client_rt, client_connection) = runtime(&nats, &discovery).await;
    let client = Echo::client(&client_rt).await.expect("a client");
    assert_eq!(client.echo(7).await.expect("a first call"), 7);

    // Every subject the instances listen on for the endpoint: the queue
    // group's and each instance's own.
    let service = rotor::names::service_name(NAMESPACE, COMPONENT);
    let mut subjects = vec![rotor::names::endpoint_subject(&service, ENDPOINT)];
    for (_, _, handle) in &servers {
        subjects.push(rotor::names::instance_subject(&service, ENDPOINT, handle.instance_id().0));
    }

    // 32 correct calls in flight until the attack is over.
    let (over, attack_over) = watch::channel(false);
    let callers: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|caller| {
            let (client, attack_over) = (client.clone(), attack_over.clone());
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0u64, Vec::new());
                let mut n = caller << 32;
                while !*attack_over.borrow() {
                    n += 1;
                    match client.echo(n).await {
                        Ok(answer) if answer == n => answered += 1,
                        Ok(answer) => failed.push(format!("asked {n}, answered {answer}")),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (answered, failed)
            })
        })
        .collect();

    let mut attacker = Attacker::connect(&nats).await;
    let mut sent = 0usize;
    let mut rounds = tokio::time::interval(ROUND);
    let start = Instant::now();
    for _ in 0..(ATTACK.as_millis() / ROUND.as_millis()) {
        rounds.tick().await;
        for subject in &subjects {
            for kind in &KINDS {
                attacker.hpub(subject, kind).await;
                sent += 1;
            }
        }
    }
    attacker.ping().await;
    let attack_took = start.elapsed();
    over.send_replace(true);

    let (mut answered, mut failed) = (0u64, Vec::new());
    for caller in callers {
        let (a, f) = tokio::time::timeout(WAIT, caller).await.expect("callers finish").unwrap();
        answered += a;
        failed.extend(f);
    }
    let connects: Vec<u64> = servers
        .iter()
        .map(|(_, connection, _)| connection.statistics().connects.load(Ordering::Relaxed))
        .collect();
    let client_connects = client_connection.statistics().connects.load(Ordering::Relaxed);
    eprintln!(
        "sent {sent} malformed messages to {} subjects in {attack_took:?}; correct calls: {answered} \
         answered, {} failed; connects of the servers' connections: {connects:?}, the client's: \
         {client_connects}; warn lines so far: {}",
        subjects.len(),
        failed.len(),
        drops(&log).len()
    );

    assert!(failed.is_empty(), "{} correct calls failed, first: {:?}", failed.len(), &failed[..1]);
    assert!(answered > 0, "the callers made calls");
    assert_eq!(connects, [1, 1, 1], "a server's NATS connection was lost and made again");
    assert_eq!(client_connects, 1, "the client's NATS connection was lost and made again");
    for (_, connection, _) in &servers {
        assert_eq!(connection.connection_state(), async_nats::connection::State::Connected);
    }

    // Each malformed message reached one instance, which logged one warn.
    let mut lines = log.lines();
    let all_logged = tokio::time::timeout(WAIT, lines.wait_for(|_| drops(&log).len() >= sent)).await;
    let drops = drops(&log);
    assert!(all_logged.is_ok(), "{} of {sent} dropped messages were logged", drops.len());
    assert_eq!(drops.len(), sent, "one warn per dropped message");
    for subject in &subjects {
        for kind in &KINDS {
            let named = format!("subject=\"{subject}\"");
            assert!(
                drops.iter().any(|l| l.contains(&named) && l.contains(kind.error)),
                "no warn names {subject} and says {:?} ({})",
                kind.error,
                kind.name
            );
        }
    }
    assert!(drops.iter().any(|l| l.contains("reply=Some(\"_INBOX.attacker.1\")")), "the reply is named");
    for kind in &KINDS {
        eprintln!("{}:\n  {}", kind.name, drops.iter().find(|l| l.contains(kind.error)).unwrap());
    }

    for (rt, _, handle) in servers {
        handle.shutdown().await;
        rt.shutdown().await.unwrap();
    }
}
