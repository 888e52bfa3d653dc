//! Comparison benchmark: a loopback TCP echo server whose handlers are uthreads on one
//! vcore, blocking only themselves (`DESIGN.md` §7), against the same server on Linux
//! threads doing blocking `read` and `write` on one core, in the same process and the same
//! run (§12). The uthread server runs twice: once written against `parlib-syscalls`' `io`
//! module, once as a plain `std::net` thread-per-connection server that knows nothing of
//! parlib but that its threads are uthreads.
//!
//! | side | the server, for N connections (cases `conn10`, `conn100`, `conn1000`) |
//! |---|---|
//! | `uthreads` | N TLS-backed uthreads on vcore 0, one per connection: `io::read` into a 4 KiB buffer, `io::write` of what came, until EOF. An acceptor uthread takes the connections with `io::accept` and spawns the handlers |
//! | `stdnet` | The same, on the same vcore and [`EchoSched`], written with `std::net` only: each handler uthread owns a `TcpStream` and loops `Read::read` into a 4 KiB buffer, `Write::write_all` of what came, until EOF; the acceptor uthread calls `TcpListener::accept`. std's `recv`, `send` and `accept4` are `parlib-syscalls`' own under the libc names (after `parlib_syscalls::init()`), so each blocks only the calling uthread: no `io` call in the data path |
//! | `linux` (baseline) | N Linux threads pinned to vcore 0's CPU, one per connection: `read(2)` and `write(2)` on blocking sockets, the same loop. An acceptor thread on that CPU takes the connections with `accept(2)` and spawns the handlers |
//!
//! Every side sets `TCP_NODELAY` on its sockets, listens with the same backlog
//! ([`BACKLOG`]) and uses stacks of the same size ([`SERVER_STACK`]). Figures:
//! requests/s, and the latency of a request (from the client's `send` to the last byte of
//! its echo), p50 and p99. `ratio` = a uthread side's requests/s ÷ Linux requests/s, each
//! uthread side against the Linux windows of the same case and run: above 1, that uthread
//! server serves more.
//!
//! The libc names are `parlib-syscalls`' for the whole process, so the Linux handlers'
//! `read` and `write` and the client's `send` and `recv` go through them too: on a plain
//! thread they are the plain system call, after a look at whether the layer made the
//! descriptor non-blocking (it never does for those sockets).
//!
//! # The load generator, and why it is fair to every side
//!
//! One client, the same code for every side: a plain Linux thread (the *driver*) pinned to
//! the *other* CPU (vcore 1's, which stays parked), driving all N connections of the side
//! under test from one `epoll` instance (level-triggered). Each connection always has
//! exactly one request of [`MSG`] = 64 bytes outstanding: when its echo is complete the
//! client checks every byte of it, stamps the time, and sends the next request on that
//! connection at once. So:
//!
//! * every server sees exactly the concurrency the case names, N requests in flight, no
//!   more and no less; the load is closed-loop and adapts to the server's speed, so no
//!   side is flooded into queueing the others never see;
//! * the client's own work per request is the same whichever side it drives: one `recv`,
//!   one `send`, one clock read, a 64-byte compare and a share of one `epoll_wait`; a
//!   thread per connection on the client side would instead add N threads of its own
//!   scheduling, on the client CPU, to what is measured;
//! * the three sides take turns with the same client, in alternating windows, while the
//!   idle sides cost nothing: their handlers are blocked in `read` (Linux) or in the
//!   readiness wait of `io::read` or of std's `recv` (uthreads, both sides), with vcore 0
//!   parked in `epoll_wait` unless a uthread side's window is on.
//!
//! The client runs on one core. If it saturates, every side is capped at its rate and
//! the ratios shrink towards 1: the table gives the client thread's share of its CPU
//! (`client CPU`), so a client-bound window shows. Kernel work a server's design causes on the *sender's*
//! CPU (on loopback the receive path of a `send` runs on the sending CPU, including
//! waking a sleeping handler thread, or marking an `epoll` instance ready) lands on the
//! client's CPU: that is a real cost of the design, and it is visible there.
//!
//! Requests/s counts echoes completed within the window. The latencies are those of every
//! request *sent* within the window: after the window ends the client sends nothing more
//! but waits for (and checks) every outstanding echo, so requests in flight at the end
//! are not left out of the tail, and the next window starts with every connection idle.
//!
//! # Why this bench has its own scheduler
//!
//! The scheduler in `common/mod.rs` restarts its idle count whenever
//! `events::events_pending()` is true, and `parlib-syscalls` reports pending work whenever
//! any uthread waits for I/O (so that a spinning scheduler polls for it). With 2N
//! handlers blocked in `io::read` or in std's `recv`, that scheduler would never park
//! vcore 0: it would spin through zero-timeout `epoll_wait`s on the CPU the Linux threads
//! need during their windows. So this bench drives the uthreads of both uthread sides
//! with [`EchoSched`]: one FIFO queue for vcore 0, whose idle loop counts a round as idle
//! when `handle_events` found nothing, and parks after [`IDLE_SPIN_NS`] of such rounds; a
//! parked vcore sleeps in `parlib-syscalls`' park hook, `epoll_wait`, and readiness wakes
//! it. It borrows only `Completion` from `common/`.
//!
//! # Windows, repetitions, figures
//!
//! Per case, the three servers are started and all 3N connections made once; then every
//! side runs one untimed warm-up window (half length), then R repetitions of one window
//! per side, in the order `uthreads`, `stdnet`, `linux` and reversed on every other
//! repetition (`harness::alternate`). Each window gives its requests/s and its p50, p99
//! and max latency (nearest rank); every figure is the median over the R windows. Before
//! a Linux window the driver waits until vcore 0 has parked.
//!
//! To say where the time goes, a window also reads, from its first send to the last echo
//! of its drain (the *span*, which serves exactly the requests sent in the window):
//!
//! * the CPU time of the side's server tasks (vcore 0's task for both uthread sides, or
//!   every Linux handler's) and of the client thread, from their per-thread CPU clocks:
//!   `server CPU` and `client CPU` are shares of one CPU, and `server CPU µs/request` is
//!   the server's CPU time per request, which does not depend on how fast the client kept
//!   it fed;
//! * how busy the two CPUs were, whoever ran there (`/proc/stat`): `CPU 0 busy` above
//!   `server CPU` means other processes (or interrupts) took turns on the server's CPU;
//! * vcore 0's voluntary context switches: each is one park (`vcore parks /1000 req`).
//!
//! Run: `cargo bench --bench echo -- --quick` (5 windows of 200 ms per side; about 15 s;
//! prints only) or `cargo bench --bench echo` (11 windows of 500 ms; about 60 s; also
//! writes `results.md`, `results.csv` and `echo.svg` under `<target>/parlib-bench/echo/`).
//! Arguments that are not flags pick cases by name (`-- --quick conn100`; a case's exact
//! name picks it alone, other words every case containing them). The output ends
//! with two RESULT lines per case (see `BENCHMARKS.md`): `RESULT echo case=<case> ...`
//! compares the `uthreads` side with Linux (keys `uthread_*`, `linux_*`), and `RESULT echo
//! case=<case>-stdnet rps=... linux_rps=... ratio=...` the `stdnet` side (its own keys
//! unprefixed, the same run's Linux figures as `linux_*`). Without `--bench` the binary
//! runs a short smoke test of every case and side (every echoed byte is checked, as in
//! every mode) and prints no RESULT lines.
//!
//! Needs 6N + a few descriptors (3N client and 3N server sockets) and 3N threads besides
//! the vcores (N Linux handlers, 2N backing threads of the uthreads): `RLIMIT_NOFILE` is
//! raised to what the largest case asks for, and the bench stops with a message if the
//! hard limit is lower.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parlib::events;
use parlib::syscalls::io;
use parlib::uthread::{self, idle, Runnable, Scheduler, TlsMode};
use parlib::vcore::{self, spin::SpinLock, Stack};

