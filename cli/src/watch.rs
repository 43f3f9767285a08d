//! `rotor watch`: instances of a component joining and leaving, as etcd
//! reports them.

use std::collections::BTreeSet;

use clap::Args;
use rotor_runtime::discovery::{Discovery, InstanceList};
use serde_json::json;

use crate::connect::{self, Need, bounded};
use crate::output::{Paint, Style, print_json, print_text};
use crate::{Failure, Global, Outcome, target};

#[derive(Args)]
pub struct WatchArgs {
    /// The component, as NAMESPACE/COMPONENT.
    component: String,
    /// Stop after N events (those present at the start count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

/// The instances in a list. An instance is there from its first endpoint's
/// registration to its last one's removal: a person watches processes come
/// and go, not each endpoint key.
fn instances(list: &InstanceList) -> BTreeSet<String> {
    list.iter().map(|r| r.instance_id.to_string()).collect()
}

pub async fn run(global: &Global, args: WatchArgs) -> Outcome {
    let name = target::component(&args.component)?;
    let conn = connect::connect(global, Need::Unused, Need::Required).await?;
    let etcd = conn.etcd.as_ref().expect("connected to etcd: the command asked for it");
    let mut changes =
        bounded(global.timeout, "etcd to watch the instances", etcd.watch(name.key_prefix())).await?;
    let style = Style::for_stdout(global.json);
    let mut present = BTreeSet::new();
    let mut events = 0u64;
    let interrupted = rotor_runtime::shutdown_signal();
    tokio::pin!(interrupted);
    loop {
        let now = instances(&changes.borrow_and_update());
        let joined = now.difference(&present).map(|id| (true, id));
        let left = present.difference(&now).map(|id| (false, id));
        for (joins, id) in left.chain(joined) {
            if global.json {
                let event = if joins { "join" } else { "leave" };
                let line = json!({ "event": event, "instance": id, "namespace": name.namespace, "component": name.component });
                print_json(&line);
            } else {
                let sign = if joins { style.paint(Paint::Green, "+") } else { style.paint(Paint::Red, "-") };
                print_text(&format!("{sign} {id}  {name}\n"));
            }
            events += 1;
            if args.count.is_some_and(|n| events >= n) {
                return Ok(());
            }
        }
        present = now;
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(Failure::new("the etcd watch stopped"));
                }
            }
            () = &mut interrupted => return Ok(()),
        }
    }
}
