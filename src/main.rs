//! The `snapdns` binary: parse flags, set up logging, run the server, pick the exit code.
//!
//! Exit codes: 0 after a clean shutdown, 2 for bad flags or configuration (as clap does),
//! 1 when the server cannot start or fails at run time.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use snapdns::config::{Cli, Command, Config, Environment, ExplainArgs, ServeArgs};

/// mimalloc: snapshot builds allocate and free many small records; it builds a 100k-instance
/// snapshot about 30 % faster than the system allocator (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Check(args) => {
            return ExitCode::from(snapdns::tools::check::run(
                &args,
                &Environment::from_process(),
            ))
        }
        Command::State(args) => return ExitCode::from(snapdns::tools::state::run(&args)),
        Command::Completions { shell } => {
            return print(|out| {
                snapdns::config::completions(shell, out);
                Ok(())
            })
        }
        Command::Man => return print(snapdns::config::man_page),
        Command::Explain(args) => return explain(&args),
    };
    if let Err(message) = init_logging(args.log.log.as_deref(), args.log.log_format.as_deref()) {
        eprintln!("snapdns: error: {message}");
        return ExitCode::from(2);
    }
    let config = match Config::load(&args, &Environment::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("snapdns: error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("snapdns-rt")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("snapdns: error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(async {
        // Installed before anything listens: SIGHUP's default action would end the process.
        let shutdown = shutdown_signal();
        let reloads = reload_requests(args);
        snapdns::app::run_with_reloads(config, shutdown, reloads).await
    });
    // The server has drained within its grace period. Work still on a blocking thread (a
    // snapshot build of a huge registry change) is abandoned, not waited for: dropping the
    // runtime would wait for it however long it takes.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snapdns: error: {error}");
            ExitCode::from(1)
        }
    }
}

/// Writes what `render` produces to stdout (the man page, a completion script). A closed pipe
/// (`snapdns man | head`) is not an error.
fn print(render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match render(&mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snapdns: error: cannot write to stdout: {error}");
            ExitCode::from(1)
        }
    }
}

/// `snapdns explain`: 0 with an account printed, 2 when the server rejects the question, 1
/// when there is no account (server unreachable or failing).
fn explain(args: &ExplainArgs) -> ExitCode {
    use snapdns::explain::client::{fetch, render, ClientError};
    use std::io::Write;
    match fetch(&args.http, &args.name, args.qtype.as_deref()) {
        Ok(account) => {
            let text = if args.json {
                serde_json::to_string_pretty(&account).unwrap_or_default() + "\n"
            } else {
                render(&account)
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("snapdns: explain: {error}");
            match error {
                ClientError::Rejected(_) => ExitCode::from(2),
                ClientError::Io(_) | ClientError::Server(_) => ExitCode::from(1),
            }
        }
    }
}

/// Plain or JSON-lines logs on stderr. hickory's crates log per packet (a malformed EDNS option,
/// a forged upstream reply), which any client could turn into a flood: they are kept at error.
fn init_logging(filter: Option<&str>, format: Option<&str>) -> Result<(), String> {
    let base = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let directives = format!("{base},hickory_server=error,hickory_proto=error,hickory_net=error");
    let filter = EnvFilter::try_new(&directives).map_err(|e| format!("log: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format.unwrap_or("plain") {
        "plain" => builder.init(),
        "json" => builder.json().flatten_event(true).init(),
        other => return Err(format!("log-format: {other:?} is neither plain nor json")),
    }
    Ok(())
}

/// Each SIGHUP becomes a reload request: the configuration loaded again from the same flags
/// and the `--config` file as it is now (validated; the server decides what to apply).
fn reload_requests(
    args: Box<ServeArgs>,
) -> Option<tokio::sync::mpsc::Receiver<snapdns::reload::Request>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reloads are off");
                return None;
            }
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let args = std::sync::Arc::new(args);
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let args = args.clone();
                let loaded = tokio::task::spawn_blocking(move || {
                    Config::load(&args, &Environment::from_process())
                })
                .await;
                let Ok(loaded) = loaded else { continue };
                if sender.send(loaded).await.is_err() {
                    break;
                }
            }
        });
        Some(receiver)
    }
    #[cfg(not(unix))]
    {
        let _ = args;
        None
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call, not when the future
/// is first polled: a SIGTERM that arrives while the server is still starting is not fatal.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        let interrupted = async {
            match interrupt.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let terminated = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = interrupted => {}
            () = terminated => {}
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
