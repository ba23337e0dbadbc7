//! Name resolution off the reactor thread. `getaddrinfo` blocks, sometimes
//! for many seconds on a router with a broken uplink, so each lookup runs on
//! a short-lived helper thread that hands its answer back through a channel
//! and wakes the reactor. Helper threads never touch a socket of the relay:
//! the data path stays single-threaded.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use mio::{Registry, Token, Waker};

/// What a lookup was for (the asker's id), and its answer.
pub type Answer = (usize, u64, Result<Vec<SocketAddr>, String>);

pub struct Resolver {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    waker: Arc<Waker>,
}

impl Resolver {
    pub fn new(registry: &Registry, token: Token) -> std::io::Result<Resolver> {
        let (tx, rx) = channel();
        Ok(Resolver {
            tx,
            rx,
            waker: Arc::new(Waker::new(registry, token)?),
        })
    }

    /// Starts resolving `host:port`; the answer arrives through [`Resolver::answers`]
    /// tagged with `id` and `generation`.
    pub fn lookup(&self, id: usize, generation: u64, host: &str, port: u16) {
        let tx = self.tx.clone();
        let waker = Arc::clone(&self.waker);
        let host = host.to_string();
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let result = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect::<Vec<_>>())
                    .map_err(|e| e.to_string());
                let _ = tx.send((id, generation, result));
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            let _ = self.tx.send((
                id,
                generation,
                Err(format!("cannot start a resolver thread: {e}")),
            ));
            let _ = self.waker.wake();
        }
    }

    pub fn answers(&self) -> impl Iterator<Item = Answer> + '_ {
        self.rx.try_iter()
    }
}
