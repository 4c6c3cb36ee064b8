//! The `threaddesk` binary: `serve` (default), `demo`, `purge`, `config example`, `healthcheck`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use threaddesk::config::{self, Config};
use threaddesk::privacy::logging;
use threaddesk::{app, store, web};

#[derive(Parser)]
#[command(
    name = "threaddesk",
    version,
    about = "One keyboard-driven inbox for Mattermost"
)]
struct Cli {
    /// Configuration file (TOML); also THREADDESK_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ThreadDesk (the default).
    Serve {
        /// Mattermost base URL (THREADDESK_MATTERMOST_URL).
        #[arg(long)]
        mattermost_url: Option<String>,
        /// ThreadDesk's own external URL (THREADDESK_PUBLIC_URL).
        #[arg(long)]
        public_url: Option<String>,
        /// Listen address, e.g. 127.0.0.1:8080 (THREADDESK_LISTEN).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (THREADDESK_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Days the cache keeps messages, 7 to 14 (THREADDESK_RETENTION_DAYS).
        #[arg(long)]
        retention_days: Option<u32>,
    },
    /// Start the Mattermost simulator with a seeded organisation and ThreadDesk against it.
    Demo {
        /// ThreadDesk's port (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seed of the simulated organisation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds between simulated colleagues' messages (0 = no live activity).
        #[arg(long, default_value_t = 6)]
        activity_every: u64,
    },
    /// Clear the whole cache (messages, items, tokens, sessions). Done/snooze marks live in
    /// Mattermost and come back at the next sign-in.
    Purge {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Exit 0 when the ThreadDesk at URL answers /readyz (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("threaddesk: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("threaddesk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(file: Option<&PathBuf>) -> Result<Config> {
    Ok(Config::load(file.map(PathBuf::as_path), std::env::vars())?)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command.unwrap_or(Command::Serve {
        mattermost_url: None,
        public_url: None,
        listen: None,
        data_dir: None,
        retention_days: None,
    }) {
        Command::Serve {
            mattermost_url,
            public_url,
            listen,
            data_dir,
            retention_days,
        } => {
            let mut cfg = load_config(cli.config.as_ref())?;
            if let Some(u) = mattermost_url {
                cfg.set_mattermost_url(&u)?;
            }
            if let Some(u) = public_url {
                cfg.set_public_url(&u)?;
            }
            if let Some(a) = listen {
                cfg.set_listen(a);
            }
            if let Some(d) = data_dir {
                cfg.set_data_dir(d);
            }
            if let Some(days) = retention_days {
                cfg.set_retention_days(days)?;
            }
            logging::init(&cfg.log)?;
            for k in &cfg.ignored_env {
                tracing::warn!(variable = %k, "unknown THREADDESK_* environment variable ignored");
            }
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("while binding {}", cfg.listen))?;
            let app = app::start(cfg, listener, web::system_clock()).await?;
            println!("ThreadDesk ready at {}", app.url);
            tokio::select! {
                r = shutdown_signal() => r?,
            }
            drop(app);
            Ok(())
        }
        Command::Demo {
            port,
            seed,
            activity_every,
        } => demo(cli.config.as_ref(), port, seed, activity_every).await,
        Command::Purge { data_dir } => {
            let mut cfg = load_config(cli.config.as_ref())?;
            if let Some(d) = data_dir {
                cfg.set_data_dir(d);
            }
            let db = cfg.database_file();
            if !db.exists() {
                println!("nothing to purge: no cache at {}", db.display());
                return Ok(());
            }
            let store = store::Store::open(&cfg.data_dir)
                .with_context(|| format!("while opening {}", db.display()))?;
            store.purge_all()?;
            println!(
                "cache cleared: {} (users sign in again; their done/snooze marks are kept in Mattermost)",
                db.display()
            );
            Ok(())
        }
        Command::Config {
            what: ConfigCommand::Example,
        } => {
            print!("{}", config::example());
            Ok(())
        }
        Command::Healthcheck { url } => {
            let client = mattermost_free_http(&url)?;
            let ok = client.await?;
            if ok {
                println!("ok");
                Ok(())
            } else {
                bail!("{url}/readyz did not answer 200")
            }
        }
    }
}

/// A plain HTTP GET of `<url>/readyz` over a TCP socket (no extra HTTP client needed).
fn mattermost_free_http(
    url: &str,
) -> Result<impl std::future::Future<Output = Result<bool>> + use<>> {
    let parsed = url::Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
    if parsed.scheme() != "http" {
        bail!("healthcheck speaks plain http to the local listener (got {url})");
    }
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(80);
    Ok(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .context("timed out connecting")?
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
        s.write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .context("timed out reading")??;
        Ok(buf.starts_with(b"HTTP/1.1 200"))
    })
}

async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn demo(
    config_file: Option<&PathBuf>,
    port: u16,
    seed: u64,
    activity_every: u64,
) -> Result<()> {
    let mut cfg = load_config(config_file)?;
    logging::init(if std::env::var(logging::LOG_ENV).is_ok() {
        &cfg.log
    } else {
        "warn"
    })?;
    let sim = mmsim::start(
        mmsim::SimConfig {
            seed,
            size: mmsim::seed::Size::Demo,
            ..mmsim::SimConfig::default()
        },
        0,
    )
    .await
    .context("while starting the Mattermost simulator")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("while binding 127.0.0.1:{port} (try --port 0)"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let app_creds = sim.sim.register_oauth_app(mmsim::oauth::AppSpec {
        name: "ThreadDesk demo".into(),
        callback_urls: vec![format!("{url}/auth/oauth/callback")],
        homepage: url.clone(),
        is_trusted: true,
        is_public: false,
    });
    let data_dir = std::env::temp_dir().join(format!(
        "threaddesk-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    cfg.set_mattermost_url(&sim.url)?;
    cfg.set_public_url(&url)?;
    cfg.set_data_dir(&data_dir);
    cfg.oauth_client_id = Some(app_creds.client_id.clone());
    cfg.oauth_client_secret = Some(config::Secret::new(app_creds.client_secret.clone()));
    let app = app::start(cfg, listener, web::system_clock()).await?;
    let activity = (activity_every > 0).then(|| {
        mmsim::driver::Driver::new(&sim.sim)
            .spawn_activity(Duration::from_secs(activity_every), seed)
    });
    println!("Mattermost simulator at {}", sim.url);
    println!("ThreadDesk demo ready at {}", app.url);
    // The plain OAuth start link: the simulator approves the demo user (alice) at once, so this
    // one URL opens the signed-in queue (the real sign-in flow, no demo-only shortcut).
    println!(
        "Open this link to be signed in as the demo user (alice): {}/auth/oauth/start",
        app.url
    );
    println!("(Ctrl-C stops; the demo's data directory is deleted)");
    let r = shutdown_signal().await;
    if let Some(a) = activity {
        a.abort();
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&data_dir);
    r
}
