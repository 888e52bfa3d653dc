//! Comparison benchmark: kweb, the thesis' thread-based web server (`kweb/`, `DESIGN.md`
//! §11), in its three variants, against nginx, serving the same files to the same load
//! generator in the same run (§12).
//!
//! | server | what serves the requests |
//! |---|---|
//! | `linux` | kweb on Linux threads: 100 worker threads and a poller, kernel-scheduled, all on the server CPU |
//! | `upthread` | kweb on `parlib-upthread` threads on one vcore (`--vcores 1`), upthread's scheduler |
//! | `custom` | kweb on one vcore (`--vcores 1`) under its own scheduler, `KwebSched` |
//! | `nginx` (baseline) | nginx, one process (no master, one worker), tuned as below |
//!
//! Each server runs in a process of its own pinned to one CPU (the *server CPU*, the
//! second CPU this process may use). A kweb server is this bench's own binary started
//! again (`common/server.rs`), which calls `kweb::run` with kweb's defaults (100
//! workers, burst 10) but an idle timeout of [`IDLE_TIMEOUT`] and, for the uthread
//! variants, one vcore: starting upthread or the custom scheduler makes a process a
//! parlib runtime for good, so no two variants may share one. Every server listens on
//! 127.0.0.1 and serves the same root, a temporary directory holding `empty.html` (0
//! bytes) and `1k.bin`, `64k.bin`, `1m.bin` of random bytes.
//!
//! | case | load: [`CONNS`] connections, each keeping this many requests outstanding, for |
//! |---|---|
//! | `pipelined` | 100 in flight each, `GET /empty.html`: the thesis' load (Klues 2015, the kweb evaluation, 100 connections x 100 in flight), over a time window instead of its 1000 requests per connection |
//! | `keepalive` | 1 in flight each, `GET /empty.html`: a request waits for the previous answer |
//! | `files` | 1 in flight each, the URLs `1k.bin`, `64k.bin`, `1m.bin` in turn (connection *i* starts at URL *i* mod 3): body bytes, `sendfile` |
//! | `idle10k` | `keepalive`'s load while [`IDLE`] more connections stay open and silent: what idle connections cost a server, in throughput and memory |
//!
//! # The load generator, and why it is fair to every server
//!
//! `kweb::load` (the `kweb-load` binary's library), run in this process: one load thread
//! pinned to the *load CPU* (the first CPU this process may use; the rest of the bench
//! runs there too), one epoll set over all the connections. It is closed-loop with a
//! fixed depth: exactly connections x in-flight requests are outstanding at any time, so
//! a slower server gets fewer requests, never a queue that grows without bound. Every
//! server gets byte-identical requests, and every response costs the generator the same
//! (one head parse, no copy of the body); every response is checked against a probe of
//! its URL (status and `Content-Length`, so also the order of pipelined answers), and
//! any failed request is an error, printed loudly (a smoke test fails on it). The servers
//! take turns with the same generator in alternating order (`harness::alternate`), while
//! the others sit idle on the server CPU, blocked in `epoll_wait` or parked.
//!
//! The generator has one CPU. If it saturates, every server is capped at its rate and the
//! ratios shrink towards 1: the table gives the load thread's share of its CPU (`load
//! CPU`, its thread CPU time over the measured span), so a client-bound window shows.
//! On loopback the kernel's receive path of a `send` runs on the sending CPU, so part of
//! every server's TCP work lands on the load CPU, alike for all.
//!
//! A second generator, wrk (`wrk -t1 -c100 -d<secs>s`, pinned to the load CPU),
//! cross-checks the `keepalive` case if it is installed (`wrk_rps`). It is another
//! client, not a referee: it spends more CPU per request than kweb-load, so it saturates
//! sooner and bunches the fastest servers at its own limit; it has no warm-up, runs
//! whole seconds, and checks no more than the status of a response (its socket errors
//! and non-2xx answers are printed loudly).
//!
//! # nginx, and why it is configured so
//!
//! The thesis' tuning, so that nginx does the least work per request a static server can:
//!
//! ```text
//! worker_processes 1; daemon off; master_process off;
//! events { use epoll; multi_accept on; worker_connections 20000; }
//! http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
//!        keepalive_requests 4294967295; keepalive_timeout 600;
//!        open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;
//!        types { text/html html; } default_type application/octet-stream;
//!        server { listen 127.0.0.1:<port>; root <root>; } }
//! ```
//!
//! One process on one CPU, as each kweb server; no log writes; files sent with
//! `sendfile` and kept open; a connection is never closed for its request count or (in a
//! run) for idling; 20 000 connections allowed, for `idle10k`. Its pid file, error log
//! and temporary paths go to a directory of the bench's own, so it needs no root and
//! touches no system nginx. If no `nginx` is on `PATH` (or at `/usr/sbin/nginx`) the
//! bench says how to install it (`kweb/install-deps.sh`) and compares the kweb variants
//! with each other only (`nginx_rps=nan`).
//!
//! # Windows, repetitions, figures
//!
//! Per case, R repetitions of one window per server, the servers' order reversed on
//! every other repetition. A window is one `kweb::load::run`: it connects, loads for a
//! warm-up whose responses are checked but not counted, then for the measured window,
//! then waits for the outstanding answers. Figures are medians over the R windows:
//! requests/s (responses completed from the warm-up's end to the last answer ÷ that
//! span), the latency of a request from the `send` that carried it to the `recv` that
//! completed its response, p50, p99 and max, and:
//!
//! * `max` near the window's length means some connection waited through most of it. A
//!   server that serves some connections at the expense of others shows there, not in
//!   p99: a starved connection completes few requests, so few samples (with 100 x 100 in
//!   flight, by Little's law the mean latency is 10 000 ÷ requests/s, whatever p99 says);
//! * `vs nginx` = the server's requests/s ÷ nginx's (`ratio` in the RESULT lines: above
//!   1, kweb serves more); `vs linux` = ÷ kweb on Linux threads (`linux_ratio`);
//! * `idle10k`: `active-only` is the same server's `keepalive` requests/s, the same load
//!   without idle connections (picking `idle10k` alone runs `keepalive` too); `RSS/idle`
//!   = (the server's peak `VmRSS` with the idle connections open − its `VmRSS` just
//!   before they were opened) ÷ [`IDLE`], KiB, from `/proc/<pid>/status`. That is user
//!   memory only: socket buffers are the kernel's, the same for every server. Since
//!   neither kweb's connection arena nor an allocator gives memory back, every `idle10k`
//!   window runs on a freshly started server, loaded with the active connections alone
//!   for a warm-up before its "before" reading;
//! * `wrk`: wrk's median requests/s over its own repetitions of `keepalive`.
//!
//! Run: `cargo bench --bench kweb -- --quick` (3 windows of 0.5 s per server and case,
//! 1 wrk run of 1 s; about 50 s; prints only) or `cargo bench --bench kweb` (5 windows
//! of 3 s, 3 wrk runs of 3 s; about 6 minutes; also writes `results.md`, `results.csv`
//! and `kweb.svg` under `<target>/parlib-bench/kweb/`). Arguments that are not flags pick
//! cases by name (`-- --quick pipelined`). The output ends with one RESULT line per case
//! and kweb variant (see `BENCHMARKS.md`):
//!
//! ```text
//! RESULT kweb case=<case>-<variant> rps=<median> nginx_rps=<nginx median> linux_rps=<kweb linux median> p99_us=<median p99> ratio=<rps ÷ nginx_rps> ...
//! ```
//!
//! with `rss_per_idle_kib=` and `active_only_rps=` on the `idle10k` lines and `wrk_rps=`,
//! `nginx_wrk_rps=` on the `keepalive` lines when wrk ran. Without `--bench` the binary
//! runs a smoke test: one short window per case and server (with nginx if installed, never
//! wrk; `idle10k` with [`SMOKE_IDLE`] idle connections), which fails if any request fails,
//! and prints no RESULT lines.
//!
//! The header names no vcore count: this process runs none, and each uthread server has
//! one vcore, on the server CPU.
//!
//! Needs two CPUs (with one, the servers and the load share it, and the bench says so)
//! and, for `idle10k`, about [`IDLE`] + [`SPARE_FDS`] descriptors in this process and in
//! each server: `RLIMIT_NOFILE` is raised to its hard limit (the servers inherit it), and
//! `idle10k` is skipped with a message if that is too low.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kweb::config::Variant;
use kweb::load::{self, Spec};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;
#[path = "common/server.rs"]
mod server;

