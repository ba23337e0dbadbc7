//! Entry point: parse the command line, set up logging, run the chosen role,
//! and map the outcome to an exit code (0 ok, 1 usage, 2 runtime failure).

use std::process::ExitCode;

use rkite::config::{self, Parsed};
use rkite::daemon;

#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: rkite::alloc_count::Counting = rkite::alloc_count::Counting;
// musl's allocator unmaps a size class's memory when its last block is
// freed, which costs every new connection system calls and page faults
// (bench/profile.md); a small cache of freed blocks in front of it fixes that.
#[cfg(all(target_env = "musl", not(feature = "count-allocs")))]
#[global_allocator]
static ALLOCATOR: rkite::alloc_cache::Cached = rkite::alloc_cache::Cached::new();
use rkite::app::Node;

fn main() -> ExitCode {
    #[cfg(feature = "count-allocs")]
    rkite::alloc_count::installed();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match config::parse(&args) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Connect(client)) => {
            return match rkite::client::run(&client) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rkite --connect: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Ok(Parsed::Settings(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("rkite {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rkite: {e}\nTry `rkite --help`.");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = rkite::logging::init(&config.common.process) {
        eprintln!("rkite: {e}");
        return ExitCode::from(1);
    }
    for flag in &config.common.ignored {
        log::info!("{flag}: accepted for pagekite.py compatibility and ignored");
    }
    match serve(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Binds, then does the daemon duties in the order they need (fork before
/// any thread, the pid file before giving up root, root given up before
/// the first byte from the network), then runs the reactor.
#[inline(never)]
fn serve(config: config::Config) -> Result<(), ServeError> {
    let runas = match &config.common.process.runas {
        Some(spec) => Some(daemon::parse_runas(spec).map_err(ServeError::RunAs)?),
        None => None,
    };
    match daemon::raise_nofile_limit() {
        Ok((now, Some(was))) => log::info!("open files limit raised to {now} (was {was})"),
        Ok((now, None)) => log::info!("open files limit is {now}"),
        // Not fatal: rkite still runs, with fewer connections.
        Err(e) => log::warn!("{e}"),
    }
    let daemonize = config.common.process.daemonize;
    let pidfile = config.common.process.pidfile.clone();
    let mut node = Node::new(config)?;
    if daemonize {
        daemon::daemonize()?;
    }
    let pidfile_guard = pidfile
        .as_deref()
        .map(daemon::PidFile::create)
        .transpose()?;
    if let Some(to) = &runas {
        if let Some(pidfile) = &pidfile_guard {
            pidfile.hand_to(to);
        }
        daemon::drop_privileges(to)?;
        log::info!("running as {} (uid {}, gid {})", to.user, to.uid, to.gid);
    }
    node.start()?;
    Ok(node.run()?)
}

/// Why `serve` stopped rkite (exit code 2).
enum ServeError {
    RunAs(daemon::DaemonError),
    Daemon(daemon::DaemonError),
    Fatal(Box<rkite::engine::Fatal>),
}

impl From<daemon::DaemonError> for ServeError {
    fn from(e: daemon::DaemonError) -> ServeError {
        ServeError::Daemon(e)
    }
}

impl From<Box<rkite::engine::Fatal>> for ServeError {
    fn from(e: Box<rkite::engine::Fatal>) -> ServeError {
        ServeError::Fatal(e)
    }
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::RunAs(e) => write!(f, "--runas: {e}"),
            ServeError::Daemon(e) => e.fmt(f),
            ServeError::Fatal(e) => e.fmt(f),
        }
    }
}
