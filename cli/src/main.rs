//! `rotor`: the command-line tool of Rotor. It reads what etcd and NATS know
//! about Rotor components, from outside any of them: which instances are
//! registered and whether they answer (`ls`), what each serves (`describe`),
//! what they have done (`stats`), who joins and leaves (`watch`), and it
//! calls any endpoint with JSON (`call`).
//!
//! It is configured like every Rotor process, by the `ROTOR_*` variables,
//! with flags that override them. Every command prints a table for people
//! or, with `--json`, JSON for scripts. Exit codes: 0 on success, 1 when a
//! server, a call or a component fails, 2 for a usage error.

mod call;
mod connect;
mod describe;
mod ls;
mod micro;
mod output;
mod stats;
mod target;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rotor",
    version,
    about = "Inspect and call Rotor components on NATS and etcd",
    after_help = "Configured by ROTOR_NATS_URL, ROTOR_ETCD_ENDPOINTS and the other ROTOR_* variables, \
                  as every Rotor process is; the flags override them."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// NATS server(s), comma-separated; overrides ROTOR_NATS_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// etcd endpoints, comma-separated; overrides ROTOR_ETCD_ENDPOINTS.
    #[arg(long, global = true, value_name = "URLS")]
    pub etcd_endpoints: Option<String>,
    /// Bound on every wait: connecting, replies, calls ("2", "0.5", "500ms", "3s").
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration, value_name = "TIME")]
    pub timeout: Duration,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List namespaces, components, endpoints and live instances, with their health.
    Ls(ls::LsArgs),
    /// Show what every instance of a component serves ($SRV.INFO).
    Describe(describe::DescribeArgs),
    /// Call an endpoint with a JSON request.
    Call(call::CallArgs),
    /// Show request counts, errors and timings ($SRV.STATS).
    Stats(stats::StatsArgs),
    /// Print instances of a component as they join (+) and leave (-).
    Watch(watch::WatchArgs),
}

/// A failed command: what to tell the user, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
    /// Already printed (a call's error in JSON, say): only exit.
    pub printed: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1, printed: false }
    }
}

impl From<rotor_runtime::Error> for Failure {
    fn from(e: rotor_runtime::Error) -> Self {
        Failure::new(e.to_string())
    }
}

pub type Outcome = Result<(), Failure>;

/// Seconds as a number, or a number with `ms` or `s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("{text:?} is not a positive time such as 2, 0.5, 500ms or 3s")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread is plenty for a tool that mostly waits on the network.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Ls(args) => ls::run(&global, args).await,
            Command::Describe(args) => describe::run(&global, args).await,
            Command::Call(args) => call::run(&global, args).await,
            Command::Stats(args) => stats::run(&global, args).await,
            Command::Watch(args) => watch::run(&global, args).await,
        }
    });
    // The runtime's background tasks (watches, keep-alives) are not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.printed {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_or_carry_a_unit() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