use harness::Mode;
use machine::Machine;
use report::{cell, num, stat_cell, Report, Stat};
use server::{pin_child, ServerProcess, START_TIMEOUT};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Measured windows per case and server; odd, so the median is a sample.
    reps: usize,
    /// Load before each measured window, checked but not counted: the connections are
    /// fresh, so this covers their set-up on the server and the first reads of the files.
    warmup: Duration,
    /// Length of one measured window.
    window: Duration,
    /// Idle connections of the `idle10k` case.
    idle: usize,
    /// wrk runs per server in the `keepalive` case (0: none).
    wrk_reps: usize,
    /// Length of one wrk run, whole seconds (wrk takes no fractions).
    wrk_secs: u32,
}

/// Without `--bench`: one short window per case and server, to check that every server
/// answers every case right. No wrk (it runs whole seconds), no RESULT lines, no files.
const SMOKE: Settings = Settings {
    reps: 1,
    warmup: Duration::from_millis(20),
    window: Duration::from_millis(100),
    idle: SMOKE_IDLE,
    wrk_reps: 0,
    wrk_secs: 1,
};

/// `--quick`: 3 windows of 0.5 s per server and case, the smallest odd count whose
/// median ignores an outlier: 4 cases x 4 servers x 3 x 0.6 s = 29 s of windows, plus
/// the `idle10k` connects and server starts and 4 s of wrk, within a minute.
const QUICK: Settings = Settings {
    reps: 3,
    warmup: Duration::from_millis(100),
    window: Duration::from_millis(500),
    idle: IDLE,
    wrk_reps: 1,
    wrk_secs: 1,
};

/// Full run: 5 windows of 3 s, a median robust to two outliers; 4 x 4 x 5 x 3.5 s = 280
/// s of windows and 4 x 3 x 3 s of wrk, about 6 minutes in all. At the slowest rate seen
/// (`files`, thousands of requests/s) a window still holds over 10 000 requests, so its
/// p99 rests on 100 samples or more.
const FULL: Settings = Settings {
    reps: 5,
    warmup: Duration::from_millis(500),
    window: Duration::from_secs(3),
    idle: IDLE,
    wrk_reps: 3,
    wrk_secs: 3,
};

/// Load connections of every case: the thesis' 100 (Klues 2015, the kweb evaluation),
/// as many as kweb's default pool has workers.
const CONNS: usize = 100;

