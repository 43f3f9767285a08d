//! The floors beside Rotor's processes: what hand-written code pays for the
//! same work with etcd-client and async-nats alone, so that the scale
//! benchmark can tell what grows with N in Rotor from what grows in the
//! servers and their client libraries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::child::{CALL_TIMEOUT, Commands, Counts, ms};
use crate::probe::own_cpu;

/// The subject of raw instance `i`, laid out as Rotor's instance subjects
/// are (`{service}.{endpoint}-{id:x}`).
fn subject(i: usize) -> String {
    format!("bench_scale_raw.ping-{i:x}")
}

async fn nats() -> async_nats::Client {
    let url = std::env::var("ROTOR_NATS_URL").expect("ROTOR_NATS_URL is set");
    async_nats::ConnectOptions::new()
        .request_timeout(Some(CALL_TIMEOUT))
        .connect(url)
        .await
        .expect("nats-server is reachable")
}

/// Follows the cold start `follow` follows, with one etcd-client watch on
/// the endpoint's prefix whose values it decodes, counting the instances.
pub async fn follow(n: usize) {
    use rotor::discovery::etcd_client::{Client, EventType, WatchOptions};
    let endpoints = std::env::var("ROTOR_ETCD_ENDPOINTS").expect("ROTOR_ETCD_ENDPOINTS is set");
    let mut etcd = Client::connect(endpoints.split(',').collect::<Vec<_>>(), None).await.expect("etcd");
    let prefix = rotor::names::endpoint_key_prefix("bench.scale", "pinger", "ping");
    let mut stream = etcd.watch(prefix, Some(WatchOptions::new().with_prefix())).await.expect("a watch");
    // The first answer says the watch exists: from then on no write is missed.
    let created = stream.message().await.expect("the watch runs").expect("the watch runs");
    assert!(created.created(), "etcd's first watch answer confirms the watch");
    let mut commands = Commands::start();
    println!("watching");
    assert_eq!(commands.next().await.as_deref(), Some("start"));
    let (cpu, start) = (own_cpu(), Instant::now());
    println!("started");
    let mut seen = std::collections::HashMap::new();
    while seen.len() < n {
        let resp = stream.message().await.expect("the watch runs").expect("the watch runs");
        assert!(!resp.canceled(), "etcd cancelled the watch");
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => {
                    let record: serde_json::Value = serde_json::from_slice(kv.value()).expect("JSON");
                    seen.insert(kv.key().to_vec(), record);
                }
                EventType::Delete => {
                    seen.remove(kv.key());
                }
            }
        }
    }
    let (cpu, took) = (own_cpu() - cpu, start.elapsed());
    println!("seen ms={:.3} cpu_ms={:.3}", ms(took), ms(cpu));
    while commands.next().await.is_some() {}
}

/// `n` subscriptions on one connection, each with its task that answers
/// every request with its payload, until stdin closes.
pub async fn serve(n: usize) {
    let client = nats().await;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut requests = client.subscribe(subject(i)).await.expect("a subscription");
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, request.payload).await;
                }
            }
        }));
    }
    client.flush().await.expect("the subscriptions reach nats-server");
    let mut commands = Commands::start();
    println!("ready");
    while commands.next().await.is_some() {}
    for task in tasks {
        task.abort();
    }
}

/// Requests in flight to the subjects in turn, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    counts: Arc<Counts>,
    started: Instant,
}

impl Load {
    fn start(client: &async_nats::Client, subjects: &Arc<Vec<String>>, in_flight: usize) -> Load {
        let (stop, next) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let counts = Arc::new(Counts::default());
        let tasks = (0..in_flight)
            .map(|task| {
                let (client, subjects, stop, next) =
                    (client.clone(), subjects.clone(), stop.clone(), next.clone());
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut n = task as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let at = next.fetch_add(1, Ordering::Relaxed) % subjects.len();
                        let sent = n.to_string();
                        let error = match client.request(subjects[at].clone(), sent.clone().into()).await {
                            Ok(reply) if reply.payload == sent.as_bytes() => None,
                            Ok(reply) => Some(format!("{n} was answered with {:?}", reply.payload)),
                            Err(e) => Some(e.to_string()),
                        };
                        counts.count(error);
                        n += in_flight as u64;
                    }
                })
            })
            .collect();
        Load { stop, tasks, counts, started: Instant::now() }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task");
        }
        self.counts.print_errors();
        println!(
            "stopped calls={} failed={} secs={:.6}",
            self.counts.ok.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Requests to `n` subjects in turn: `load IN_FLIGHT` until `stop`, as the
/// round-robin load of `client`.
pub async fn client(n: usize) {
    let client = nats().await;
    let subjects: Arc<Vec<String>> = Arc::new((0..n).map(subject).collect());
    let mut commands = Commands::start();
    println!("ready");
    let mut load = None;
    while let Some(line) = commands.next().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["load", in_flight] => {
                load = Some(Load::start(&client, &subjects, in_flight.parse().expect("a number")));
            }
            ["stop"] => load.take().expect("a load to stop").stop().await,
            _ => panic!("client-raw: unknown command {line:?}"),
        }
    }
}