#[path = "common/mod.rs"]
mod common;
#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;

use common::Completion;
use harness::{pin_to, Mode, STALL_WARNING};
use machine::Machine;
use report::{Report, Stat};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Measured windows per case and side; odd, so the median is a sample.
    reps: usize,
    /// Length of one window (the warm-up window is half).
    window: Duration,
}

/// Without `--bench`: one short window per side and case (all three sides), to check that
/// everything runs and echoes right. No RESULT lines, no files.
const SMOKE: Settings = Settings { reps: 1, window: Duration::from_millis(20) };

/// `--quick`: 5 windows of 200 ms per side, the smallest odd count whose median ignores
/// two outliers: 3 cases x 3 sides x 5.5 x 0.2 s = 9.9 s of windows.
const QUICK: Settings = Settings { reps: 5, window: Duration::from_millis(200) };

/// Full run: 11 windows of 500 ms per side, a median robust to five outliers, as the
/// other comparison benches use: 3 x 3 x 11.5 x 0.5 s = 51.75 s of windows. At the
/// smallest rate seen here (tens of thousands of requests/s) a window still holds over
/// 10 000 requests, so its p99 rests on 100 samples or more.
const FULL: Settings = Settings { reps: 11, window: Duration::from_millis(500) };

/// The cases: name and number of connections.
const CASES: [(&str, usize); 3] = [("conn10", 10), ("conn100", 100), ("conn1000", 1000)];

/// Bytes of one request (and of its echo): small enough that the server's cost is the
/// per-request path (system calls, wake-ups, switches), not copying.
const MSG: usize = 64;

/// A server handler's read buffer. A page, as a plain echo server would use: it only
/// ever receives one 64-byte request at a time here, and every side uses the same size.
const SERVER_BUF: usize = 4096;

/// Stack of every server handler, uthread or Linux thread: the uthread layer's default
/// (`parlib_vcore::DEFAULT_STACK_SIZE`, 256 KiB), so every side touches the same amount.
const SERVER_STACK: usize = 256 * 1024;

/// Listen backlog: above the largest case, so every connect completes in the kernel
/// before the acceptor gets to it. The kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4). Every side's listener is made with it ([`listen_loopback`]),
/// the `stdnet` side's too: `TcpListener::bind` would pick std's own backlog.
const BACKLOG: i32 = 4096;

/// Descriptors per connection of a case: each of the three sides holds a client socket
/// and a server socket for it.
const FDS_PER_CONN: u64 = 6;

/// Descriptors besides [`FDS_PER_CONN`] per connection: the listeners, the client's
/// three epoll instances, each vcore's epoll instance and eventfd, std{in,out,err}, and
/// what the harness and the runtime open (`/proc` files, git).
const SPARE_FDS: u64 = 64;

/// The goal: at 100 connections, the uthread server on one vcore serves at least
/// this many times the requests/s of the Linux-thread server on one core.
const GOAL_RATIO: f64 = 1.5;
/// The goal for the `stdnet` side: at 100 connections, the `std::net` server on
/// uthreads on one vcore serves at least this many times the requests/s of the
/// Linux-thread server on one core (the same run's Linux windows).
const STDNET_GOAL_RATIO: f64 = 1.3;
/// The case both goals are for.
const GOAL_CASE: &str = "conn100";

/// How long an idle vcore keeps polling its run queue and its I/O before it parks: about
/// what a wake-up of a parked vcore costs in this VM (`BENCHMARKS.md`, `alarms`: 24 µs
/// from the timer interrupt to the task on its CPU; `examples/round_robin.rs`: ~50 µs).
/// Spinning as long as a block costs keeps the waste within twice the best choice in
/// hindsight (Karlin et al., "Empirical Studies of Competitive Spinning for a
/// Shared-Memory Multiprocessor", SOSP 1991).
const IDLE_SPIN_NS: u64 = 50_000;

/// A window in which no echo comes back for this long has hung: the bench stops and says
/// so. Far beyond any latency seen here: tens of ms on a quiet machine, 2.7 s at 1000
/// connections on one where other processes kept both CPUs busy.
const STALL: Duration = Duration::from_secs(30);

/// The vcore that runs every uthread of this bench.
const VC: usize = 0;

// ---------------------------------------------------------------------------------------
// The scheduler: one FIFO queue, for vcore 0.

/// The echo bench's scheduler (see the module docs for why not `common`'s). An idle
/// vcore parks with `uthread::idle::park`, in the lock-ordered form of its handshake: a
/// push reads `idle::is_parking` under the queue lock that the parker's `validate` takes.
struct EchoSched {
    queue: SpinLock<VecDeque<Runnable<()>>>,
}

static SCHED: EchoSched = EchoSched { queue: SpinLock::new(VecDeque::new()) };

impl Scheduler for EchoSched {
    type Thread = ();

    // Vcore context on vcore 0: run the next uthread, or poll, or park.
    fn sched_entry(&self) -> ! {
        loop {
            // When the queue was first found empty with nothing to handle: read the clock
            // only once idle, so a busy vcore's switches do not pay for it.
            let mut idle_since: Option<u64> = None;
            loop {
                // A separate statement: the guard must be dropped before run_uthread.
                let next = self.queue.lock().pop_front();
                if let Some(t) = next {
                    uthread::run_uthread(t);
                }
                // handle_events polls this vcore's epoll instance (parlib-syscalls' poll
                // hook) and runs queued events; it returns how much it did.
                if events::events_pending() && events::handle_events() > 0 {
                    idle_since = None;
                    continue;
                }
                let now = parlib::sync::now_ns();
                if now - *idle_since.get_or_insert(now) >= IDLE_SPIN_NS {
                    break;
                }
                core::hint::spin_loop();
            }
            // parlib-syscalls' park hook makes a parked vcore sleep in epoll_wait.
            idle::park(|| !self.queue.lock().is_empty(), || {});
        }
    }

    fn thread_runnable(&self, t: Runnable<()>) {
        let parking = {
            let mut q = self.queue.lock();
            q.push_back(t);
            idle::is_parking(VC)
        };
        if parking {
            let _ = vcore::notify(VC);
        }
    }
}

/// Starts the uthread layer with [`EchoSched`] and turns the caller into the uthread
/// `main` on vcore 0. Call once, from `main`.
fn start_uthreads() {
    uthread::lib_init(&SCHED, ()).expect("uthread::lib_init");
}

/// Starts `body` as a TLS-backed uthread on vcore 0.
fn spawn(body: impl FnOnce() + Send + 'static) {
    let stack = Stack::new(SERVER_STACK).expect("mmap a uthread stack");
    uthread::runnable(uthread::create((), stack, TlsMode::Backed, body).expect("uthread::create"));
}

// ---------------------------------------------------------------------------------------
// Sockets.

/// Panics with what failed and the OS error.
#[cold]
#[inline(never)]
fn os_failed(what: &str) -> ! {
    panic!("echo: {what} failed: {}", std::io::Error::last_os_error())
}