/// Idle connections of `idle10k`: the C10K problem's ten thousand (Kegel, "The C10K
/// problem", 1999), where a server that spends a thread or a buffer per connection
/// shows it.
const IDLE: usize = 10_000;

/// `idle10k`'s idle connections in a smoke test: enough to exercise the path, few enough
/// for any CI machine's descriptor limit and a run of seconds.
const SMOKE_IDLE: usize = 1000;

/// Descriptors a process needs besides the connections: kweb-load's own spare (64: std's,
/// its epoll set, a probe), the servers' (listener, epoll sets, eventfds, timerfds, open
/// files), the pipes to the servers, with room to spare.
const SPARE_FDS: u64 = 256;

/// kweb's idle timeout in the bench: far above any window, so no connection of a run
/// is closed for idling (kweb's default is 75 s, nginx's `keepalive_timeout` is 600 s
/// here; nginx closes a connection that never sent a request after
/// `client_header_timeout`, 60 s, also beyond every window).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the server's `VmRSS` is read during an `idle10k` window: each reading costs
/// the load CPU tens of µs, so 20 a second take about 0.1% of it.
const RSS_POLL: Duration = Duration::from_millis(50);

/// The bodies served: name and size. `empty.html` is the thesis' empty file (only the
/// head travels); the others step from one segment to many.
const FILES: [(&str, usize); 4] =
    [("empty.html", 0), ("1k.bin", 1024), ("64k.bin", 64 * 1024), ("1m.bin", 1024 * 1024)];

// ---------------------------------------------------------------------------------------
// Cases.

/// One workload.
struct Case {
    name: &'static str,
    /// Requests each connection keeps outstanding.
    in_flight: usize,
    /// URL paths, sent in turn.
    urls: &'static [&'static str],
    /// Whether the case holds [`Settings::idle`] idle connections open.
    idle: bool,
}

const CASES: [Case; 4] = [
    Case { name: "pipelined", in_flight: 100, urls: &["/empty.html"], idle: false },
    Case { name: "keepalive", in_flight: 1, urls: &["/empty.html"], idle: false },
    Case { name: "files", in_flight: 1, urls: &["/1k.bin", "/64k.bin", "/1m.bin"], idle: false },
    Case { name: "idle10k", in_flight: 1, urls: &["/empty.html"], idle: true },
];

/// The case whose requests/s is `idle10k`'s active-only figure, and that wrk repeats.
const ACTIVE_ONLY: &str = "keepalive";

// ---------------------------------------------------------------------------------------
// The servers.

/// Which server a window measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Kweb(Variant),
    Nginx,
}

impl Server {
    /// The kweb variants, in the order of a repetition's first half and of the table.
    const KWEB: [Server; 3] =
        [Server::Kweb(Variant::Linux), Server::Kweb(Variant::Upthread), Server::Kweb(Variant::Custom)];

    fn name(self) -> &'static str {
        match self {
            Server::Kweb(Variant::Linux) => "linux",
            Server::Kweb(Variant::Upthread) => "upthread",
            Server::Kweb(Variant::Custom) => "custom",
            Server::Nginx => "nginx",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Server::Kweb(Variant::Linux) => "kweb, Linux threads",
            Server::Kweb(Variant::Upthread) => "kweb, upthread, 1 vcore",
            Server::Kweb(Variant::Custom) => "kweb, custom scheduler, 1 vcore",
            Server::Nginx => "nginx, 1 process",
        }
    }
}

/// What every server start needs.
struct Setup {
    /// The temporary directory: the served root beneath it, and each nginx's files.
    dir: PathBuf,
    /// The served root.
    root: PathBuf,
    /// The nginx binary, if installed.
    nginx: Option<PathBuf>,
    /// The wrk binary, if installed.
    wrk: Option<PathBuf>,
    /// The CPU every server is pinned to.
    server_cpu: usize,
    /// The CPU of the load generator, wrk and the rest of this process.
    load_cpu: usize,
    /// nginx starts so far, to give each its own directory.
    nginx_starts: AtomicUsize,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server process (dropping it stops the server, `server::ServerProcess`), and what
/// this bench knows of it.
struct Running {
    server: Server,
    process: ServerProcess,
    /// An nginx's directory (configuration, error log), for its error log.
    nginx_dir: Option<PathBuf>,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The server's resident memory, KiB (`VmRSS`), or NaN if it cannot be read.
    fn rss_kib(&self) -> f64 {
        rss_kib(self.pid())
    }

