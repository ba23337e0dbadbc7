//! Entry point: parse the command line, set up logging, run the chosen role,
//! and map the outcome to an exit code (0 ok, 1 usage, 2 runtime failure).

use std::process::ExitCode;

use rkite::config::{self, Parsed};

#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: rkite::alloc_count::Counting = rkite::alloc_count::Counting;
use rkite::engine::Engine;

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
        Ok(Parsed::Version) => {
            println!("rkite {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rkite: {e}\nTry `rkite --help`.");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = rkite::logging::init(&config) {
        eprintln!("rkite: {e}");
        return ExitCode::from(1);
    }
    for flag in &config.ignored {
        log::debug!("{flag} means nothing to rkite; ignored");
    }
    let result = Engine::new(*config).and_then(|mut engine| {
        engine.start()?;
        engine.run()
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}