/// Turns Nagle's algorithm off on `fd`: an echo must leave at once, not wait to be
/// coalesced with data that never comes. Set on the client's sockets and on the server
/// sockets of the `uthreads` and `linux` sides (the `stdnet` side says it with std's
/// `TcpStream::set_nodelay`).
fn set_nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int of the size we pass, from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const one).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        os_failed("setsockopt(TCP_NODELAY)");
    }
}

fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: an all-zero sockaddr_in is a valid value to fill in.
    let mut a: libc::sockaddr_in = unsafe { core::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    a
}

const SOCKADDR_IN_LEN: libc::socklen_t = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// A blocking TCP listener on 127.0.0.1, on a port the kernel picks: `(fd, port)`.
fn listen_loopback() -> (i32, u16) {
    // SAFETY: plain descriptor-creating call, result checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        os_failed("socket");
    }
    let mut a = loopback(0);
    let mut len = SOCKADDR_IN_LEN;
    // SAFETY: `a` is a sockaddr_in of the length we pass, read by bind and written by
    // getsockname; `fd` is our socket.
    unsafe {
        if libc::bind(fd, (&raw const a).cast(), len) != 0 {
            os_failed("bind(127.0.0.1:0)");
        }
        if libc::listen(fd, BACKLOG) != 0 {
            os_failed("listen");
        }
        if libc::getsockname(fd, (&raw mut a).cast(), &mut len) != 0 {
            os_failed("getsockname");
        }
    }
    (fd, u16::from_be(a.sin_port))
}

// ---------------------------------------------------------------------------------------
// The three servers: the same loop, through parlib-syscalls' `io`, through `std::net` on
// uthreads, and through libc on Linux threads.

/// Connections the uthread server's acceptor has taken, for the driver's setup.
static PARLIB_ACCEPTED: AtomicUsize = AtomicUsize::new(0);
/// Handler exits of the uthread server; `main` waits for all of them at a case's end.
static PARLIB_HANDLERS_DONE: Completion = Completion::new();
/// The Linux handlers' task ids, for the driver to read their CPU time.
static LINUX_TIDS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());
/// Connections the `stdnet` server's acceptor has taken, for the driver's setup.
static STDNET_ACCEPTED: AtomicUsize = AtomicUsize::new(0);
/// Handler exits of the `stdnet` server; `main` waits for all of them at a case's end.
static STDNET_HANDLERS_DONE: Completion = Completion::new();
/// Server-side failures (a read or write error, or a short write) on any side. A
/// correct run has none; the client's checks would usually catch them first.
static SERVER_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// The uthread server's acceptor: `n` connections, a handler uthread each.
fn parlib_acceptor(listener: i32, n: usize) {
    for _ in 0..n {
        let (fd, _) = io::accept(listener).unwrap_or_else(|e| panic!("echo: io::accept failed: {e}"));
        set_nodelay(fd);
        spawn(move || parlib_echo(fd));
        PARLIB_ACCEPTED.fetch_add(1, Ordering::Release);
    }
}

/// One uthread handler: echo what comes until EOF. Each call blocks only this uthread.
fn parlib_echo(fd: i32) {
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => match io::write(fd, &buf[..n]) {
                Ok(w) if w == n => {}
                _ => {
                    SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            },
            Err(_) => {
                SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    let _ = io::close(fd);
    PARLIB_HANDLERS_DONE.arrive();
}

/// The `stdnet` server's acceptor, a uthread: `n` connections from std's `accept`, a
/// handler uthread each. It closes the listener (drops it) when it has them all.
fn stdnet_acceptor(listener: TcpListener, n: usize) {
    for _ in 0..n {
        // accept4(2) under its libc name: parlib-syscalls' on a uthread, so this blocks
        // only the acceptor.
        let (stream, _) =
            listener.accept().unwrap_or_else(|e| panic!("echo: TcpListener::accept failed: {e}"));
        stream.set_nodelay(true).unwrap_or_else(|e| panic!("echo: TcpStream::set_nodelay failed: {e}"));
        spawn(move || stdnet_echo(stream));
        STDNET_ACCEPTED.fetch_add(1, Ordering::Release);
    }
}

/// One `stdnet` handler: echo what comes until EOF, with std's `Read` and `Write` on a
/// blocking `TcpStream` only. std's `read` is `recv(2)` and its `write` is
/// `send(2, MSG_NOSIGNAL)`, both under their libc names, so each blocks only this uthread.
fn stdnet_echo(mut stream: TcpStream) {
    let mut buf = [0u8; SERVER_BUF];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            // write_all loops over short writes (and EINTR), as io::write does.
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(stream); // close(2), before the arrival that lets `main` end the case
    STDNET_HANDLERS_DONE.arrive();
}

/// The Linux server's acceptor, on a thread pinned to `cpu`: `n` connections, a handler
/// thread pinned to `cpu` each. Returns the handlers, for the driver to join.
fn linux_acceptor(listener: i32, n: usize, cpu: usize) -> Vec<JoinHandle<()>> {
    pin_to(cpu);
    (0..n)
        .map(|i| {
            let fd = loop {
                // SAFETY: a listening socket; no peer address asked for.
                let fd = unsafe { libc::accept(listener, core::ptr::null_mut(), core::ptr::null_mut()) };
                if fd >= 0 {
                    break fd;
                }
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    os_failed("accept");
                }
            };
            set_nodelay(fd);
            std::thread::Builder::new()
                .name(format!("echo-linux-{i}"))
                .stack_size(SERVER_STACK)
                .spawn(move || {
                    // Inherited from the acceptor already; said explicitly.
                    pin_to(cpu);
                    // SAFETY: gettid has no preconditions.
                    LINUX_TIDS.lock().expect("tid list").push(unsafe { libc::gettid() });
                    linux_echo(fd);
                })
                .unwrap_or_else(|e| panic!("echo: cannot start Linux handler thread {i}: {e}"))
        })
        .collect()
}

/// One Linux handler: echo what comes until EOF, with blocking `read` and `write`.
fn linux_echo(fd: i32) {
    let mut buf = [0u8; SERVER_BUF];
    'conn: loop {
        // SAFETY: `buf` is ours and as long as we say.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
            break;
        }
        // A blocking write on a stream socket writes everything unless a signal cuts it
        // short; loop for that case, as io::write does.
        let mut done = 0;
        while done < n as usize {
            // SAFETY: `done < n <= buf.len()`: the rest of what we read.
            let w = unsafe { libc::write(fd, buf.as_ptr().add(done).cast(), n as usize - done) };
            if w <= 0 {
                if w < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
                break 'conn;
            }
            done += w as usize;
        }
    }
    // SAFETY: our descriptor, closed once.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------------------
// The client: one epoll loop over the connections of one side.

/// Which server a window measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// Uthreads on vcore 0 calling `parlib-syscalls`' `io`.
    Uthreads,
    /// Uthreads on vcore 0 using `std::net` only.
    StdNet,
    /// Linux threads on vcore 0's CPU: the baseline.
    Linux,
}

impl Side {
    /// Every side, in the order of a repetition's first half and of the table.
    const ALL: [Side; 3] = [Side::Uthreads, Side::StdNet, Side::Linux];

    fn name(self) -> &'static str {
        match self {
            Side::Uthreads => "uthreads",
            Side::StdNet => "stdnet",
            Side::Linux => "linux",
        }
    }

    /// The goal for this side at [`GOAL_CASE`], as a ratio to Linux requests/s.
    fn goal_ratio(self) -> Option<f64> {
        match self {
            Side::Uthreads => Some(GOAL_RATIO),
            Side::StdNet => Some(STDNET_GOAL_RATIO),
            Side::Linux => None,
        }
    }
}

