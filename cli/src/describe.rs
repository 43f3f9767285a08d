//! `rotor describe`: the `$SRV.INFO` of every instance of a component.

use clap::Args;
use serde_json::json;

use crate::connect::{self, Need};
use crate::micro::{self, EndpointInfo, Info};
use crate::output::{Paint, Progress, Style, Table, print_json, print_text};
use crate::{Failure, Global, Outcome, target};

#[derive(Args)]
pub struct DescribeArgs {
    /// The component, as NAMESPACE/COMPONENT.
    component: String,
}

/// The endpoints of one reply, grouped by Rotor endpoint: each listens on
/// the queue-group subject and on a subject of its instance alone.
struct Endpoint<'a> {
    name: &'a str,
    request: &'a str,
    response: &'a str,
    subjects: Vec<&'a EndpointInfo>,
}

fn endpoints(info: &Info) -> Vec<Endpoint<'_>> {
    let mut grouped: Vec<Endpoint<'_>> = Vec::new();
    for ep in &info.endpoints {
        let meta = |key: &str| ep.metadata.get(key).map(String::as_str).unwrap_or("");
        // A service that is not Rotor's has no endpoint metadata; its
        // micro endpoint name is all there is.
        let name = ep.metadata.get("rotor.endpoint").unwrap_or(&ep.name);
        match grouped.iter_mut().find(|g| g.name == name) {
            Some(group) => group.subjects.push(ep),
            None => grouped.push(Endpoint {
                name,
                request: meta("rotor.request"),
                response: meta("rotor.response"),
                subjects: vec![ep],
            }),
        }
    }
    grouped
}

pub async fn run(global: &Global, args: DescribeArgs) -> Outcome {
    let name = target::component(&args.component)?;
    let conn = connect::connect(global, Need::Required, Need::IfConfigured).await?;
    let expected = expected_instances(&conn, &name).await?;
    let progress = Progress::start("waiting for $SRV.INFO replies");
    let subject = micro::subject("INFO", Some(&name.service()));
    let mut infos: Vec<Info> =
        micro::collect(conn.nats_client(), subject, global.timeout, |got: &[Info]| {
            expected > 0 && got.len() >= expected
        })
        .await?;
    drop(progress);
    if infos.is_empty() {
        return Err(nothing_answered(&name, "$SRV.INFO", global, expected));
    }
    infos.sort_by(|a, b| (a.instance(), &a.id).cmp(&(b.instance(), &b.id)));

    if global.json {
        print_json(&as_json(&name, &infos));
        return Ok(());
    }
    let style = Style::for_stdout(false);
    let mut text = String::new();
    for (n, info) in infos.iter().enumerate() {
        if n > 0 {
            text.push('\n');
        }
        let mut heading = format!("{name}  instance {}", info.instance().unwrap_or("-"));
        heading.push_str(&format!("  version {}", or_dash(&info.version)));
        if let Some(wire) = info.metadata.get("rotor.wire") {
            heading.push_str(&format!("  wire {wire}"));
        }
        text.push_str(&style.paint(Paint::Bold, &heading));
        text.push_str(&style.paint(Paint::Dim, &format!("  (service {}, id {})", info.name, info.id)));
        text.push('\n');
        let mut table = Table::new(&["ENDPOINT", "SUBJECT", "QUEUE GROUP", "REQUEST", "RESPONSE"]);
        for ep in endpoints(info) {
            for (i, s) in ep.subjects.iter().enumerate() {
                // The endpoint's own columns once, on its first subject.
                let own = |v: &str| if i == 0 { v.to_string() } else { String::new() };
                let cells = [
                    own(ep.name),
                    s.subject.clone(),
                    s.queue_group.clone(),
                    own(ep.request),
                    own(ep.response),
                ];
                table.row(cells.into_iter().map(Into::into).collect());
            }
        }
        text.push_str(&table.render(style));
    }
    print_text(&text);
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// How many instances etcd lists for the component (0 without etcd), so
/// that collecting replies can stop when all have answered.
pub async fn expected_instances(
    conn: &connect::Connections,
    name: &target::ComponentName,
) -> Result<usize, Failure> {
    let records = conn.list(name.key_prefix()).await?.unwrap_or_default();
    let mut ids: Vec<_> = records.iter().map(|r| r.instance_id).collect();
    ids.sort();
    ids.dedup();
    Ok(ids.len())
}

pub fn nothing_answered(
    name: &target::ComponentName,
    verb: &str,
    global: &Global,
    expected: usize,
) -> Failure {
    let listed = match expected {
        0 => String::new(),
        n => format!(" (etcd lists {n} instance{})", if n == 1 { "" } else { "s" }),
    };
    Failure::new(format!(
        "no instance of {name} (service {}) answered {verb} within {:?}{listed}; is it running on this NATS?",
        name.service(),
        global.timeout
    ))
}

fn as_json(name: &target::ComponentName, infos: &[Info]) -> serde_json::Value {
    let instances: Vec<_> = infos
        .iter()
        .map(|info| {
            let endpoints: Vec<_> = endpoints(info)
                .iter()
                .map(|ep| {
                    let subjects: Vec<_> = ep
                        .subjects
                        .iter()
                        .map(|s| json!({ "subject": s.subject, "queue_group": s.queue_group }))
                        .collect();
                    json!({ "name": ep.name, "request": ep.request, "response": ep.response, "subjects": subjects })
                })
                .collect();
            json!({
                "instance": info.instance(),
                "id": info.id,
                "version": info.version,
                "wire": info.metadata.get("rotor.wire"),
                "description": info.description,
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({ "component": name.to_string(), "service": name.service(), "instances": instances })
}
