//! # kweb-load: closed-loop and open-loop HTTP/1.1 load generators
//!
//! The load generators that measure kweb and the servers it is compared with (the
//! `kweb-load` binary is a command-line face over both). They load one server on this
//! machine (loopback only), check every response, and report throughput and latency
//! percentiles.
//!
//! * [`run`], the **closed loop** (this module's docs): a fixed number of connections,
//!   each keeping a fixed number of requests outstanding. It measures how fast a server
//!   can go.
//! * [`open::run`], the **open loop** ([`open`]'s docs): requests arrive as a Poisson
//!   process of a fixed rate, each of a URL class drawn by weight, one at a time per
//!   connection of a pool, timed from their scheduled arrival. It measures how long
//!   requests take at a given load, head-of-line blocking included.
//!
//! ```no_run
//! use std::time::Duration;
//! use kweb::load::{run, Spec};
//!
//! let mut spec = Spec::new("127.0.0.1:8080".parse().unwrap(), vec!["/index.html".into()]);
//! spec.connections = 50;
//! spec.in_flight = 8; // pipelined
//! spec.duration = Some(Duration::from_secs(3));
//! let report = run(&spec).expect("set-up failed");
//! assert_eq!(report.errors, 0, "{report}");
//! println!("{:.0} requests/s, p99 {:.0} us", report.rps, report.p99_us);
//! ```
//!
//! ## Map
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | [`run`]: validate, probe, connect, start the load threads (both loops' threads start here), merge their figures |
//! | `spec.rs` | [`Spec`], its defaults and the checks that refuse a bad one (non-loopback first) |
//! | `probe.rs` | the probe: one request per distinct URL to learn its status and `Content-Length` (and body) |
//! | `plan.rs` | the request bytes, rendered once, laid out so any batch is one slice |
//! | `worker.rs` | a load thread: its epoll loop, deadlines, stalls, reconnects |
//! | `conn.rs` | one connection: outstanding-request FIFO, response matching, partial sends |
//! | `response.rs` | framing: parsing a response head (status, `Content-Length`) |
//! | `stats.rs` | the latency histogram and the per-thread tally |
//! | `report.rs` | [`Report`] and its printed form |
//! | `sys.rs` | the system calls (clocks, epoll, a timer, sockets, affinity), each behind a safe function |
//! | `open/` | the open loop, on the probe, parser, histogram and system calls above (its own map) |
//!
//! ## How a run goes
//!
//! 1. The [`Spec`] is checked: a target that is not a loopback address is refused before
//!    any socket is opened, as are impossible settings.
//! 2. Each distinct URL is probed once on a fresh connection; the status and
//!    `Content-Length` of its response are what every later response to it must carry.
//! 3. The idle connections are opened, then the load connections (blocking connects,
//!    then non-blocking with `TCP_NODELAY`), split evenly over the load threads.
//! 4. The load threads pin themselves (`cpus`), build their epoll sets and wait at a
//!    barrier; the load starts for all of them at the same instant `t0`.
//! 5. Each connection sends `in_flight` requests in one `send`, and from then on, each
//!    time a read completes responses, sends as many new requests in one `send`: the
//!    **closed loop**. Connection `i` sends the URLs in turn from `i % urls.len()`.
//! 6. At `t0 + duration` no new requests go out; the outstanding ones are waited for.
//!    With `requests_per_conn`, a connection ends when that many have been answered.
//! 7. The threads' tallies are merged into a [`Report`]; the idle connections are checked
//!    for having been closed by the server, and everything is closed.
//!
//! ## What is checked, what is an error
//!
//! Responses are framed by `Content-Length` only and matched in FIFO order to the
//! requests of their connection. `errors` counts failed requests, each once:
//!
//! * a response whose status or `Content-Length` differs from its URL's probe (the URLs
//!   of a run have different sizes, so a response out of order shows up here);
//! * a response that cannot be framed (no `Content-Length`, any `Transfer-Encoding`, a
//!   bad head) or that answers no request: the connection is closed, and its
//!   outstanding requests are lost;
//! * requests outstanding on a connection the server closes or resets; the connection
//!   is reopened unless the run is ending;
//! * requests still outstanding when the run is stopped by its timeout: a request
//!   outstanding for `timeout`, or a load phase longer than `duration + timeout`. The
//!   run never hangs.
//!
//! A `Connection: close` response is not an error: the requests pipelined behind it are
//! sent again on a new connection. With a `requests_per_conn` budget, requests lost to a
//! failure count against it, so a failing server cannot keep a run going.
//! `requests + errors` is then `connections * requests_per_conn` (without warm-up).
//!
//! ## Why the numbers are fair to every server
//!
//! * **Same client work per request.** Every server gets byte-identical requests from
//!   the same pre-rendered buffer, and every response costs the generator the same: one
//!   head parse, no copy of the body, no allocation.
//! * **Closed loop, fixed depth.** Exactly `connections * in_flight` requests are
//!   outstanding at any time; a slower server gets fewer requests per second, never a
//!   queue that grows without bound (an open loop would measure its queueing instead).
//! * **Batched like a real pipelining client.** All requests a read frees go out in one
//!   `send`; a server that answers a batch in one `write` is rewarded the same way by
//!   every generator thread.
//! * **Cheap timing.** One `clock_gettime(CLOCK_MONOTONIC)` per `send` and per `recv`:
//!   the requests a `send` carried share its time, the responses a `recv` completed share
//!   its time. Latency percentiles come from a log-linear histogram (error < 1%).
//! * **Saturation is visible.** [`Report::cpu_ms`] is the generator's own CPU time: if
//!   it approaches the elapsed time of every load thread, the generator, not the server,
//!   was the bottleneck.

mod conn;
pub mod open;
mod plan;
mod probe;
mod report;
mod response;
mod spec;
mod stats;
mod sys;
mod worker;

pub use report::Report;
pub use spec::Spec;
pub use sys::allowed_cpus;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use plan::Plan;
use stats::Tally;
use worker::{Settings, Worker};

/// Descriptors kept free beyond the connections (std's own, the epoll sets, a probe).
const SPARE_FDS: usize = 64;

/// Runs the load `spec` describes and reports what it measured.
///
/// Returns `Err` only for a spec it refuses (a non-loopback address, impossible
/// settings) or a set-up failure (cannot connect, a probe without a usable answer, a
/// CPU that cannot be pinned). Problems with individual requests are counted in
/// [`Report::errors`].
///
/// It blocks for the whole run (at most about `timeout` for the probes plus
/// `duration + timeout` for the load). It raises the process's soft limit on open
/// descriptors if the connections need more.
pub fn run(spec: &Spec) -> Result<Report, String> {
    spec.validate()?;
    check_cpus(&spec.cpus)?;
    let threads = spec.threads.min(spec.connections);
    reserve_fds(spec.connections + spec.idle_connections)?;

    let expect = probe::probe_all(spec, Instant::now() + spec.timeout)?;
    let plan = Plan::new(spec, expect);

    let idle = (0..spec.idle_connections)
        .map(|i| connect(spec.addr, spec.timeout, "idle", i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shares: Vec<Vec<(OwnedFd, usize)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..spec.connections {
        let fd = load_connection(spec.addr, spec.timeout, i)?;
        shares[i * threads / spec.connections].push((fd, i % spec.urls.len()));
    }

    let settings = Settings {
        addr: spec.addr,
        in_flight: spec.in_flight,
        budget: spec.requests_per_conn,
        warmup_ns: nanos(spec.warmup),
        duration_ns: spec.duration.map(nanos),
        timeout_ns: nanos(spec.timeout),
    };
    let stop = AtomicBool::new(false);
    let (tallies, t0) = run_threads(&spec.cpus, shares, |conns| {
        let worker = Worker::new(&plan, &settings, &stop, conns).map_err(|e| format!("epoll set-up: {e}"))?;
        Ok(move |t0| worker.run(t0))
    })?;
    let mut tally = Tally::new();
    for t in tallies {
        tally.merge(t);
    }
    let idle_closed = idle.iter().map(closed_by_peer).filter(|&closed| closed).count();
    Ok(Report::from_tally(&tally, t0 + settings.warmup_ns, idle_closed))
}

/// Starts one load thread per share, pinned to CPU `cpus[k % cpus.len()]` (unpinned if
/// `cpus` is empty), where `make` turns its share into its load: a function of the start
/// time `t0`. Once every thread is pinned and made, takes `t0` and starts the load in all
/// of them at once. Returns what each load returned, and `t0`; or the first set-up error,
/// with no load run.
fn run_threads<S, L, T>(
    cpus: &[usize],
    shares: Vec<S>,
    make: impl Fn(S) -> Result<L, String> + Sync,
) -> Result<(Vec<T>, u64), String>
where
    S: Send,
    L: FnOnce(u64) -> T,
    T: Send,
{
    let gate = Gate::new();
    let setup_error: Mutex<Option<String>> = Mutex::new(None);
    let fail = |e: String| {
        setup_error.lock().unwrap().get_or_insert(e);
    };
    let outs = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(shares.len());
        for (k, share) in shares.into_iter().enumerate() {
            let (gate, fail, make) = (&gate, &fail, &make);
            let cpu = (!cpus.is_empty()).then(|| cpus[k % cpus.len()]);
            let body = move || {
                let pinned = match cpu {
                    Some(c) => {
                        sys::pin_to_cpu(c).map_err(|e| format!("cannot pin load thread {k} to CPU {c}: {e}"))
                    }
                    None => Ok(()),
                };
                let load = pinned.and_then(|()| make(share)).map_err(fail).ok();
                let t0 = gate.arrive_and_wait()?;
                Some(load?(t0))
            };
            match std::thread::Builder::new().name(format!("kweb-load-{k}")).spawn_scoped(scope, body) {
                Ok(h) => handles.push(h),
                Err(e) => fail(format!("cannot start load thread {k}: {e}")),
            }
        }
        // Every thread is pinned and has its epoll set before `t0` is taken.
        gate.wait_for(handles.len());
        let ok = setup_error.lock().unwrap().is_none();
        gate.open(ok.then(sys::now_ns));
        handles.into_iter().map(|h| h.join().expect("a load thread panicked")).collect::<Vec<_>>()
    });
    if let Some(e) = setup_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok((outs.into_iter().flatten().collect(), gate.t0()))
}

/// Where the load threads wait until all are ready, and learn the start time `t0` (or
/// that set-up failed and there is no load).
struct Gate {
    state: Mutex<(usize, Option<Option<u64>>)>,
    changed: Condvar,
}

impl Gate {
    fn new() -> Gate {
        Gate { state: Mutex::new((0, None)), changed: Condvar::new() }
    }

    /// A thread is ready; waits for the gate to open. `Some(t0)`: start the load.
    fn arrive_and_wait(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        self.changed.notify_all();
        loop {
            if let Some(start) = st.1 {
                return start;
            }
            st = self.changed.wait(st).unwrap();
        }
    }

    /// Waits until `n` threads have arrived.
    fn wait_for(&self, n: usize) {
        let mut st = self.state.lock().unwrap();
        while st.0 < n {
            st = self.changed.wait(st).unwrap();
        }
    }

    /// Lets the threads go: with the start time, or `None` to end them without load.
    fn open(&self, t0: Option<u64>) {
        self.state.lock().unwrap().1 = Some(t0);
        self.changed.notify_all();
    }

    fn t0(&self) -> u64 {
        self.state.lock().unwrap().1.flatten().unwrap_or(0)
    }
}

/// Makes sure `connections` sockets fit under the descriptor limit, with [`SPARE_FDS`]
/// to spare, raising the process's soft limit if they need it.
fn reserve_fds(connections: usize) -> Result<(), String> {
    let needed = connections + SPARE_FDS;
    let limit = crate::sys::raise_fd_limit(needed as u64);
    if (limit as usize) < needed {
        return Err(format!("{needed} descriptors needed, the limit is {limit} (raise it: ulimit -n)"));
    }
    Ok(())
}

/// A blocking connection to `addr`, bounded by `timeout`.
fn connect(addr: SocketAddr, timeout: Duration, kind: &str, i: usize) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot open {kind} connection {i} to {addr}: {e}"))
}

/// Load connection `i` to `addr`: connected (bounded by `timeout`), then non-blocking
/// with `TCP_NODELAY`.
fn load_connection(addr: SocketAddr, timeout: Duration, i: usize) -> Result<OwnedFd, String> {
    let s = connect(addr, timeout, "load", i)?;
    s.set_nodelay(true).and_then(|()| s.set_nonblocking(true)).map_err(|e| e.to_string())?;
    Ok(OwnedFd::from(s))
}

/// Whether the server has closed `s` (end of stream or an error), without blocking.
/// Anything it sent first (a 408, say) is read and dropped.
fn closed_by_peer(mut s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Refuses CPUs this process may not run on, before any thread is started.
fn check_cpus(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Ok(());
    }
    let allowed = sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?;
    match cpus.iter().find(|c| !allowed.contains(c)) {
        Some(c) => Err(format!("CPU {c} is not available to this process (allowed: {allowed:?})")),
        None => Ok(()),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}
