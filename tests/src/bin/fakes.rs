//! `fakes [--port N] [--ready-file PATH]`: serves the local fakes of
//! third-party services on 127.0.0.1.
//!
//! Prints `FAKES_LISTENING http://127.0.0.1:PORT` on stdout once listening,
//! writes `{"url":"http://127.0.0.1:PORT"}` to the ready file if asked, logs
//! one JSON line per request on stderr, and exits on SIGINT or SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dex_edge_tests::fakes::{self, client::ReadyFile, FakesConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const USAGE: &str = "usage: fakes [--port N] [--ready-file PATH]\n  \
    --port N           port on 127.0.0.1 (default 8790; 0 picks a free one)\n  \
    --ready-file PATH  write {\"url\":\"http://127.0.0.1:PORT\"} there once listening";

/// How long open requests may run on after a shutdown signal.
const GRACE: Duration = Duration::from_secs(2);

struct Args {
    port: u16,
    ready_file: Option<PathBuf>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args { port: fakes::DEFAULT_PORT, ready_file: None };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--port" | "-p" => {
                let v = value("--port")?;
                parsed.port = v.parse().map_err(|_| format!("invalid port {v:?}"))?;
            }
            "--ready-file" => parsed.ready_file = Some(PathBuf::from(value("--ready-file")?)),
            "--help" | "-h" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Parsed::Run(parsed))
}

/// Writes the ready file atomically (temp file + rename).
fn write_ready_file(path: &Path, url: &str) -> std::io::Result<()> {
    let json = serde_json::to_string(&ReadyFile { url: url.to_owned() }).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fakes: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fakes: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let port = match listener.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => {
            eprintln!("fakes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://127.0.0.1:{port}");
    {
        let mut out = std::io::stdout().lock();
        let printed = writeln!(out, "FAKES_LISTENING {url}").and_then(|()| out.flush());
        if let Err(e) = printed {
            eprintln!("fakes: cannot write to stdout: {e}");
        }
    }
    if let Some(path) = &args.ready_file {
        if let Err(e) = write_ready_file(path, &url) {
            eprintln!("fakes: cannot write ready file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }

    let stop = Arc::new(Notify::new());
    let stop_server = Arc::clone(&stop);
    let mut server = tokio::spawn(fakes::serve_with(listener, FakesConfig::default(), async move { stop_server.notified().await }));
    tokio::select! {
        result = &mut server => return exit_code(result),
        () = shutdown_signal() => {}
    }
    stop.notify_one();
    match tokio::time::timeout(GRACE, &mut server).await {
        Ok(result) => exit_code(result),
        Err(_) => {
            server.abort();
            ExitCode::SUCCESS
        }
    }
}

fn exit_code(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> ExitCode {
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("fakes: server error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fakes: server task failed: {e}");
            ExitCode::FAILURE
        }
    }
}
