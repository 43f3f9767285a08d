//! A lease lost while the process lives, on real etcd: how soon the
//! instance is back under a new one.

mod support;

use std::time::{Duration, Instant};

use rotor::prelude::*;
use support::Servers;

struct Beacon;

#[rotor::component(namespace = "test.lease")]
impl Beacon {
    #[endpoint]
    async fn id(&self, ctx: Context) -> Result<InstanceId, String> {
        Ok(ctx.instance_id())
    }
}

#[tokio::test]
async fn a_wiped_etcd_is_noticed_at_the_next_keep_alive_not_after_a_whole_ttl() {
    let mut servers = Servers::start();
    let ttl = Duration::from_secs(12);
    let rt = servers.builder().lease_ttl(ttl).build().await.unwrap();
    let server = rt.serve(Beacon).await.unwrap();
    let old = server.instance_id();
    let mut lease = rt.lease_changes();

    servers.etcd.restart_wiped();
    let wiped = Instant::now();
    let new = tokio::time::timeout(ttl, lease.wait_for(|s| s.live && s.id != old))
        .await
        .expect("a new lease within the TTL")
        .unwrap()
        .id;
    let took = wiped.elapsed();
    // Keep-alives go every third of the TTL (4 s here): the lease is
    // replaced at the first one etcd refuses, well before the TTL ends.
    assert!(took < ttl / 2, "the instance was back under a new lease {took:?} after etcd lost its data");
    let client_rt = servers.runtime().await;
    let client = Beacon::client(&client_rt).await.unwrap();
    client.core().wait_for_instances_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.id().await.unwrap(), new);
}
