//! rkite: a PageKite-compatible tunneled reverse proxy. The library holds
//! everything; `main.rs` only parses the command line and maps errors to exit
//! codes. `proto` is the sans-IO protocol core; the rest is the reactor and
//! the two roles that glue sockets to it.

pub mod proto;