/// One client connection.
struct Conn {
    fd: i32,
    /// Its index, which goes into every request it sends.
    id: u32,
    /// Requests sent so far on it.
    seq: u32,
    /// When the outstanding request was sent, ns (`CLOCK_MONOTONIC`).
    sent_ns: u64,
    /// Bytes of the outstanding echo received so far.
    got: usize,
    /// The outstanding request, to check the echo against.
    sent: [u8; MSG],
    /// The echo, as it arrives.
    buf: [u8; MSG],
}

/// Fills `out` with request `seq` of connection `conn`. The first 8 bytes are an odd
/// multiple of (conn, seq) packed into 64 bits, a bijection, so no two requests of a case
/// are alike and a misrouted or stale echo fails the check; the rest follow from it.
/// The multiplier is 2^64 ÷ the golden ratio, the usual spreading constant (Knuth, TAOCP
/// vol. 3, 6.4, "Fibonacci hashing").
fn payload(conn: u32, seq: u32, out: &mut [u8; MSG]) {
    const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut x = (u64::from(conn) << 32 | u64::from(seq)).wrapping_mul(SPREAD);
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&x.to_le_bytes());
        x = x.rotate_left(23).wrapping_mul(SPREAD) ^ 0xA5A5_A5A5_A5A5_A5A5;
    }
}

impl Conn {
    /// Connects to 127.0.0.1:`port` (blocking, so the handshake is done when it returns),
    /// then makes the socket non-blocking for the epoll loop.
    fn open(port: u16, id: u32) -> Conn {
        // SAFETY: plain descriptor-creating call, result checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            os_failed("socket (client)");
        }
        let a = loopback(port);
        // SAFETY: `a` is a sockaddr_in of the length we pass; `fd` is our socket.
        if unsafe { libc::connect(fd, (&raw const a).cast(), SOCKADDR_IN_LEN) } != 0 {
            os_failed("connect(127.0.0.1)");
        }
        set_nodelay(fd);
        // SAFETY: F_GETFL/F_SETFL with integer arguments on our socket.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) != 0 {
                os_failed("fcntl(O_NONBLOCK)");
            }
        }
        Conn { fd, id, seq: 0, sent_ns: 0, got: 0, sent: [0; MSG], buf: [0; MSG] }
    }

    /// Sends the next request, stamped `now`.
    fn send(&mut self, now: u64) {
        payload(self.id, self.seq, &mut self.sent);
        self.seq = self.seq.wrapping_add(1);
        self.got = 0;
        self.sent_ns = now;
        // SAFETY: `sent` is ours and MSG bytes long.
        let w = unsafe { libc::send(self.fd, self.sent.as_ptr().cast(), MSG, libc::MSG_NOSIGNAL) };
        // One 64-byte request at a time always fits an empty socket buffer.
        if w != MSG as isize {
            os_failed(&format!("send on connection {} (wrote {w} of {MSG} bytes)", self.id));
        }
    }

    /// Reads what has come of the echo. True once it is complete.
    fn receive(&mut self, side: Side) -> bool {
        // SAFETY: `got < MSG`: the rest of `buf`, ours.
        let r = unsafe { libc::recv(self.fd, self.buf.as_mut_ptr().add(self.got).cast(), MSG - self.got, 0) };
        if r > 0 {
            self.got += r as usize;
            return self.got == MSG;
        }
        if r == 0 {
            panic!(
                "echo: the {} server closed connection {} in the middle of a window",
                side.name(),
                self.id
            );
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => false,
            _ => os_failed(&format!("recv on connection {} ({} side)", self.id, side.name())),
        }
    }

    /// Checks every byte of the complete echo against the request.
    fn check(&self, side: Side) {
        if self.buf != self.sent {
            let at = self.buf.iter().zip(&self.sent).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "echo: wrong echo from the {} server on connection {}, request {}: byte {at} is {:#04x}, sent {:#04x}",
                side.name(),
                self.id,
                self.seq.wrapping_sub(1),
                self.buf[at],
                self.sent[at]
            );
        }
    }
}

/// The client's connections to one server, and the epoll instance that watches them.
struct Client {
    side: Side,
    epfd: i32,
    conns: Vec<Conn>,
    events: Vec<libc::epoll_event>,
    /// The tasks that run this side's server, whose CPU time a window reads: vcore 0's,
    /// or every Linux handler's.
    server_tids: Vec<i32>,
}

impl Client {
    fn connect(side: Side, port: u16, n: usize) -> Client {
        // SAFETY: plain descriptor-creating call, result checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            os_failed("epoll_create1");
        }
        let conns: Vec<Conn> = (0..n as u32).map(|id| Conn::open(port, id)).collect();
        for c in &conns {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: u64::from(c.id) };
            // SAFETY: valid descriptors and event.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, c.fd, &mut ev) } != 0 {
                os_failed("epoll_ctl(ADD)");
            }
        }
        // Up to one event per connection in one epoll_wait, at most 1024 (16 KiB).
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; n.clamp(1, 1024)];
        Client { side, epfd, conns, events, server_tids: Vec::new() }
    }

    /// Closes every connection: the server's handlers read EOF and end.
    fn close(self) {
        for c in &self.conns {
            // SAFETY: our descriptors, closed once.
            unsafe { libc::close(c.fd) };
        }
        // SAFETY: as above.
        unsafe { libc::close(self.epfd) };
    }

    /// One window: every connection keeps one request outstanding until `window` is
    /// over; then the outstanding echoes are awaited and checked. `lat` receives the
    /// latency (ns) of every request sent in the window.
    fn run(&mut self, window: Duration, cpus: Cpus, rep: usize, lat: &mut Vec<u64>) -> Sample {
        lat.clear();
        let side = self.side;
        let vcore_tid = vcore::get(VC).expect("vcore 0").tid();
        let probe = || Probe::take(cpus, vcore_tid, &self.server_tids);
        let before = probe();
        let t0 = parlib::sync::now_ns();
        let end = t0 + window.as_nanos() as u64;
        for c in &mut self.conns {
            c.send(t0);
        }
        let mut outstanding = self.conns.len();
        let mut completed = 0u64; // echoes completed before `end`
        let mut last_echo = t0;
        while outstanding > 0 {
            let now = parlib::sync::now_ns();
            // Sleep in epoll_wait until an echo comes, but not past the window's end.
            let timeout_ms = if now < end { (end - now).div_ceil(1_000_000) as i32 } else { 100 };
            // SAFETY: `events` is ours, with room for as many events as we pass.
            let k = unsafe {
                libc::epoll_wait(self.epfd, self.events.as_mut_ptr(), self.events.len() as i32, timeout_ms)
            };
            if k < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                os_failed("epoll_wait");
            }
            if k == 0 {
                if parlib::sync::now_ns() - last_echo > STALL.as_nanos() as u64 {
                    panic!(
                        "echo: no echo from the {} server for {STALL:?}; {outstanding} of {} requests outstanding",
                        side.name(),
                        self.conns.len()
                    );
                }
                continue;
            }
            for ev in &self.events[..k as usize] {
                let c = &mut self.conns[ev.u64 as usize];
                if !c.receive(side) {
                    continue;
                }
                let now = parlib::sync::now_ns();
                last_echo = now;
                c.check(side);
                lat.push(now - c.sent_ns);
                if now < end {
                    completed += 1;
                    c.send(now);
                } else {
                    outstanding -= 1;
                }
            }
        }
        // After the drain, so that the CPU time read covers every request sent and
        // nothing else: the servers were idle before t0 and are again now.
        let span_ns = parlib::sync::now_ns() - t0;
        let after = probe();
        lat.sort_unstable();
        let rank = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
        Sample {
            rep,
            requests: completed,
            elapsed_ns: end - t0,
            sent: lat.len() as u64,
            p50_ns: rank(0.50),
            p99_ns: rank(0.99),
            max_ns: *lat.last().expect("latencies"),
            span_ns,
            server_cpu_ns: after.server_ns - before.server_ns,
            client_cpu_ns: after.client_ns - before.client_ns,
            server_busy: after.server.busy_since(before.server),
            client_busy: after.client.busy_since(before.client),
            vcore_parks: after.vcore_switches - before.vcore_switches,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the machine did during a window.

/// The CPUs the two ends run on.
#[derive(Clone, Copy)]
struct Cpus {
    /// vcore 0's, where every server runs.
    server: usize,
    /// vcore 1's, where the client runs.
    client: usize,
}

/// One CPU's time so far, in the kernel's ticks (`USER_HZ`), from `/proc/stat`.
#[derive(Clone, Copy)]
struct CpuTicks {
    busy: u64,
    total: u64,
}

impl CpuTicks {
    /// The line of `/proc/stat` that starts with `label` (`"cpu0 "`, or `"cpu "` for all).
    fn read(label: &str) -> CpuTicks {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_else(|e| panic!("echo: /proc/stat: {e}"));
        let line = stat
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("echo: /proc/stat has no `{}` line", label.trim()));
        // user nice system idle iowait irq softirq steal: idle and iowait are idle time;
        // steal (the hypervisor ran something else) counts as neither.
        let v: Vec<u64> = line.split_whitespace().take(8).filter_map(|x| x.parse().ok()).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let idle = at(3) + at(4);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6);
        CpuTicks { busy, total: busy + idle }
    }

    fn of_cpu(cpu: usize) -> CpuTicks {
        CpuTicks::read(&format!("cpu{cpu} "))
    }

    /// The share of the time since `before` that the CPU was busy.
    fn busy_since(self, before: CpuTicks) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return f64::NAN;
        }
        self.busy.saturating_sub(before.busy) as f64 / total as f64
    }
}

