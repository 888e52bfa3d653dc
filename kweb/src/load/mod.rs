//! # kweb-load: a closed-loop HTTP/1.1 load generator
//!
//! The load generator that measures kweb and the servers it is compared with (the
//! `kweb-load` binary is a command-line face over [`run`]). It loads one server on this
//! machine (loopback only) from a fixed number of connections, each keeping a fixed
//! number of requests outstanding, checks every response, and reports throughput and
//! latency percentiles.
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
//! | `mod.rs` | [`run`]: validate, probe, connect, start the load threads, merge their figures |
//! | `spec.rs` | [`Spec`], its defaults and the checks that refuse a bad one (non-loopback first) |
//! | `probe.rs` | the probe: one request per distinct URL to learn its status and `Content-Length` |
//! | `plan.rs` | the request bytes, rendered once, laid out so any batch is one slice |
//! | `worker.rs` | a load thread: its epoll loop, deadlines, stalls, reconnects |
//! | `conn.rs` | one connection: outstanding-request FIFO, response matching, partial sends |
//! | `response.rs` | framing: parsing a response head (status, `Content-Length`) |
//! | `stats.rs` | the latency histogram and the per-thread tally |
//! | `report.rs` | [`Report`] and its printed form |
//! | `sys.rs` | the system calls (clocks, epoll, sockets, affinity), each behind a safe function |
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

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

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
    let fds_needed = spec.connections + spec.idle_connections + SPARE_FDS;
    let limit = crate::sys::raise_fd_limit(fds_needed as u64);
    if (limit as usize) < fds_needed {
        return Err(format!("{fds_needed} descriptors needed, the limit is {limit} (raise it: ulimit -n)"));
    }

    let expect = probe::probe_all(spec, Instant::now() + spec.timeout)?;
    let plan = Plan::new(spec, expect);

    let idle = (0..spec.idle_connections).map(|i| connect(spec, "idle", i)).collect::<Result<Vec<_>, _>>()?;
    let mut shares: Vec<Vec<(OwnedFd, usize)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..spec.connections {
        let s = connect(spec, "load", i)?;
        s.set_nodelay(true).and_then(|()| s.set_nonblocking(true)).map_err(|e| e.to_string())?;
        shares[i * threads / spec.connections].push((OwnedFd::from(s), i % spec.urls.len()));
    }

    let settings = Settings {
        addr: spec.addr,
        in_flight: spec.in_flight,
        budget: spec.requests_per_conn,
        warmup_ns: nanos(spec.warmup),
        duration_ns: spec.duration.map(nanos),
        timeout_ns: nanos(spec.timeout),
    };
    let (tally, t0) = run_threads(spec, &plan, &settings, shares)?;
    let idle_closed = idle.iter().map(closed_by_peer).filter(|&closed| closed).count();
    Ok(Report::from_tally(&tally, t0 + settings.warmup_ns, idle_closed))
}

/// Starts one load thread per share, starts the load in all of them at once, and merges
/// their tallies. Returns the merged tally and the start time.
fn run_threads(
    spec: &Spec,
    plan: &Plan,
    settings: &Settings,
    shares: Vec<Vec<(OwnedFd, usize)>>,
) -> Result<(Tally, u64), String> {
    let stop = AtomicBool::new(false);
    let gate = Gate::new();
    let setup_error: Mutex<Option<String>> = Mutex::new(None);
    let fail = |e: String| {
        setup_error.lock().unwrap().get_or_insert(e);
    };
    let tallies = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(shares.len());
        for (k, conns) in shares.into_iter().enumerate() {
            let (stop, gate, fail) = (&stop, &gate, &fail);
            let cpu = (!spec.cpus.is_empty()).then(|| spec.cpus[k % spec.cpus.len()]);
            let body = move || {
                let pinned = match cpu {
                    Some(c) => {
                        sys::pin_to_cpu(c).map_err(|e| format!("cannot pin load thread {k} to CPU {c}: {e}"))
                    }
                    None => Ok(()),
                };
                let worker = pinned
                    .and_then(|()| {
                        Worker::new(plan, settings, stop, conns).map_err(|e| format!("epoll set-up: {e}"))
                    })
                    .map_err(fail)
                    .ok();
                let t0 = gate.arrive_and_wait()?;
                Some(worker?.run(t0))
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
    let mut total = Tally::new();
    for t in tallies.into_iter().flatten() {
        total.merge(t);
    }
    Ok((total, gate.t0()))
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

/// A blocking connection to the target, bounded by the spec's timeout.
fn connect(spec: &Spec, kind: &str, i: usize) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&spec.addr, spec.timeout)
        .map_err(|e| format!("cannot open {kind} connection {i} to {}: {e}", spec.addr))
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

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}