    /// What went wrong with the server, if it has exited: for messages.
    fn exit_note(&mut self) -> String {
        let mut note = match self.process.exited() {
            Some(status) => format!(" (the {} server has exited: {status})", self.server.name()),
            None => String::new(),
        };
        if let Some(dir) = &self.nginx_dir {
            if let Ok(log) = std::fs::read_to_string(dir.join("error.log")) {
                if !log.trim().is_empty() {
                    let _ = write!(note, "\nnginx's error log:\n{log}");
                }
            }
        }
        note
    }
}

/// Starts `server` on the server CPU and waits until it answers.
fn start(server: Server, setup: &Setup) -> Running {
    let mut running = match server {
        Server::Kweb(_) => start_kweb(server, setup),
        Server::Nginx => start_nginx(setup),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while !server::answers(running.process.port, "/empty.html") {
        if Instant::now() > deadline || running.process.exited().is_some() {
            let note = running.exit_note();
            panic!(
                "kweb bench: the {} server does not answer GET /empty.html on port {}{note}",
                server.name(),
                running.process.port
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running
}

/// A kweb server: this binary again (`server::spawn_kweb`), with kweb's defaults (100
/// workers, burst 10) but an idle timeout of [`IDLE_TIMEOUT`] and, for the uthread
/// variants, one vcore.
fn start_kweb(server: Server, setup: &Setup) -> Running {
    let mut args: Vec<String> = vec!["--variant".into(), server.name().into(), "--root".into()];
    args.push(setup.root.display().to_string());
    args.extend(["--idle-timeout".into(), IDLE_TIMEOUT.as_secs().to_string()]);
    if server != Server::Kweb(Variant::Linux) {
        args.extend(["--vcores".into(), "1".into()]);
    }
    let label = format!("kweb bench: the {} server", server.name());
    Running { server, process: server::spawn_kweb(label, &args, &[], setup.server_cpu), nginx_dir: None }
}

/// The nginx configuration (module docs), with its files in `dir`.
fn nginx_conf(dir: &Path, root: &Path, port: u16) -> String {
    let (d, r) = (dir.display(), root.display());
    format!(
        "worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ use epoll; multi_accept on; worker_connections 20000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 4294967295;
    keepalive_timeout 600;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path {d};
    proxy_temp_path {d};
    fastcgi_temp_path {d};
    uwsgi_temp_path {d};
    scgi_temp_path {d};
    types {{ text/html html; }}
    default_type application/octet-stream;
    server {{ listen 127.0.0.1:{port}; root {r}; }}
}}
"
    )
}

/// nginx with [`nginx_conf`] in a directory of its own, on a port free just before.
fn start_nginx(setup: &Setup) -> Running {
    let nginx = setup.nginx.as_ref().expect("nginx is installed");
    let n = setup.nginx_starts.fetch_add(1, Ordering::Relaxed);
    let dir = setup.dir.join(format!("nginx-{n}"));
    std::fs::create_dir_all(&dir).expect("kweb bench: create nginx's directory");
    // A port the kernel says is free; nginx binds it a moment later (nothing else here
    // picks ports).
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("kweb bench: find a free port")
        .port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, &setup.root, port)).expect("kweb bench: write nginx.conf");
    let mut cmd = Command::new(nginx);
    // -e: the error log before the configuration is read, which would otherwise be the
    // system's (nginx 1.19.5 and later).
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    pin_child(&mut cmd, setup.server_cpu);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("kweb bench: cannot start {}: {e}", nginx.display()));
    let process = ServerProcess::new("kweb bench: the nginx server".into(), child, port, libc::SIGTERM);
    Running { server: Server::Nginx, process, nginx_dir: Some(dir) }
}

/// `VmRSS` of process `pid`, KiB, or NaN.
fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------
// Setting up: descriptors, CPUs, the root, the tools.

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the servers inherit
/// it). Returns the limit.
fn raise_fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return rl.rlim_max;
        }
    }
    rl.rlim_cur
}

/// The first program called `name` on `PATH`, or in `/usr/sbin` (where Debian puts nginx,
/// often not on a user's `PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// `<tmp>/kweb-bench-<pid>/root` with [`FILES`], each of random bytes: nothing a server
/// or the kernel could compress or share. The generator is SplitMix64
/// (`kweb::splitmix`), seeded from the clock.
fn make_root() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("kweb-bench-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("kweb bench: create {}: {e}", root.display()));
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos()) as u64;
    let mut rng = kweb::splitmix::SplitMix64::new(seed);
    let mut next = move || rng.next_u64();
    for (name, size) in FILES {
        let bytes: Vec<u8> = (0..size.div_ceil(8)).flat_map(|_| next().to_le_bytes()).take(size).collect();
        std::fs::write(root.join(name), bytes).unwrap_or_else(|e| panic!("kweb bench: write {name}: {e}"));
    }
    (dir, root)
}

// ---------------------------------------------------------------------------------------
// Windows.

/// One window of one server: what kweb-load reported, and for `idle10k` the server's
/// memory before and with the idle connections.
struct Window {
    rep: usize,
    r: load::Report,
    /// `VmRSS` before the idle connections were opened, KiB (NaN outside `idle10k`).
    rss_before_kib: f64,
    /// Peak `VmRSS` while they were open, KiB (NaN outside `idle10k`).
    rss_idle_kib: f64,
}

impl Window {
    /// The load thread's CPU time over the measured span: 1 is a saturated generator.
    fn load_cpu(&self) -> f64 {
        let ms = self.r.elapsed.as_secs_f64() * 1000.0;
        if ms > 0.0 {
            self.r.cpu_ms / ms
        } else {
            f64::NAN
        }
    }

    /// KiB of the server's memory per idle connection.
    fn rss_per_idle_kib(&self, idle: usize) -> f64 {
        (self.rss_idle_kib - self.rss_before_kib) / idle as f64
    }
}

/// The load of `case` on `addr` for one window (`idle`: with that many idle connections).
fn spec(case: &Case, addr: SocketAddr, s: &Settings, idle: usize, load_cpu: usize) -> Spec {
    let mut spec = Spec::new(addr, case.urls.iter().map(|u| u.to_string()).collect());
    spec.connections = CONNS;
    spec.in_flight = case.in_flight;
    spec.warmup = s.warmup;
    spec.duration = Some(s.warmup + s.window);
    spec.idle_connections = idle;
    spec.threads = 1;
    spec.cpus = vec![load_cpu];
    spec
}

