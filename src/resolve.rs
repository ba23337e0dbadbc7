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
        let spawned = spawn_detached(Box::new(move || {
            let result = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let _ = tx.send((id, generation, result));
            let _ = waker.wake();
        }));
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

/// A lookup's body, run once on its own thread.
type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a detached thread named "resolve" with a 64 KiB stack: what
/// `std::thread::Builder` with `.name("resolve").stack_size(64 * 1024)` did,
/// whose handle was dropped at once. Started with pthreads directly because
/// std names its threads through musl's `pthread_setname_np`, which formats
/// the `/proc` path with snprintf and so links all of musl's printf (about
/// 9 KB) into the static binary for this one call; here the thread names
/// itself with `prctl(PR_SET_NAME)`, which needs no path.
fn spawn_detached(job: Job) -> std::io::Result<()> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Box::into_raw` below, handed to exactly one
        // thread (this one) and never touched by the spawner after success.
        let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
        // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16
        // bytes, which this literal is; it renames only the calling thread.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"resolve".as_ptr()) };
        job();
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(job));
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut thread = std::mem::MaybeUninit::<libc::pthread_t>::uninit();
    // SAFETY: `attr` is initialised by pthread_attr_init before any other use
    // and destroyed once; on failure the thread never started, so the job is
    // still ours to free.
    let err = unsafe {
        let mut err = libc::pthread_attr_init(attr.as_mut_ptr());
        if err == 0 {
            err = libc::pthread_attr_setstacksize(attr.as_mut_ptr(), 64 * 1024);
            if err == 0 {
                err = libc::pthread_attr_setdetachstate(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_CREATE_DETACHED,
                );
            }
            if err == 0 {
                err = libc::pthread_create(thread.as_mut_ptr(), attr.as_ptr(), start, arg.cast());
            }
            libc::pthread_attr_destroy(attr.as_mut_ptr());
        }
        if err != 0 {
            drop(Box::from_raw(arg));
        }
        err
    };
    if err == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(err))
    }
}
