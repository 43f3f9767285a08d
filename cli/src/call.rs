//! `rotor call`: one request to an endpoint, with JSON in and out (carried
//! in the codec the endpoint declares); a stream is printed item by item as
//! it arrives.

use std::io::{IsTerminal, Read};

use clap::Args;
use futures::StreamExt;
use rotor_runtime::codec::Format;
use rotor_runtime::{CallError, ClientCore, ErrorKind, InstanceId, TransportError};
use serde_json::{Value, json};

use crate::connect::{self, Need};
use crate::output::{print_json, print_text};
use crate::{Failure, Global, Outcome, target};

#[derive(Args)]
pub struct CallArgs {
    /// The endpoint, as NAMESPACE/COMPONENT/ENDPOINT.
    endpoint: String,
    /// The request as JSON; `-` or nothing reads it from stdin (empty: null).
    request: Option<String>,
    /// Send the call to this instance (its id in hex, as `rotor ls` shows it).
    #[arg(long, value_name = "HEX")]
    instance: Option<String>,
    /// Open a stream at once, rather than trying a plain call first.
    #[arg(long)]
    stream: bool,
}

/// What a plain call to a streaming endpoint is answered with.
const STREAMS: &str = "this endpoint streams";

fn request(arg: Option<&str>) -> Result<Value, Failure> {
    let usage = |message: String| Failure { code: 2, ..Failure::new(message) };
    let text = match arg {
        Some(text) if text != "-" => text.to_string(),
        _ => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading the request from stdin; end it with Ctrl-D");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
            text
        }
    };
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| usage(format!("the request is not JSON: {e}")))
}

fn instance(hex: &str) -> Result<InstanceId, Failure> {
    InstanceId::from_hex(hex.trim_start_matches("0x")).ok_or_else(|| Failure {
        code: 2,
        ..Failure::new(format!("--instance {hex:?} is not a hexadecimal id"))
    })
}

pub async fn run(global: &Global, args: CallArgs) -> Outcome {
    let (name, endpoint) = target::endpoint(&args.endpoint)?;
    let req = request(args.request.as_deref())?;
    let target = args.instance.as_deref().map(instance).transpose()?;
    let conn = connect::connect(global, Need::Required, Need::IfConfigured).await?;
    if target.is_some() && conn.etcd.is_none() {
        return Err(Failure::new(
            "--instance needs discovery to find the instance: set ROTOR_ETCD_ENDPOINTS or pass --etcd-endpoints",
        ));
    }
    let rt = conn.runtime().await?;
    let mut client =
        rt.namespace(&name.namespace)?.component(&name.component)?.endpoint(&endpoint)?.client().await?;
    if let Some(id) = target {
        client = client.direct(id);
    }
    client = client.with_codec(codec(&conn, &name, &endpoint, target).await?);
    let outcome = call(global, &client, &endpoint, &req, args.stream).await;
    // A stream dropped on Ctrl-C has its cancel handed to a task of the
    // runtime: let that task run, then push what it sent out of the NATS
    // client's buffer before the process exits. Otherwise the server only
    // learns of it when the keep-alives stop.
    tokio::task::yield_now().await;
    let _ = tokio::time::timeout(global.timeout, conn.nats_client().flush()).await;
    // Nothing was served, but a lease taken all the same goes at once.
    let _ = tokio::time::timeout(global.timeout, rt.shutdown()).await;
    outcome
}

/// The codec the endpoint's instances (or the one `target`) declare in
/// their records (JSON without etcd, or for a record that names none): the
/// request is written as JSON on the command line and carried in that codec.
async fn codec(
    conn: &connect::Connections,
    name: &target::ComponentName,
    endpoint: &str,
    target: Option<InstanceId>,
) -> Result<Format, Failure> {
    let records = conn.list(name.key_prefix()).await?.unwrap_or_default();
    let declared = records
        .iter()
        .filter(|r| r.endpoint == endpoint && target.is_none_or(|id| r.instance_id == id))
        .find_map(|r| r.codec.as_deref());
    match declared {
        None => Ok(Format::Json),
        Some(codec) => Format::from_name(codec).ok_or_else(|| {
            Failure::new(format!(
                "{name}/{endpoint} declares the codec {codec:?}, which this rotor does not speak; use a rotor of the release that serves it"
            ))
        }),
    }
}

async fn call(global: &Global, client: &ClientCore, endpoint: &str, req: &Value, stream: bool) -> Outcome {
    if !stream {
        match client.unary::<Value, Value, Value>(endpoint, req).await {
            Ok(response) => {
                print_response(global, &response);
                return Ok(());
            }
            Err(CallError::Transport(TransportError::BadRequest { detail, .. }))
                if detail.contains(STREAMS) => {}
            Err(e) => return Err(failed(global, e)),
        }
    }
    let mut items =
        client.stream::<Value, Value, Value>(endpoint, req).await.map_err(|e| failed(global, e))?;
    // One listener for the whole stream, not one per item.
    let interrupted = rotor_runtime::shutdown_signal();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            item = items.next() => match item {
                Some(Ok(item)) => print_json(&item),
                Some(Err(e)) => return Err(failed(global, e)),
                None => return Ok(()),
            },
            // Dropping the stream on the way out tells the server to stop.
            () = &mut interrupted => return Err(Failure { code: 130, printed: true, ..Failure::new("") }),
        }
    }
}

fn print_response(global: &Global, response: &Value) {
    if global.json {
        print_json(response);
    } else {
        let pretty = serde_json::to_string_pretty(response).unwrap_or_else(|_| response.to_string());
        print_text(&format!("{pretty}\n"));
    }
}

/// Prints a failed call: in JSON on stdout with `--json`, for a script to
/// read; otherwise on stderr.
fn failed(global: &Global, e: CallError<Value>) -> Failure {
    let (document, text) = match e {
        CallError::App { error, instance } => {
            let code = ErrorKind::Application.code();
            let document = json!({ "error": {
                "kind": ErrorKind::Application.as_str(), "code": code,
                "instance": instance.to_string(), "body": error,
            }});
            (document, format!("error (code {code}) from instance {instance}: {error}"))
        }
        CallError::Transport(e) => {
            let instance = e.instance().map(|id| id.to_string());
            let document = json!({ "error": {
                "kind": e.kind(), "code": e.code(), "instance": instance, "message": e.to_string(),
            }});
            let hint = match e.kind() {
                "timeout" | "deadline" => "\nhint: allow more time with --timeout",
                "no_instances" => "\nhint: `rotor ls` lists what is registered",
                _ => "",
            };
            (document, format!("error (code {}, {}): {e}{hint}", e.code(), e.kind()))
        }
    };
    if global.json {
        print_json(&document);
    } else {
        eprintln!("{text}");
    }
    Failure { printed: true, ..Failure::new(text) }
}