/// Runs `spec` against `running`; a failed set-up ends the bench, failed requests are
/// printed loudly (and end a smoke test).
fn load_run(mode: Mode, what: &str, running: &mut Running, spec: &Spec) -> load::Report {
    let r = match load::run(spec) {
        Ok(r) => r,
        Err(e) => {
            let note = running.exit_note();
            panic!("kweb bench: {what}: kweb-load could not run: {e}{note}")
        }
    };
    let mut bad = Vec::new();
    if r.errors > 0 {
        bad.push(format!(
            "{} failed requests (of {} answered): {:#?}",
            r.errors, r.requests, r.error_samples
        ));
    }
    if r.idle_closed > 0 {
        bad.push(format!(
            "the server closed {} of the {} idle connections",
            r.idle_closed, spec.idle_connections
        ));
    }
    if !bad.is_empty() {
        let msg = format!("kweb bench: {what}: {}{}", bad.join("; "), running.exit_note());
        eprintln!("\n!!!!!!!!!! {msg}\n");
        assert!(mode != Mode::Smoke, "{msg}");
    }
    r
}

/// One window of a case without idle connections, on a running server.
fn window(mode: Mode, case: &Case, s: &Settings, setup: &Setup, running: &mut Running, rep: usize) -> Window {
    let what = format!("{} on {} (repetition {rep})", case.name, running.server.name());
    let r = load_run(mode, &what, running, &spec(case, running.addr(), s, 0, setup.load_cpu));
    Window { rep, r, rss_before_kib: f64::NAN, rss_idle_kib: f64::NAN }
}

/// One `idle10k` window: a fresh server, the active load alone for a warm-up, its
/// memory, then the window with the idle connections, its peak memory read meanwhile.
fn idle_window(mode: Mode, case: &Case, s: &Settings, setup: &Setup, server: Server, rep: usize) -> Window {
    let what = format!("{} on {} (repetition {rep})", case.name, server.name());
    let mut running = start(server, setup);
    let mut warm = spec(case, running.addr(), s, 0, setup.load_cpu);
    (warm.warmup, warm.duration) = (Duration::ZERO, Some(s.warmup.max(Duration::from_millis(20))));
    load_run(mode, &format!("{what}, warm-up"), &mut running, &warm);
    let before = running.rss_kib();
    let pid = running.pid();
    let spec = spec(case, running.addr(), s, s.idle, setup.load_cpu);
    let done = AtomicBool::new(false);
    let (r, peak) = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            let mut peak = f64::NAN;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(RSS_POLL);
            }
            peak.max(rss_kib(pid))
        });
        // Set even if the window panics: the scope joins the monitor before unwinding on.
        let stop = SetOnDrop(&done);
        let r = load_run(mode, &what, &mut running, &spec);
        drop(stop);
        (r, monitor.join().expect("the RSS monitor"))
    });
    drop(running);
    Window { rep, r, rss_before_kib: before, rss_idle_kib: peak }
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// wrk's requests/s for `keepalive` on `port`, over `secs`; its errors printed loudly.
fn wrk_run(wrk: &Path, setup: &Setup, secs: u32, server: Server, port: u16) -> f64 {
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", "-c100", &format!("-d{secs}s"), &format!("http://127.0.0.1:{port}/empty.html")])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    pin_child(&mut cmd, setup.load_cpu);
    let out = match cmd.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            eprintln!("kweb bench: wrk failed against {}: {}", server.name(), o.status);
            return f64::NAN;
        }
        Err(e) => {
            eprintln!("kweb bench: cannot run wrk: {e}");
            return f64::NAN;
        }
    };
    for bad in ["Socket errors", "Non-2xx or 3xx responses"] {
        if let Some(line) = out.lines().find(|l| l.trim_start().starts_with(bad)) {
            eprintln!("\n!!!!!!!!!! kweb bench: wrk against {}: {}\n", server.name(), line.trim());
        }
    }
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            eprintln!("kweb bench: no Requests/sec in wrk's output against {}:\n{out}", server.name());
            f64::NAN
        })
}

// ---------------------------------------------------------------------------------------
// Results.

/// Every window of one case.
struct CaseResult {
    case: &'static Case,
    servers: Vec<Server>,
    /// Per server (in the order of `servers`), its windows in the order of the reps.
    windows: Vec<Vec<Window>>,
    /// Per server, wrk's requests/s per run (empty: wrk did not run).
    wrk: Vec<Vec<f64>>,
    /// Idle connections in its windows.
    idle: usize,
}

impl CaseResult {
    fn index(&self, server: Server) -> Option<usize> {
        self.servers.iter().position(|&s| s == server)
    }

    /// The statistics of `f` over `server`'s windows; NaN if that server did not run.
    fn stat(&self, server: Server, f: impl Fn(&Window) -> f64) -> Stat {
        match self.index(server) {
            Some(i) => Stat::of(self.windows[i].iter().map(f).collect()),
            None => Stat { median: f64::NAN, min: f64::NAN, max: f64::NAN },
        }
    }

    fn rps(&self, server: Server) -> Stat {
        self.stat(server, |w| w.r.rps)
    }

    fn p50_us(&self, server: Server) -> Stat {
        self.stat(server, |w| w.r.p50_us)
    }

    fn p99_us(&self, server: Server) -> Stat {
        self.stat(server, |w| w.r.p99_us)
    }

    fn max_us(&self, server: Server) -> Stat {
        self.stat(server, |w| w.r.max_us)
    }

