//! `mmsim --seed 1 --size demo --port 8065`: serve the simulator; prints one ready line
//! `mmsim ready url=<base url> user=<username> token=<personal access token>`.
//!
//! Logs (tracing, `RUST_LOG`, default `info`) carry routes, ids and counts only — never message
//! text, tokens or passwords.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mmsim::{SimConfig, seed};

#[derive(Parser, Debug)]
#[command(
    name = "mmsim",
    about = "In-memory Mattermost server simulator (REST v4 + WebSocket)"
)]
struct Args {
    /// Seed of the generated organisation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Organisation size: demo | large.
    #[arg(long, default_value = "demo")]
    size: seed::Size,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8065)]
    port: u16,
    /// Other users act every N seconds (0 = off).
    #[arg(long, default_value_t = 0)]
    activity_secs: u64,
    /// Act like an older server without PKCE support.
    #[arg(long)]
    no_pkce: bool,
}

/// `RUST_LOG` (default `info`). At `trace`, `tungstenite` dumps every WebSocket frame payload
/// (message text) and handshake headers (tokens), so those targets are capped at `debug`:
/// the simulator never logs message text either.
fn log_filter() -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::filter::LevelFilter;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let hint = <tracing_subscriber::EnvFilter as tracing_subscriber::Layer<
        tracing_subscriber::Registry,
    >>::max_level_hint(&filter);
    if hint.is_none_or(|max| max >= LevelFilter::TRACE) {
        for target in ["tungstenite", "tokio_tungstenite"] {
            if let Ok(d) = format!("{target}=debug").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    filter
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let config = SimConfig {
        seed: args.seed,
        size: args.size,
        pkce: !args.no_pkce,
        ..SimConfig::default()
    };
    let running = mmsim::start(config, args.port)
        .await
        .with_context(|| format!("while binding 127.0.0.1:{}", args.port))?;
    let user = running
        .sim
        .with_state(|s| seed::demo_user(s))
        .context("while reading the seeded demo user")?;
    tracing::info!(addr = %running.addr, seed = args.seed, size = ?args.size, "mmsim started");
    println!(
        "mmsim ready url={} user={} token={}",
        running.url, user.username, user.token
    );
    let activity = (args.activity_secs > 0).then(|| {
        mmsim::driver::Driver::new(&running.sim)
            .spawn_activity(Duration::from_secs(args.activity_secs), args.seed)
    });
    tokio::signal::ctrl_c()
        .await
        .context("while waiting for Ctrl-C")?;
    if let Some(task) = activity {
        task.abort();
    }
    tracing::info!("mmsim stopping");
    Ok(())
}
