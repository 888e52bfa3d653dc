//! # kweb: a thread-based web server on parlib
//!
//! The thesis' web server (Klues 2015, §2.6.2-2.6.3; `DESIGN.md` §11), with its defects
//! fixed: an HTTP/1.1 static-file server written the threaded way (one accept thread, a
//! connection queue, a pool of worker threads), which runs on Linux threads, on upthread,
//! or on a scheduler of its own, chosen at run time. It is the top layer of parlib-rs:
//! it uses every layer below and nothing uses it.
//!
//! ## Map
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the command line |
//! | [`server`] | shared state; the pollers: accept, readiness, idle timeouts, stop |
//! | [`conn`] | a connection's ownership protocol (a state table) and the slot arena |
//! | [`worker`] | a worker's turn: read, parse, answer up to a burst, write, hand on |
//! | [`http`] | parsing a request head, limits and the statuses of bad input |
//! | [`path`] | decoding and normalising the path; the first wall around the root |
//! | [`files`] | the root (`openat2(RESOLVE_BENEATH)`, the second wall) and the open-file cache |
//! | [`respond`], [`date`], [`status`] | response heads as long as nginx's, bodies, error pages |
//! | [`output`] | pending responses, written in order with `sendmsg` and `sendfile` |
//! | [`urlcmd`] | `/_kweb/...` commands, loopback peers only |
//! | [`work`] | `/work?us=N`: a request of N µs of CPU, for head-of-line experiments (`--work`) |
//! | [`handler`] | running `/work`'s handler inline, or as a timed call with a quantum (`--quantum-us`) |
//! | [`runtime`] | the three variants: threads, queues, waiting for readiness; [`runtime::custom::KwebSched`] is the custom `Scheduler` |
//! | [`sys`] | the raw system calls of the request path |
//! | [`splitmix`] | SplitMix64: `/work`'s hash step and the load generator's random stream |
//! | [`load`] | `kweb-load`, the load generator |
//!
//! Binaries: `kweb` (the server, [`main`]) and `kweb-load`.
//!
//! ## How a request is served
//!
//! ```text
//!   client ──► listener ──► poller of shard 0 (accept, deal round robin)
//!                              │ registers the connection, edge-triggered, in a shard's epoll set
//!   readiness ──► poller ──► connection queue ──► worker: read, answer ≤ burst, write
//!                    ▲                                   │
//!                    └──── idle (no worker, no buffer) ◄─┘  or back to the queue's tail
//! ```
//!
//! The thesis' workers blocked in `read` on their connection, so idle connections held
//! workers and enough of them starved the pool; here no worker ever waits on a
//! connection (see [`conn`]). Everything the original got wrong that a user would hit
//! is handled: responses to pipelined requests leave strictly in order, file bodies go
//! out whole (`sendmsg`, `sendfile`), requests are parsed only within what was received,
//! `GET //etc/x` and every other escape stay inside the root, `Content-Length` is
//! validated and bounded, `url_cmd` is opt-in and loopback-only, and a slow request
//! times out without ever holding a worker.
//!
//! ## Variants
//!
//! See [`runtime`]. The request path makes raw system calls ([`sys`]), the same on every
//! variant. Where libc's names remain (opening the root, `setsockopt`, `getrlimit`, the
//! signal set-up, `clock_gettime`) they are set-up calls or not interposed.