    fn load_cpu(&self, server: Server) -> Stat {
        self.stat(server, Window::load_cpu)
    }

    fn errors(&self, server: Server) -> u64 {
        self.index(server).map_or(0, |i| self.windows[i].iter().map(|w| w.r.errors).sum())
    }

    fn rss_per_idle_kib(&self, server: Server) -> f64 {
        self.stat(server, |w| w.rss_per_idle_kib(self.idle)).median
    }

    /// wrk's median requests/s against `server`, NaN if it did not run.
    fn wrk_rps(&self, server: Server) -> f64 {
        match self.index(server).map(|i| &self.wrk[i]) {
            Some(v) if !v.is_empty() => Stat::of(v.clone()).median,
            _ => f64::NAN,
        }
    }
}

/// Runs one case: R repetitions of a window per server, alternating their order. A case
/// without idle connections runs on `running` (one per server); `idle10k` starts a fresh
/// server per window.
fn run_case(
    mode: Mode,
    case: &'static Case,
    s: &Settings,
    setup: &Setup,
    servers: &[Server],
    running: &mut [Running],
) -> CaseResult {
    let windows = if case.idle {
        let mut sides: Vec<Box<dyn FnMut(usize) -> Window + '_>> = servers
            .iter()
            .map(|&server| {
                Box::new(move |rep| idle_window(mode, case, s, setup, server, rep))
                    as Box<dyn FnMut(usize) -> Window + '_>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut(usize) -> Window> =
            sides.iter_mut().map(|f| f.as_mut() as &mut dyn FnMut(usize) -> Window).collect();
        harness::alternate(s.reps, &mut refs)
    } else {
        let mut sides: Vec<Box<dyn FnMut(usize) -> Window + '_>> = running
            .iter_mut()
            .map(|r| {
                Box::new(move |rep| window(mode, case, s, setup, r, rep))
                    as Box<dyn FnMut(usize) -> Window + '_>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut(usize) -> Window> =
            sides.iter_mut().map(|f| f.as_mut() as &mut dyn FnMut(usize) -> Window).collect();
        harness::alternate(s.reps, &mut refs)
    };
    let wrk = match (&setup.wrk, case.name == ACTIVE_ONLY && s.wrk_reps > 0) {
        (Some(wrk), true) => {
            let mut sides: Vec<Box<dyn FnMut(usize) -> f64 + '_>> = running
                .iter()
                .map(|r| {
                    Box::new(move |_| wrk_run(wrk, setup, s.wrk_secs, r.server, r.process.port))
                        as Box<dyn FnMut(usize) -> f64 + '_>
                })
                .collect();
            let mut refs: Vec<&mut dyn FnMut(usize) -> f64> =
                sides.iter_mut().map(|f| f.as_mut() as &mut dyn FnMut(usize) -> f64).collect();
            harness::alternate(s.wrk_reps, &mut refs)
        }
        _ => servers.iter().map(|_| Vec::new()).collect(),
    };
    CaseResult { case, servers: servers.to_vec(), windows, wrk, idle: if case.idle { s.idle } else { 0 } }
}

// ---------------------------------------------------------------------------------------
// Output.

fn table(results: &[CaseResult], active: Option<&CaseResult>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | server | requests/s (min-max) | p50 µs | p99 µs (min-max) | max µs | vs nginx | vs linux | load CPU | errors | active-only requests/s | RSS/idle KiB | wrk requests/s |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let linux = Server::KWEB[0];
    for r in results {
        for (k, &server) in r.servers.iter().enumerate() {
            let case = if k == 0 { r.case.name } else { "" };
            let rps = r.rps(server).median;
            let vs_nginx = rps / r.rps(Server::Nginx).median;
            let vs_linux = rps / r.rps(linux).median;
            let (active_only, rss) = if r.case.idle {
                (
                    cell(active.map_or(f64::NAN, |a| a.rps(server).median), 0),
                    cell(r.rss_per_idle_kib(server), 2),
                )
            } else {
                ("-".into(), "-".into())
            };
            let errors = r.errors(server);
            let _ = writeln!(
                t,
                "| {case} | {} | {} | {:.1} | {} | {:.0} | {} | {} | {:.0}% | {} | {active_only} | {rss} | {} |",
                server.describe(),
                stat_cell(r.rps(server), 0),
                r.p50_us(server).median,
                stat_cell(r.p99_us(server), 1),
                r.max_us(server).median,
                if server == Server::Nginx { "-".into() } else { cell(vs_nginx, 2) },
                if server == linux { "-".into() } else { cell(vs_linux, 2) },
                100.0 * r.load_cpu(server).median,
                if errors > 0 { format!("**{errors}**") } else { "0".into() },
                cell(r.wrk_rps(server), 0),
            );
        }
    }
    t
}

/// One RESULT line per kweb variant of `r`: `case=<case>-<variant>`, the figures the
/// comparison is about, then the rest.
fn result_lines(r: &CaseResult, active: Option<&CaseResult>) -> Vec<String> {
    let nginx_rps = r.rps(Server::Nginx).median;
    let linux_rps = r.rps(Server::KWEB[0]).median;
    Server::KWEB
        .iter()
        .map(|&server| {
            let rps = r.rps(server).median;
            let mut line = format!(
                "RESULT kweb case={}-{} rps={} nginx_rps={} linux_rps={} p99_us={} ratio={}",
                r.case.name,
                server.name(),
                num(rps, 0),
                num(nginx_rps, 0),
                num(linux_rps, 0),
                num(r.p99_us(server).median, 1),
                num(rps / nginx_rps, 2),
            );
            if r.case.idle {
                let active_rps = |s| active.map_or(f64::NAN, |a: &CaseResult| a.rps(s).median);
                let _ = write!(
                    line,
                    " rss_per_idle_kib={} active_only_rps={} nginx_rss_per_idle_kib={} nginx_active_only_rps={} idle={}",
                    num(r.rss_per_idle_kib(server), 2),
                    num(active_rps(server), 0),
                    num(r.rss_per_idle_kib(Server::Nginx), 2),
                    num(active_rps(Server::Nginx), 0),
                    r.idle,
                );
            }
            if r.wrk.iter().any(|w| !w.is_empty()) {
                let _ = write!(
                    line,
                    " wrk_rps={} nginx_wrk_rps={}",
                    num(r.wrk_rps(server), 0),
                    num(r.wrk_rps(Server::Nginx), 0)
                );
            }
            let _ = write!(
                line,
                " p50_us={} max_us={} nginx_p99_us={} load_cpu={} linux_ratio={} errors={} conns={CONNS} in_flight={}",
                num(r.p50_us(server).median, 1),
                num(r.max_us(server).median, 0),
                num(r.p99_us(Server::Nginx).median, 1),
                num(r.load_cpu(server).median, 2),
                num(rps / linux_rps, 2),
                r.errors(server),
                r.case.in_flight,
            );
            line
        })
        .collect()
}

/// Every window: one line per case, server and repetition, then one per wrk run.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from(
        "case,server,rep,requests,errors,elapsed_ns,rps,p50_us,p99_us,p999_us,max_us,load_cpu_ms,idle,idle_closed,rss_before_kib,rss_idle_kib,wrk_rps\n",
    );
    for r in results {
        for (i, &server) in r.servers.iter().enumerate() {
            for w in &r.windows[i] {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{:.0},{:.1},{:.1},{:.1},{:.1},{:.1},{},{},{},{},",
                    r.case.name,
                    server.name(),
                    w.rep,
                    w.r.requests,
                    w.r.errors,
                    w.r.elapsed.as_nanos(),
                    w.r.rps,
                    w.r.p50_us,
                    w.r.p99_us,
                    w.r.p999_us,
                    w.r.max_us,
                    w.r.cpu_ms,
                    r.idle,
                    w.r.idle_closed,
                    num(w.rss_before_kib, 0),
                    num(w.rss_idle_kib, 0),
                );
            }
            for (rep, rps) in r.wrk[i].iter().enumerate() {
                let _ = writeln!(
                    csv,
                    "{}-wrk,{},{rep},,,,,,,,,,,,,,{}",
                    r.case.name,
                    server.name(),
                    num(*rps, 0)
                );
            }
        }
    }
    csv
}

/// Grouped bars on a log scale: median requests/s per case and server, min-max whiskers,
/// the median above each bar.
fn plot(path: &Path, head: &str, results: &[CaseResult]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let colors = [
        RGBColor(0xd6, 0x27, 0x28), // linux
        RGBColor(0x1f, 0x77, 0xb4), // upthread
        RGBColor(0xff, 0x7f, 0x0e), // custom
        RGBColor(0x2c, 0xa0, 0x2c), // nginx
    ];
    let servers: Vec<Server> = results.first().map(|r| r.servers.clone()).unwrap_or_default();
    let n = servers.len().max(1) as f64;
    // Bar k of n in case i: centred across 0.84 of the case's width.
    let place = |case: usize, k: usize| (case as f64 - 0.42 + 0.84 * (k as f64 + 0.5) / n, 0.42 / n * 0.85);
    let all: Vec<Stat> =
        results.iter().flat_map(|r| servers.iter().map(|&s| r.rps(s))).filter(|s| s.min > 0.0).collect();
    let lo = all.iter().map(|s| s.min).fold(f64::INFINITY, f64::min) / 3.0;
    let hi = all.iter().map(|s| s.max).fold(1.0, f64::max) * 3.0;
    let lo = if lo.is_finite() { lo } else { 1.0 };
    let names: Vec<String> = results
        .iter()
        .map(|r| {
            let best = Server::KWEB
                .iter()
                .map(|&s| (s, r.rps(s).median))
                .fold((Server::KWEB[0], f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            let nginx = r.rps(Server::Nginx).median;
            if nginx.is_nan() {
                r.case.name.to_string()
            } else {
                format!("{}: {} {:.2}x nginx", r.case.name, best.0.name(), best.1 / nginx)
            }
        })
        .collect();
    let frame = report::Frame {
        title: "kweb vs nginx: requests/s per case (median, min-max over repetitions), higher is better",
        title_size: 17,
        band: 82,
        head,
        names: &names,
        y_desc: "requests/s (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperRight,
    };
    report::bar_chart(path, &frame, |chart| {
        for (k, &server) in servers.iter().enumerate() {
            let c = colors[k % colors.len()];
            let bars: Vec<(f64, f64, Stat)> = results
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let (x, w) = place(i, k);
                    (x, w, r.rps(server))
                })
                .filter(|(_, _, s)| s.min > 0.0)
                .collect();
            report::stat_bars(chart, &bars, lo, c, server.describe(), 10)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    server::run_kweb_if_asked();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let names: Vec<&'static str> = CASES.iter().map(|c| c.name).collect();
    let filter = harness::CaseFilter::new(&args, &names);
    let mut cases: Vec<&'static Case> = CASES.iter().filter(|c| filter.wants(c.name)).collect();

    let fd_limit = raise_fd_limit();
    let fds_needed = (settings.idle + CONNS) as u64 + SPARE_FDS;
    if cases.iter().any(|c| c.idle) && fd_limit < fds_needed {
        eprintln!(
            "kweb bench: skipping idle10k: it needs {fds_needed} descriptors in this process and in each \
             server ({} idle and {CONNS} load connections, {SPARE_FDS} spare), but RLIMIT_NOFILE's hard \
             limit is {fd_limit}. Raise it (`ulimit -Hn`, as root) to run it.",
            settings.idle
        );
        cases.retain(|c| !c.idle);
    }
    // idle10k's active-only figure is keepalive's.
    if cases.iter().any(|c| c.idle) && !cases.iter().any(|c| c.name == ACTIVE_ONLY) {
        cases.insert(cases.len() - 1, CASES.iter().find(|c| c.name == ACTIVE_ONLY).expect("the case"));
    }

    // Before the pin below: it counts the CPUs this process may use.
    let machine = Machine::probe();
    let cpus = server::allowed_cpus();
    let (load_cpu, server_cpu) = match cpus[..] {
        [a, b, ..] => (a, b),
        [a] => {
            eprintln!(
                "kweb bench: only CPU {a} is available: the servers and the load share it, and the figures \
                 say little"
            );
            (a, a)
        }
        [] => (0, 0),
    };
    // Everything of this process, the load thread included, stays off the server CPU.
    harness::pin_to(load_cpu);

    let nginx = find_program("nginx");
    let wrk = find_program("wrk");
    if nginx.is_none() || wrk.is_none() {
        println!(
            "kweb bench: {} not found: install {} with `kweb/install-deps.sh` (apt-get install nginx wrk); {}",
            [("nginx", nginx.is_none()), ("wrk", wrk.is_none())]
                .iter()
                .filter(|x| x.1)
                .map(|x| x.0)
                .collect::<Vec<_>>()
                .join(" and "),
            if nginx.is_none() && wrk.is_none() { "them" } else { "it" },
            if nginx.is_none() {
                "comparing the kweb variants with each other only"
            } else {
                "no wrk cross-check"
            }
        );
    }
    let (dir, root) = make_root();
    let setup = Setup { dir, root, nginx, wrk, server_cpu, load_cpu, nginx_starts: AtomicUsize::new(0) };
    let mut servers = Server::KWEB.to_vec();
    if setup.nginx.is_some() {
        servers.push(Server::Nginx);
    }

    let busy_before = machine::busy_percent(Duration::from_millis(500));
    let head = machine.header(
        mode.name(),
        &format!(
            "{} reps x {} ms windows after {} ms warm-up, medians; servers on CPU {server_cpu} (1 vcore each), \
             load on CPU {load_cpu}",
            settings.reps,
            settings.window.as_millis(),
            settings.warmup.as_millis()
        ),
    );
    println!(
        "kweb: kweb on Linux threads, upthread and its own scheduler{} serving static files, {CONNS} \
         connections from kweb-load on the other CPU",
        if setup.nginx.is_some() { " vs nginx," } else { "," }
    );
    print!("{head}");
    println!("  other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run");
    println!();

    let started = Instant::now();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut running: Vec<Running> = Vec::new();
    for case in cases {
        if case.idle {
            running.clear(); // idle10k starts its own servers: stop the long-lived ones
        } else if running.is_empty() {
            running = servers.iter().map(|&s| start(s, &setup)).collect();
        }
        let r = run_case(mode, case, settings, &setup, &servers, &mut running);
        let mut line = format!("  {:<10} requests/s:", case.name);
        for &s in &servers {
            let _ = write!(line, " {} {:.0}", s.name(), r.rps(s).median);
        }
        let _ = write!(line, "   p99 µs:");
        for &s in &servers {
            let _ = write!(line, " {:.0}", r.p99_us(s).median);
        }
        println!("{line}");
        results.push(r);
    }
    drop(running);
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());
    if mode == Mode::Smoke {
        let answered: u64 = results.iter().flat_map(|r| &r.windows).flatten().map(|w| w.r.requests).sum();
        println!("  checked {answered} responses, every one right");
    }

    let active = results.iter().find(|r| r.case.name == ACTIVE_ONLY);
    let note = format!(
        "Medians of the repetitions (min-max over them). Every server on CPU {server_cpu} (kweb's uthread \
         variants on one vcore), kweb-load on CPU {load_cpu}, {CONNS} load connections. vs nginx = the \
         server's requests/s ÷ nginx's; vs linux = ÷ kweb on Linux threads'. load CPU: the load thread's \
         CPU time over the measured span (near 100%: the generator, not the server, set the rate). \
         idle10k: active-only = the same server's keepalive requests/s; RSS/idle = (peak VmRSS with the \
         idle connections open − VmRSS before) ÷ their number, on a fresh server per window. wrk: wrk -t1 \
         -c100 on keepalive, median of its runs. Other load: the CPUs were {busy_before:.0}% busy in the \
         0.5 s before the run."
    );
    let report = Report {
        bench: "kweb",
        title: "kweb (Linux threads, upthread, custom scheduler) vs nginx, static files over loopback",
        head: &head,
        note: &note,
        table: table(&results, active),
        csv: csv(&results),
        result_lines: results.iter().flat_map(|r| result_lines(r, active)).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
    drop(setup);
}