/// CPU time task `tid` of this process has used so far, ns: its per-thread CPU clock,
/// named the way the kernel encodes it and glibc's `pthread_getcpuclockid` builds it
/// (`~tid << 3 | CPUCLOCK_PERTHREAD_MASK (4) | CPUCLOCK_SCHED (2)`: Linux
/// `include/linux/posix-timers_types.h`, glibc `kernel-posix-cpu-timers.h`). One system
/// call, so a window's edges can read a thousand of them.
fn task_cpu_ns(tid: i32) -> u64 {
    let clock = (!(tid as libc::clockid_t) << 3) | 4 | 2;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass; a bad clock id is EINVAL.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        os_failed(&format!("clock_gettime(CPU clock of task {tid})"));
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a window's edges read: the CPU time of the side's server tasks and of the client
/// (the calling thread); how busy both CPUs were, whoever ran there (`/proc/stat`); and
/// vcore 0's voluntary context switches (each park of vcore 0 is one).
#[derive(Clone, Copy)]
struct Probe {
    server_ns: u64,
    client_ns: u64,
    server: CpuTicks,
    client: CpuTicks,
    vcore_switches: u64,
}

impl Probe {
    fn take(cpus: Cpus, vcore_tid: i32, server_tids: &[i32]) -> Probe {
        let path = format!("/proc/self/task/{vcore_tid}/status");
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("echo: {path}: {e}"));
        let vcore_switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("echo: {path}: no voluntary_ctxt_switches"));
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        Probe {
            server_ns: server_tids.iter().map(|&t| task_cpu_ns(t)).sum(),
            client_ns: task_cpu_ns(me),
            server: CpuTicks::of_cpu(cpus.server),
            client: CpuTicks::of_cpu(cpus.client),
            vcore_switches,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to `need`, or stops the bench with a message.
fn raise_fd_limit(need: u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        os_failed("getrlimit(RLIMIT_NOFILE)");
    }
    if rl.rlim_cur >= need {
        return;
    }
    if rl.rlim_max < need {
        eprintln!(
            "echo: needs {need} file descriptors ({FDS_PER_CONN} per connection of the largest case, plus {SPARE_FDS}), \
             but RLIMIT_NOFILE's hard limit is {}. Raise it (`ulimit -Hn`, as root) or pick smaller \
             cases (`cargo bench --bench echo -- conn100`).",
            rl.rlim_max
        );
        std::process::exit(1);
    }
    rl.rlim_cur = need;
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        os_failed(&format!("setrlimit(RLIMIT_NOFILE, {need})"));
    }
}

// ---------------------------------------------------------------------------------------
// The driver: a plain Linux thread on the client CPU. It runs the Linux server's setup
// and, as the client, every window.

enum Job {
    /// Start the Linux server, connect `n` clients to it, `n` to the uthread server on
    /// `parlib_port` and `n` to the `stdnet` server on `stdnet_port`, and wait until every
    /// server has accepted all of them.
    Setup { n: usize, parlib_port: u16, stdnet_port: u16 },
    /// One window against `side`.
    Window { side: Side, window: Duration, rep: usize },
    /// Close every connection and join the Linux server's threads.
    Teardown,
}

/// `main` waits here for each job of the driver.
static DONE: Completion = Completion::new();

/// What the driver holds for the current case.
struct CaseConns {
    uthreads: Client,
    stdnet: Client,
    linux: Client,
    linux_listener: i32,
    linux_handlers: Vec<JoinHandle<()>>,
}

fn driver(jobs: mpsc::Receiver<Job>, out: mpsc::Sender<Sample>) {
    let mut cpus: Option<Cpus> = None;
    let mut case: Option<CaseConns> = None;
    // Latencies of one window; room for 2^18, a few times what a 500 ms window holds
    // here, so measured windows do not reallocate.
    let mut lat = Vec::with_capacity(1 << 18);
    for job in jobs {
        // The first job comes after lib_init, when the vcores' CPUs are known.
        let cpus = *cpus.get_or_insert_with(|| {
            let c = Cpus {
                server: vcore::cpu_of(VC).expect("vcore 0"),
                client: vcore::cpu_of(1).expect("vcore 1"),
            };
            pin_to(c.client);
            c
        });
        match job {
            Job::Setup { n, parlib_port, stdnet_port } => {
                let (listener, port) = listen_loopback();
                let acceptor = std::thread::Builder::new()
                    .name("echo-linux-accept".into())
                    .spawn(move || linux_acceptor(listener, n, cpus.server))
                    .expect("start the Linux acceptor");
                let mut linux = Client::connect(Side::Linux, port, n);
                let mut uthreads = Client::connect(Side::Uthreads, parlib_port, n);
                let mut stdnet = Client::connect(Side::StdNet, stdnet_port, n);
                let linux_handlers = acceptor.join().expect("the Linux acceptor panicked");
                harness::wait_until(
                    || {
                        PARLIB_ACCEPTED.load(Ordering::Acquire) == n
                            && STDNET_ACCEPTED.load(Ordering::Acquire) == n
                            && LINUX_TIDS.lock().expect("tid list").len() == n
                    },
                    || eprintln!("echo: still waiting after {STALL_WARNING:?} for every server to accept"),
                );
                linux.server_tids = LINUX_TIDS.lock().expect("tid list").clone();
                let vcore_tid = vcore::get(VC).expect("vcore 0").tid();
                uthreads.server_tids = vec![vcore_tid];
                stdnet.server_tids = vec![vcore_tid];
                case = Some(CaseConns { uthreads, stdnet, linux, linux_listener: listener, linux_handlers });
            }
            Job::Window { side, window, rep } => {
                let c = case.as_mut().expect("a window within a case");
                let client = match side {
                    Side::Uthreads => &mut c.uthreads,
                    Side::StdNet => &mut c.stdnet,
                    Side::Linux => {
                        // The Linux threads get vcore 0's CPU to themselves.
                        harness::wait_until(
                            || harness::is_parked(VC),
                            || eprintln!("echo: still waiting after {STALL_WARNING:?} for vcore 0 to park"),
                        );
                        &mut c.linux
                    }
                };
                let s = client.run(window, cpus, rep, &mut lat);
                out.send(s).expect("main alive");
            }
            Job::Teardown => {
                let c = case.take().expect("a case to end");
                c.uthreads.close();
                c.stdnet.close();
                c.linux.close();
                for h in c.linux_handlers {
                    h.join().expect("a Linux handler panicked");
                }
                LINUX_TIDS.lock().expect("tid list").clear();
                // SAFETY: our listener, closed once.
                unsafe { libc::close(c.linux_listener) };
            }
        }
        DONE.arrive();
    }
}

