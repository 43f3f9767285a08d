//! `rotor ls`: what etcd lists, and whether each instance answers.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use rotor_runtime::discovery::InstanceRecord;
use serde_json::json;

use crate::connect::{self, Need};
use crate::micro::{self, Ping};
use crate::output::{Cell, Paint, Progress, Style, Table, print_json, print_text};
use crate::{Global, Outcome, target};

#[derive(Args)]
pub struct LsArgs {
    /// Only this namespace and the namespaces under it (`llm` takes in `llm.prod`).
    namespace: Option<String>,
}

/// One instance of one component, as etcd lists it.
#[derive(Default)]
struct Instance {
    endpoints: BTreeSet<String>,
    /// The ids it may answer `$SRV.PING` with: its lease id, and the id in
    /// its subjects. They differ after a lost lease was replaced, because an
    /// instance keeps the subjects (and micro metadata) of its first lease.
    answers_as: BTreeSet<String>,
    up: bool,
}

type Components = BTreeMap<(String, String), BTreeMap<String, Instance>>;

fn group(records: Vec<InstanceRecord>) -> Components {
    let mut components = Components::new();
    for r in records {
        let id = r.instance_id.to_string();
        let service = rotor_names::service_name(&r.namespace, &r.component);
        let first =
            r.transport.subject().strip_prefix(&format!("{service}.{}-", r.endpoint)).map(str::to_string);
        let instance =
            components.entry((r.namespace, r.component)).or_default().entry(id.clone()).or_default();
        instance.endpoints.insert(r.endpoint);
        instance.answers_as.insert(id);
        instance.answers_as.extend(first);
    }
    components
}

pub async fn run(global: &Global, args: LsArgs) -> Outcome {
    let namespace = args.namespace.as_deref().map(target::namespace).transpose()?;
    let conn = connect::connect(global, Need::Required, Need::Required).await?;
    let records = match &namespace {
        // Two prefixes: the namespace itself, and those under it. One
        // prefix `instances/llm` would take in `llm2` too.
        Some(ns) => {
            let mut records = conn.list(format!("instances/{ns}/")).await?.unwrap_or_default();
            records.extend(conn.list(format!("instances/{ns}.")).await?.unwrap_or_default());
            records
        }
        None => conn.list("instances/".to_string()).await?.unwrap_or_default(),
    };
    let mut components = group(records);

    let progress = Progress::start("waiting for $SRV.PING replies");
    let pings = components.iter().map(|((ns, c), instances)| {
        let client = conn.nats_client();
        let subject = micro::subject("PING", Some(&rotor_names::service_name(ns, c)));
        async move {
            let every_instance_answered = |pings: &[Ping]| {
                instances
                    .values()
                    .all(|i| pings.iter().any(|p| p.instance().is_some_and(|a| i.answers_as.contains(a))))
            };
            micro::collect(client, subject, global.timeout, every_instance_answered).await
        }
    });
    let pings = futures::future::join_all(pings).await;
    drop(progress);
    for (instances, pings) in components.values_mut().zip(pings) {
        let pings = pings?;
        for instance in instances.values_mut() {
            instance.up = pings.iter().any(|p| p.instance().is_some_and(|a| instance.answers_as.contains(a)));
        }
    }

    if global.json {
        print_json(&as_json(&components));
    } else if components.is_empty() {
        match &namespace {
            Some(ns) => eprintln!("no instances registered in namespace {ns}"),
            None => eprintln!("no instances registered"),
        }
    } else {
        print_text(&as_table(&components).render(Style::for_stdout(false)));
    }
    Ok(())
}

fn health(up: bool) -> &'static str {
    if up { "up" } else { "no answer" }
}

fn as_table(components: &Components) -> Table {
    let mut table = Table::new(&["NAMESPACE", "COMPONENT", "INSTANCE", "HEALTH", "ENDPOINTS"]);
    for ((ns, c), instances) in components {
        for (id, instance) in instances {
            let paint = if instance.up { Paint::Green } else { Paint::Red };
            let endpoints: Vec<&str> = instance.endpoints.iter().map(String::as_str).collect();
            table.row(vec![
                ns.as_str().into(),
                c.as_str().into(),
                id.as_str().into(),
                Cell::painted(health(instance.up), paint),
                endpoints.join(", ").into(),
            ]);
        }
    }
    table
}

fn as_json(components: &Components) -> serde_json::Value {
    let mut namespaces: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for ((ns, c), instances) in components {
        let endpoints: BTreeSet<&String> = instances.values().flat_map(|i| &i.endpoints).collect();
        let instances: Vec<_> = instances
            .iter()
            .map(|(id, i)| json!({ "instance": id, "endpoints": i.endpoints, "health": health(i.up) }))
            .collect();
        namespaces.entry(ns).or_default().push(json!({
            "name": c,
            "service": rotor_names::service_name(ns, c),
            "endpoints": endpoints,
            "instances": instances,
        }));
    }
    let namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|(name, components)| json!({ "name": name, "components": components }))
        .collect();
    json!({ "namespaces": namespaces })
}
