//! `chronon kv`: a small command-line client for the key-value application, over the native
//! protocol (sessions, routing and retries come from `chronon_net::client`).

use std::time::Duration;

use anyhow::anyhow;
use chronon_engine::app::EffectId;
use chronon_engine::app::kv::{KvCommand, KvReply};
use chronon_engine::ids::ClusterId;
use chronon_net::Topology;
use chronon_net::client::{Client, ClientConfig};

#[derive(Debug, clap::Args)]
pub struct KvArgs {
    #[command(subcommand)]
    pub command: KvCommandArg,
}

/// Where the cluster is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Every host's base address, in replica order (as given to `chronon start`).
    #[arg(long, value_name = "A0,A1,...", value_delimiter = ',', required = true)]
    pub addresses: Vec<String>,
    /// The cluster id.
    #[arg(long, value_name = "ID")]
    pub cluster: u64,
    /// Shards per host.
    #[arg(long, value_name = "S", default_value_t = 2)]
    pub shards: u16,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Debug, clap::Subcommand)]
pub enum KvCommandArg {
    /// Print the value of KEY (or "(nil)").
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set KEY to VALUE.
    Set {
        key: String,
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete KEY; prints 1 if it existed, else 0.
    Del {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Record an HTTP request as a side effect; prints its effect id. The primary makes it,
    /// with `Idempotency-Key` and `Chronon-Fence` headers, until it succeeds or is
    /// dead-lettered.
    Webhook {
        url: String,
        body: String,
        #[arg(long, default_value = "POST")]
        method: String,
        /// An extra header, `NAME: VALUE`; repeat for more.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Record a message to a node's sink as a side effect; prints its effect id.
    Emit {
        sink: String,
        payload: String,
        #[command(flatten)]
        target: Target,
    },
    /// Retry a dead-lettered effect (by the id `webhook` or `emit` printed).
    RetryEffect {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(args: &KvArgs) -> anyhow::Result<()> {
    let target = match &args.command {
        KvCommandArg::Get { target, .. }
        | KvCommandArg::Set { target, .. }
        | KvCommandArg::Del { target, .. }
        | KvCommandArg::Webhook { target, .. }
        | KvCommandArg::Emit { target, .. }
        | KvCommandArg::RetryEffect { target, .. } => target,
    };
    let hosts = target
        .addresses
        .iter()
        .map(|a| crate::start::resolve(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let topology = Topology::new(ClusterId(target.cluster), target.shards, hosts)?;
    let mut config = ClientConfig::new(topology);
    config.call_timeout = Duration::from_secs(target.timeout);
    let mut client = Client::new(config)?;
    match &args.command {
        KvCommandArg::Get { key, .. } => match client.get(key.as_bytes())? {
            Some(value) => say!("{}", String::from_utf8_lossy(&value)),
            None => say!("(nil)"),
        },
        KvCommandArg::Set { key, value, .. } => {
            client.put(key.as_bytes(), value.as_bytes())?;
            say!("OK");
        }
        KvCommandArg::Del { key, .. } => {
            let existed = client.delete(key.as_bytes())?;
            say!("{}", u8::from(existed));
        }
        KvCommandArg::Webhook {
            url,
            body,
            method,
            headers,
            ..
        } => {
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| anyhow!("--header {h:?}: expected NAME: VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let command = KvCommand::Webhook {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: body.clone().into_bytes(),
            };
            print_effect(client.execute(&command)?)?;
        }
        KvCommandArg::Emit { sink, payload, .. } => {
            let command = KvCommand::Emit {
                sink: sink.clone(),
                payload: payload.clone().into_bytes(),
            };
            print_effect(client.execute(&command)?)?;
        }
        KvCommandArg::RetryEffect { id, .. } => {
            let id: EffectId = id.parse().map_err(|e: String| anyhow!(e))?;
            client.retry_effect(id)?;
            say!("OK");
        }
    }
    Ok(())
}

fn print_effect(reply: KvReply) -> anyhow::Result<()> {
    match reply {
        KvReply::Effect(id) => {
            say!("{id}");
            Ok(())
        }
        other => Err(anyhow!(
            "the cluster answered {other:?} to an effect command"
        )),
    }
}