/// Hands `job` to the driver and blocks `main` until it is done.
fn run_job(jobs: &mpsc::Sender<Job>, job: Job) {
    DONE.reset(1);
    jobs.send(job).expect("driver alive"); // publishes the reset
    DONE.wait();
}

// ---------------------------------------------------------------------------------------
// Cases.

/// One measured window of one side.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rep: usize,
    /// Echoes completed within the window.
    requests: u64,
    elapsed_ns: u64,
    /// Requests sent within the window (all completed and checked): the latency samples.
    sent: u64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    /// From the first send to the last echo of the drain: the span the CPU figures cover.
    span_ns: u64,
    /// CPU time the side's server tasks and the client thread used over the span.
    server_cpu_ns: u64,
    client_cpu_ns: u64,
    /// Share of the span the server CPU (vcore 0's) and the client CPU were busy,
    /// whoever ran there: above the shares of our own tasks when other load took turns.
    server_busy: f64,
    client_busy: f64,
    /// Voluntary context switches of vcore 0's task in the window: its parks.
    vcore_parks: u64,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.requests as f64 * 1e9 / self.elapsed_ns as f64
    }
    /// CPU time of the server's tasks per request, µs: what the server side spent on
    /// each, whether or not the client kept it busy all the time. Over the span, which
    /// serves exactly the requests sent in the window.
    fn server_us_per_req(&self) -> f64 {
        self.server_cpu_ns as f64 / 1e3 / self.sent as f64
    }
    /// The share of one CPU the side's server tasks used over the span.
    fn server_cpu(&self) -> f64 {
        self.server_cpu_ns as f64 / self.span_ns as f64
    }
    /// The share of one CPU the client thread used over the span.
    fn client_cpu(&self) -> f64 {
        self.client_cpu_ns as f64 / self.span_ns as f64
    }
    /// Parks of vcore 0 per 1000 requests served over the span.
    fn parks_per_1000(&self) -> f64 {
        1000.0 * self.vcore_parks as f64 / self.sent as f64
    }
}

struct CaseResult {
    case: &'static str,
    conns: usize,
    uthreads: Vec<Sample>,
    stdnet: Vec<Sample>,
    linux: Vec<Sample>,
}

fn stat(v: &[Sample], f: impl Fn(&Sample) -> f64) -> Stat {
    Stat::of(v.iter().map(f).collect())
}

impl CaseResult {
    fn side(&self, side: Side) -> &[Sample] {
        match side {
            Side::Uthreads => &self.uthreads,
            Side::StdNet => &self.stdnet,
            Side::Linux => &self.linux,
        }
    }
    fn rps(&self, side: Side) -> Stat {
        stat(self.side(side), Sample::rps)
    }
    fn p50_us(&self, side: Side) -> Stat {
        stat(self.side(side), |s| s.p50_ns as f64 / 1e3)
    }
    fn p99_us(&self, side: Side) -> Stat {
        stat(self.side(side), |s| s.p99_ns as f64 / 1e3)
    }
    fn max_us(&self, side: Side) -> Stat {
        stat(self.side(side), |s| s.max_ns as f64 / 1e3)
    }
    fn server_busy(&self, side: Side) -> Stat {
        stat(self.side(side), |s| s.server_busy)
    }
    fn server_cpu(&self, side: Side) -> Stat {
        stat(self.side(side), Sample::server_cpu)
    }
    fn client_cpu(&self, side: Side) -> Stat {
        stat(self.side(side), Sample::client_cpu)
    }
    fn client_busy(&self, side: Side) -> Stat {
        stat(self.side(side), |s| s.client_busy)
    }
    fn server_us_per_req(&self, side: Side) -> Stat {
        stat(self.side(side), Sample::server_us_per_req)
    }
    fn parks_per_1000(&self, side: Side) -> Stat {
        stat(self.side(side), Sample::parks_per_1000)
    }
    /// `side`'s requests/s ÷ Linux requests/s, of the medians: above 1, `side` serves more.
    fn ratio(&self, side: Side) -> f64 {
        self.rps(side).median / self.rps(Side::Linux).median
    }
    /// Linux p99 ÷ `side`'s p99: above 1, `side` answers sooner.
    fn p99_ratio(&self, side: Side) -> f64 {
        self.p99_us(Side::Linux).median / self.p99_us(side).median
    }
    /// Linux ÷ `side`'s server-CPU time per request: above 1, `side` spends less.
    fn cpu_ratio(&self, side: Side) -> f64 {
        self.server_us_per_req(Side::Linux).median / self.server_us_per_req(side).median
    }
    /// `side`'s goal ratio and whether it was met, in the case the goals are for and for a
    /// side that has one.
    fn goal(&self, side: Side) -> Option<(f64, bool)> {
        let want = side.goal_ratio().filter(|_| self.case == GOAL_CASE)?;
        Some((want, self.ratio(side) >= want))
    }
}

/// One window of `side`.
fn window(
    jobs: &mpsc::Sender<Job>,
    results: &mpsc::Receiver<Sample>,
    side: Side,
    w: Duration,
    rep: usize,
) -> Sample {
    run_job(jobs, Job::Window { side, window: w, rep });
    results.try_recv().expect("the driver sends a window's sample before it is done")
}