//! ## Where it differs from the thesis and DESIGN §11
//!
//! * **The accept thread also watches idle connections.** It is the poller of shard 0:
//!   one epoll set holds the listener and the connections waiting for their next
//!   request. Other shards (the custom variant's vcores) have pollers of their own.
//! * **No variant blocks on a socket**, the Linux one included (the issue asked for
//!   blocking sockets there): a worker that would wait for a connection's bytes hands
//!   the connection back to its poller instead, which is what keeps idle and slow
//!   connections from starving the pool. Linux threads block in the connection queue's
//!   futex and in `epoll_wait`; uthreads block only themselves in the same places. The
//!   variants differ in what blocking and waking a thread costs, and nothing else.
//! * **The burst is a loop, not queue round trips.** The thesis puts a connection back
//!   at the head of the queue after each request while its burst lasts; here the worker
//!   keeps it for up to `--burst` requests (which is what taking it straight back from
//!   the head amounts to) and answers them with one write. After the burst a connection
//!   with more to do goes to the tail, and another worker is woken, as in the thesis.
//! * **`url_cmd`** lives under `/_kweb/` and answers loopback peers only.
//!
//! ## Long requests do not hold up short ones (`--quantum-us`)
//!
//! A uthread runs until it yields, so on one vcore a request that computes for 5 ms
//! delays every request that arrives meanwhile by up to 5 ms: head-of-line blocking. With
//! `--quantum-us Q`, `/work`'s handlers run as preemptible timed calls (`parlib-timed`):
//! one that outlives its quantum waits behind the queued connections and resumes later,
//! and one that exceeds `--handler-budget-ms` in all is cancelled with a 503. See
//! [`handler`] for the protocol. Static files are answered by the server itself, never
//! for long, and are not timed. `benches/hol.rs` measures the effect against upthread's
//! own time slices and Linux threads.
//!
pub mod config;
pub mod conn;
pub mod date;
pub mod files;
pub mod handler;
pub mod http;
pub mod load;
pub mod output;
pub mod path;
pub mod respond;
pub mod runtime;
pub mod server;
pub mod splitmix;
pub mod status;
pub mod sys;
pub mod urlcmd;
pub mod work;
pub mod worker;

use std::sync::Arc;

use config::{Config, Variant};
use runtime::Runtime;
use server::Server;

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests answered.
    pub requests: u64,
    /// Connections accepted.
    pub connections: u64,
}

/// Runs a server until it is stopped (Ctrl-C, SIGTERM, `url_cmd stop`). `ready` is
/// called with the port once it listens.
///
/// Starting the upthread or custom variant makes the caller a uthread (`main`) for the
/// rest of the process: call this once, from `main`.
pub fn run(config: Config, ready: impl FnOnce(u16)) -> std::io::Result<Summary> {
    config.check().map_err(std::io::Error::other)?;
    sys::raise_fd_limit(u64::MAX); // nginx's `worker_rlimit_nofile`: as many as allowed
    server::install_signals();
    let rt: Box<dyn Runtime> = match config.variant {
        Variant::Linux => Box::new(runtime::linux::Linux),
        Variant::Upthread => Box::new(runtime::upthread::Upthread::start(config.vcores)?),
        Variant::Custom => Box::new(runtime::custom::Custom::start(config.vcores)?),
    };
    let files = files::Files::open(&config.root)
        .map_err(|e| std::io::Error::new(e.kind(), format!("--root {}: {e}", config.root.display())))?;
    let (listener, port) = server::listen(&config)?;
    let srv = Arc::new(Server::new(config, rt, files, listener)?);
    let shards = srv.shards.len();
    let per_shard = srv.config.workers.div_ceil(shards).max(1);
    let mut workers = Vec::new();
    let mut pollers = Vec::new();
    for s in 0..shards {
        for i in 0..per_shard {
            let w = srv.clone();
            workers.push(srv.rt.spawn(
                s,
                format!("kweb-worker-{s}.{i}"),
                Box::new(move || worker::run(&w, s)),
            )?);
        }
        let p = srv.clone();
        pollers.push(srv.rt.spawn(s, format!("kweb-poller-{s}"), Box::new(move || p.poll(s)))?);
    }
    ready(port);
    for j in pollers {
        j();
    }
    for j in workers {
        j();
    }
    srv.shut();
    Ok(Summary {
        requests: srv.stats.requests(),
        connections: srv.stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The `kweb` binary: parses the command line, runs the server, prints where it listens
/// and, when stopped, what it did.
pub fn main() -> std::process::ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{}", config::USAGE);
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kweb: {e}\n{}", config::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    let quiet = config.quiet;
    let (variant, bind, root) = (config.variant, config.bind, config.root.clone());
    let r = run(config, |port| {
        if !quiet {
            println!("kweb: listening on {bind}:{port}, variant {variant:?}, root {}", root.display());
        }
    });
    match r {
        Ok(s) => {
            if !quiet {
                println!("kweb: stopped after {} requests on {} connections", s.requests, s.connections);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kweb: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
