//! `rotor stats`: the `$SRV.STATS` of every instance and endpoint.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use rotor_runtime::stats::{EndpointStats, ServiceStats};
use serde_json::json;

use crate::connect::{self, Need};
use crate::describe::{expected_instances, nothing_answered};
use crate::output::{self, Progress, Style, Table, print_json, print_text};
use crate::{Global, Outcome, parse_duration, target};

#[derive(Args)]
pub struct StatsArgs {
    /// The component, as NAMESPACE/COMPONENT; without it, every service on NATS.
    component: Option<String>,
    /// Refresh every TIME ("1", "0.5", "500ms") until interrupted.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    watch: Option<Duration>,
    /// Stop after N refreshes (with --watch).
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

/// One Rotor endpoint's figures: Rotor lists each endpoint under two micro
/// endpoints, its queue-group subject and its instance's own, and both
/// count requests. A person asks about the endpoint, so they are summed.
struct Figures<'a> {
    name: &'a str,
    requests: u64,
    errors: u64,
    nanos: u64,
    last_error: &'a str,
    rotor: Option<&'a serde_json::Value>,
}

impl Figures<'_> {
    fn average(&self) -> u64 {
        self.nanos.checked_div(self.requests).unwrap_or(0)
    }
}

/// The endpoint a micro endpoint belongs to: `hello-2a` is `hello`'s
/// instance subject when `hello` is listed too.
fn owner<'a>(ep: &'a EndpointStats, all: &'a [EndpointStats]) -> &'a str {
    if let Some((base, hex)) = ep.name.rsplit_once('-') {
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && all.iter().any(|other| other.name == base) {
            return base;
        }
    }
    &ep.name
}

fn figures(service: &ServiceStats) -> Vec<Figures<'_>> {
    let mut grouped: Vec<Figures<'_>> = Vec::new();
    for ep in &service.endpoints {
        let name = owner(ep, &service.endpoints);
        let at = match grouped.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                let empty = Figures { name, requests: 0, errors: 0, nanos: 0, last_error: "", rotor: None };
                grouped.push(empty);
                grouped.len() - 1
            }
        };
        let f = &mut grouped[at];
        f.requests += ep.num_requests;
        f.errors += ep.num_errors;
        f.nanos += ep.processing_time;
        if f.last_error.is_empty() {
            f.last_error = &ep.last_error;
        }
        // Both subjects carry the same Rotor figures: they are the endpoint's.
        f.rotor = f.rotor.or(ep.data.as_ref().filter(|d| !d.is_null()));
    }
    grouped
}

/// The instance a reply names: its Rotor id, or NATS's service id for a
/// service that is not Rotor's.
fn instance(service: &ServiceStats) -> String {
    service.instance_id().map_or_else(|| service.id.clone(), |id| id.to_string())
}

pub async fn run(global: &Global, args: StatsArgs) -> Outcome {
    let name = args.component.as_deref().map(target::component).transpose()?;
    let conn = connect::connect(global, Need::Required, Need::IfConfigured).await?;
    let clear_screen = args.watch.is_some() && !global.json && std::io::stdout().is_terminal();
    let mut refreshes = 0u64;
    let interrupted = rotor_runtime::shutdown_signal();
    tokio::pin!(interrupted);
    loop {
        let expected = match &name {
            Some(name) => expected_instances(&conn, name).await?,
            None => 0,
        };
        let progress = Progress::start("waiting for $SRV.STATS replies");
        let subject = crate::micro::subject("STATS", name.as_ref().map(|n| n.service()).as_deref());
        let enough = |got: &[ServiceStats]| expected > 0 && got.len() >= expected;
        let mut services = crate::micro::collect(conn.nats_client(), subject, global.timeout, enough).await?;
        drop(progress);
        services.sort_by_key(|s| (s.name.clone(), instance(s)));
        refreshes += 1;

        if services.is_empty() && args.watch.is_none() {
            return match &name {
                Some(name) => Err(nothing_answered(name, "$SRV.STATS", global, expected)),
                None => {
                    eprintln!("no service answered $SRV.STATS within {:?}", global.timeout);
                    Ok(())
                }
            };
        }
        if global.json {
            print_json(&as_json(&services));
        } else {
            let mut text = String::new();
            if clear_screen {
                text.push_str("\x1b[2J\x1b[H");
            } else if refreshes > 1 {
                text.push('\n');
            }
            let table = as_table(&services);
            if table.is_empty() {
                text.push_str("no instance answered\n");
            } else {
                text.push_str(&table.render(Style::for_stdout(false)));
            }
            print_text(&text);
        }

        let Some(every) = args.watch else { return Ok(()) };
        if args.count.is_some_and(|n| refreshes >= n) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut interrupted => return Ok(()),
        }
    }
}

fn as_table(services: &[ServiceStats]) -> Table {
    let headers = ["SERVICE", "INSTANCE", "ENDPOINT", "REQUESTS", "ERRORS", "AVERAGE", "LAST ERROR"];
    let mut table = Table::new(&headers);
    for service in services {
        let id = instance(service);
        for f in figures(service) {
            table.row(vec![
                service.name.as_str().into(),
                id.as_str().into(),
                f.name.into(),
                f.requests.to_string().into(),
                f.errors.to_string().into(),
                output::nanos(f.average()).into(),
                f.last_error.into(),
            ]);
        }
    }
    table
}

fn as_json(services: &[ServiceStats]) -> serde_json::Value {
    let services: Vec<_> = services
        .iter()
        .map(|s| {
            let endpoints: Vec<_> = figures(s)
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name,
                        "requests": f.requests,
                        "errors": f.errors,
                        "processing_time_ns": f.nanos,
                        "average_processing_time_ns": f.average(),
                        "last_error": f.last_error,
                        "rotor": f.rotor,
                    })
                })
                .collect();
            json!({
                "service": s.name,
                "id": s.id,
                "instance": s.instance_id().map(|id| id.to_string()),
                "version": s.version,
                "started": s.started,
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({ "services": services })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, requests: u64, errors: u64, nanos: u64, last_error: &str) -> EndpointStats {
        EndpointStats {
            name: name.into(),
            num_requests: requests,
            num_errors: errors,
            processing_time: nanos,
            last_error: last_error.into(),
            ..EndpointStats::default()
        }
    }

    #[test]
    fn an_endpoints_two_subjects_are_summed_into_one_row() {
        let service = ServiceStats {
            endpoints: vec![
                ep("hello", 2, 0, 200, ""),
                ep("hello-2a", 2, 1, 600, "422:a name is required"),
                ep("ping", 1, 0, 10, ""),
                ep("get-1", 1, 0, 10, ""),
            ],
            ..ServiceStats::default()
        };
        let f = figures(&service);
        let names: Vec<&str> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["hello", "ping", "get-1"], "get-1 has no `get` beside it");
        assert_eq!((f[0].requests, f[0].errors, f[0].average()), (4, 1, 200));
        assert_eq!(f[0].last_error, "422:a name is required");
    }
}