fn run_case(
    jobs: &mpsc::Sender<Job>,
    results: &mpsc::Receiver<Sample>,
    s: &Settings,
    (case, n): (&'static str, usize),
) -> CaseResult {
    // The uthread servers: a listener and an acceptor uthread each, on vcore 0, which
    // runs them while `main` waits for the driver's setup.
    let (listener, port) = listen_loopback();
    PARLIB_ACCEPTED.store(0, Ordering::Relaxed);
    PARLIB_HANDLERS_DONE.reset(n);
    spawn(move || parlib_acceptor(listener, n));
    let (stdnet_fd, stdnet_port) = listen_loopback();
    // SAFETY: `stdnet_fd` is the listening TCP socket listen_loopback just made, open and
    // held by nothing else: the TcpListener takes it over and is the only one to close it.
    let stdnet_listener = unsafe { TcpListener::from_raw_fd(stdnet_fd) };
    STDNET_ACCEPTED.store(0, Ordering::Relaxed);
    STDNET_HANDLERS_DONE.reset(n);
    spawn(move || stdnet_acceptor(stdnet_listener, n));
    run_job(jobs, Job::Setup { n, parlib_port: port, stdnet_port });

    let warm = s.window / 2;
    for side in Side::ALL {
        window(jobs, results, side, warm, 0);
    }
    let w = s.window;
    let mut by_side = Side::ALL.map(|side| move |rep| window(jobs, results, side, w, rep));
    let mut measure: Vec<&mut dyn FnMut(usize) -> Sample> =
        by_side.iter_mut().map(|f| f as &mut dyn FnMut(usize) -> Sample).collect();
    let sides = harness::alternate(s.reps, &mut measure);
    let [uthreads, stdnet, linux]: [Vec<Sample>; 3] = sides.try_into().expect("one series per side");

    run_job(jobs, Job::Teardown);
    PARLIB_HANDLERS_DONE.wait();
    STDNET_HANDLERS_DONE.wait();
    let _ = io::close(listener);
    let errors = SERVER_ERRORS.load(Ordering::Relaxed);
    assert_eq!(errors, 0, "echo: {case}: {errors} server-side read/write failures");
    CaseResult { case, conns: n, uthreads, stdnet, linux }
}

// ---------------------------------------------------------------------------------------
// Output.

fn fmt_stat(st: Stat, digits: usize) -> String {
    format!("{:.*} ({:.*}-{:.*})", digits, st.median, digits, st.min, digits, st.max)
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | side | requests/s (min-max) | p50 µs | p99 µs (min-max) | max µs | server CPU | CPU 0 busy | client CPU | CPU 1 busy | server CPU µs/request | vcore parks /1000 req | ratio | p99 ratio | CPU µs ratio | goal |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        for side in Side::ALL {
            let case = if side == Side::Uthreads { r.case } else { "" };
            // The uthread sides against the baseline, each on its own row.
            let (ratio, p99r, cpur, goal, parks) = if side == Side::Linux {
                (String::new(), String::new(), String::new(), String::new(), "-".into())
            } else {
                let goal = match r.goal(side) {
                    Some((want, met)) => format!("ratio ≥ {want}: {}", if met { "met" } else { "NOT met" }),
                    None => "-".into(),
                };
                (
                    format!("**{:.2}**", r.ratio(side)),
                    format!("{:.2}", r.p99_ratio(side)),
                    format!("{:.2}", r.cpu_ratio(side)),
                    goal,
                    format!("{:.1}", r.parks_per_1000(side).median),
                )
            };
            let what = match side {
                Side::Uthreads => format!("{} uthreads on vcore 0", r.conns),
                Side::StdNet => format!("{} std::net uthreads on vcore 0", r.conns),
                Side::Linux => format!("{} Linux threads on one CPU", r.conns),
            };
            let _ = writeln!(
                t,
                "| {case} | {what} | {} | {:.1} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {parks} | {ratio} | {p99r} | {cpur} | {goal} |",
                fmt_stat(r.rps(side), 0),
                r.p50_us(side).median,
                fmt_stat(r.p99_us(side), 1),
                r.max_us(side).median,
                r.server_cpu(side).median,
                r.server_busy(side).median,
                r.client_cpu(side).median,
                r.client_busy(side).median,
                r.server_us_per_req(side).median,
            );
        }
    }
    t
}

/// The `uthreads` side's RESULT line: `case=<case>`, its keys `uthread_*`.
fn result_line(r: &CaseResult) -> String {
    let (u, l) = (Side::Uthreads, Side::Linux);
    format!(
        "RESULT echo case={} conns={} msg_bytes={MSG} uthread_rps={:.0} linux_rps={:.0} \
         uthread_p50_us={:.1} uthread_p99_us={:.1} linux_p50_us={:.1} linux_p99_us={:.1} \
         uthread_server_cpu={:.2} linux_server_cpu={:.2} uthread_client_cpu={:.2} linux_client_cpu={:.2} \
         uthread_cpu0_busy={:.2} linux_cpu0_busy={:.2} uthread_cpu1_busy={:.2} linux_cpu1_busy={:.2} \
         uthread_cpu_us_per_req={:.2} linux_cpu_us_per_req={:.2} parks_per_1000={:.1} p99_ratio={:.2} ratio={:.2}",
        r.case,
        r.conns,
        r.rps(u).median,
        r.rps(l).median,
        r.p50_us(u).median,
        r.p99_us(u).median,
        r.p50_us(l).median,
        r.p99_us(l).median,
        r.server_cpu(u).median,
        r.server_cpu(l).median,
        r.client_cpu(u).median,
        r.client_cpu(l).median,
        r.server_busy(u).median,
        r.server_busy(l).median,
        r.client_busy(u).median,
        r.client_busy(l).median,
        r.server_us_per_req(u).median,
        r.server_us_per_req(l).median,
        r.parks_per_1000(u).median,
        r.p99_ratio(u),
        r.ratio(u)
    )
}

/// The `stdnet` side's RESULT line: `case=<case>-stdnet`, then the figures the goal is
/// about (`rps`, `linux_rps`, `ratio`), then the keys of [`result_line`] for this side,
/// unprefixed, with the same run's Linux figures beside them.
fn stdnet_result_line(r: &CaseResult) -> String {
    let (s, l) = (Side::StdNet, Side::Linux);
    format!(
        "RESULT echo case={}-stdnet rps={:.0} linux_rps={:.0} ratio={:.2} conns={} msg_bytes={MSG} \
         p50_us={:.1} p99_us={:.1} linux_p50_us={:.1} linux_p99_us={:.1} \
         server_cpu={:.2} linux_server_cpu={:.2} client_cpu={:.2} linux_client_cpu={:.2} \
         cpu0_busy={:.2} linux_cpu0_busy={:.2} cpu1_busy={:.2} linux_cpu1_busy={:.2} \
         cpu_us_per_req={:.2} linux_cpu_us_per_req={:.2} parks_per_1000={:.1} p99_ratio={:.2}",
        r.case,
        r.rps(s).median,
        r.rps(l).median,
        r.ratio(s),
        r.conns,
        r.p50_us(s).median,
        r.p99_us(s).median,
        r.p50_us(l).median,
        r.p99_us(l).median,
        r.server_cpu(s).median,
        r.server_cpu(l).median,
        r.client_cpu(s).median,
        r.client_cpu(l).median,
        r.server_busy(s).median,
        r.server_busy(l).median,
        r.client_busy(s).median,
        r.client_busy(l).median,
        r.server_us_per_req(s).median,
        r.server_us_per_req(l).median,
        r.parks_per_1000(s).median,
        r.p99_ratio(s)
    )
}

/// Every window: one line per case, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from(
        "case,side,rep,requests,elapsed_ns,rps,sent,span_ns,p50_ns,p99_ns,max_ns,server_cpu_ns,client_cpu_ns,cpu0_busy,cpu1_busy,vcore_parks\n",
    );
    for r in results {
        for side in Side::ALL {
            for w in r.side(side) {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{:.0},{},{},{},{},{},{},{},{:.3},{:.3},{}",
                    r.case,
                    side.name(),
                    w.rep,
                    w.requests,
                    w.elapsed_ns,
                    w.rps(),
                    w.sent,
                    w.span_ns,
                    w.p50_ns,
                    w.p99_ns,
                    w.max_ns,
                    w.server_cpu_ns,
                    w.client_cpu_ns,
                    w.server_busy,
                    w.client_busy,
                    w.vcore_parks
                );
            }
        }
    }
    csv
}

/// Grouped bars on a log scale: median requests/s per case and side, min-max whiskers,
/// the median above each bar, and each uthread side's goal as a green line over its bar
/// of [`GOAL_CASE`].
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    // In the order of Side::ALL, so bar k of a case is side k.
    let sides = [
        (Side::Uthreads, "uthreads on one vcore (parlib-syscalls io)", RGBColor(0x1f, 0x77, 0xb4)),
        (Side::StdNet, "uthreads on one vcore (std::net TcpStream)", RGBColor(0xff, 0x7f, 0x0e)),
        (Side::Linux, "Linux threads on one core (blocking read/write)", RGBColor(0xd6, 0x27, 0x28)),
    ];
    let goal_color = RGBColor(0x2c, 0xa0, 0x2c);
    // Bar k of 3 in case i: centred at i - 0.28, i or i + 0.28, 0.24 wide.
    let place = |case: usize, k: usize| (case as f64 - 0.28 + 0.28 * k as f64, 0.12);
    // Each goal line: its bar (case, side) and its height.
    let goals: Vec<(usize, usize, f64)> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.case == GOAL_CASE)
        .flat_map(|(i, r)| {
            sides.iter().enumerate().filter_map(move |(k, &(side, _, _))| {
                Some((i, k, side.goal_ratio()? * r.rps(Side::Linux).median))
            })
        })
        .collect();
    let all: Vec<Stat> = results.iter().flat_map(|r| Side::ALL.map(|side| r.rps(side))).collect();
    let lo = all.iter().map(|s| s.min).fold(f64::INFINITY, f64::min) / 3.0;
    let hi = all.iter().map(|s| s.max).chain(goals.iter().map(|g| g.2)).fold(0.0, f64::max) * 3.0;
    let names: Vec<String> = results
        .iter()
        .map(|r| {
            format!("{}: ratio {:.2}, std::net {:.2}", r.case, r.ratio(Side::Uthreads), r.ratio(Side::StdNet))
        })
        .collect();
    let frame = report::Frame {
        title:
            "echo: 64-byte loopback TCP echo, median requests/s (min-max over repetitions), higher is better",
        title_size: 17,
        band: 82,
        head,
        names: &names,
        y_desc: "requests/s (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperRight,
    };
    report::bar_chart(path, &frame, |chart| {
        for (k, (side, label, c)) in sides.into_iter().enumerate() {
            let bars: Vec<(f64, f64, Stat)> = results
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let (x, w) = place(i, k);
                    (x, w, r.rps(side))
                })
                .collect();
            report::stat_bars(chart, &bars, lo, c, label, 12)?;
        }
        if !goals.is_empty() {
            chart
                .draw_series(goals.iter().map(|&(i, k, g)| {
                    let (x, w) = place(i, k);
                    PathElement::new(vec![(x - w - 0.03, g), (x + w + 0.03, g)], goal_color.stroke_width(3))
                }))?
                .label(format!(
                    "goals at {GOAL_CASE}: {GOAL_RATIO} x Linux (io), {STDNET_GOAL_RATIO} x Linux (std::net)"
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 12, y)], goal_color.stroke_width(3))
                });
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let names: Vec<&'static str> = CASES.iter().map(|&(c, _)| c).collect();
    let filter = harness::CaseFilter::new(&args, &names);
    let cases: Vec<(&'static str, usize)> = CASES.into_iter().filter(|(c, _)| filter.wants(c)).collect();
    let most = cases.iter().map(|&(_, n)| n).max().unwrap_or(0) as u64;
    raise_fd_limit(FDS_PER_CONN * most + SPARE_FDS);
    let machine = Machine::probe();
    let busy_before = machine::busy_percent(Duration::from_millis(500));

    let (jobs, job_rx) = mpsc::channel();
    let (sample_tx, samples) = mpsc::channel();
    // Before lib_init, so it carries no vcore pin; it pins itself to the client CPU. A
    // failed check there ends the process: `main` would otherwise wait for it forever.
    std::thread::Builder::new()
        .name("echo-driver".into())
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver(job_rx, sample_tx))).is_err() {
                std::process::exit(101);
            }
        })
        .expect("start the driver");

    start_uthreads(); // from here on, `main` is a uthread on vcore 0
    parlib::alarms::init().expect("parlib_alarms::init");
    parlib::syscalls::init().expect("parlib_syscalls::init");
    assert!(
        vcore::max_vcores() >= 2,
        "echo: needs 2 vcores (one for the servers, one CPU for the client); this process has {}",
        vcore::max_vcores()
    );
    let head = machine.header(
        mode.name(),
        &format!(
            "{} reps x {} ms windows, medians; {MSG}-byte requests",
            settings.reps,
            settings.window.as_millis()
        ),
    );
    println!(
        "echo: loopback TCP echo, N uthreads on one vcore (parlib-syscalls io, or std::net) vs N Linux threads on one core, client on the other CPU"
    );
    print!("{head}");
    println!("  other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run");
    println!();

    let mut results = Vec::new();
    let started = Instant::now();
    for case in cases {
        let r = run_case(&jobs, &samples, settings, case);
        let (u, sn, l) = (Side::Uthreads, Side::StdNet, Side::Linux);
        println!(
            "  {:<9} requests/s: uthreads {:>8.0}   std::net {:>8.0}   Linux {:>8.0}   ratios {:.2}, {:.2}   \
             p99 µs: {:.1}, {:.1} vs {:.1}",
            r.case,
            r.rps(u).median,
            r.rps(sn).median,
            r.rps(l).median,
            r.ratio(u),
            r.ratio(sn),
            r.p99_us(u).median,
            r.p99_us(sn).median,
            r.p99_us(l).median,
        );
        results.push(r);
    }
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());
    if mode == Mode::Smoke {
        let checked = |side| results.iter().flat_map(|r| r.side(side)).map(|s| s.sent).sum::<u64>();
        println!(
            "  checked every byte of {} echoes (uthreads {}, std::net {}, Linux {})",
            Side::ALL.map(checked).iter().sum::<u64>(),
            checked(Side::Uthreads),
            checked(Side::StdNet),
            checked(Side::Linux)
        );
    }

    let note = format!(
        "Medians of the repetitions (min-max over them). Two uthread servers on vcore 0, one \
         calling parlib-syscalls' io, one using std::net only (TcpListener::accept, TcpStream \
         Read/Write), each compared with the same run's Linux-thread server: ratio = that \
         side's requests/s ÷ Linux requests/s; p99 ratio = Linux p99 ÷ that side's p99; CPU µs \
         ratio = Linux ÷ that side's CPU time of the server's tasks per request. server CPU and \
         client CPU: the share of one CPU the server's tasks (vcore 0's, or all Linux \
         handlers') and the client thread used (their CPU clocks); CPU 0 busy and CPU 1 busy: \
         how busy those CPUs were whoever ran there (/proc/stat, USER_HZ ticks), so their \
         excess over ours is other load. Other load: the CPUs were {busy_before:.0}% busy in \
         the 0.5 s before the run."
    );
    let report = Report {
        bench: "echo",
        title: "loopback TCP echo, uthreads on one vcore (io, std::net) vs Linux threads on one core",
        head: &head,
        note: &note,
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().flat_map(|r| [result_line(r), stdnet_result_line(r)]).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
