//! Rust's std on upthreads (DESIGN §4: "Rust programs use `std::sync` locks (`println!`
//! takes one), `std::thread::sleep` and `std::net` whether we like it or not, so their
//! blocking paths ... are made uthread-aware where they reach libc, and stay plain system
//! calls on other threads").
//!
//! * **A std workload under preemption.** 64 upthreads, preempted every 100 µs, run for
//!   10 s a mix of `println!`, writes to `/dev/null`, `Mutex`, `Condvar` and `RwLock`
//!   handoffs, racing `Once`s, `park`/`unpark` handshakes and 1 ms sleeps; every count
//!   must come out exact and every printed line whole. The same body on plain
//!   `std::thread`s, with the interposers linked but upthread never started, must behave
//!   exactly as without parlib.
//! * **Each std blocking path alone** (`Mutex`, `RwLock`, `Condvar`, `park`, `Once`,
//!   stdout's lock, `thread::sleep`) on one cooperative vcore: the waiter blocks only
//!   itself. This is the sharp check of the futex and sleep paths: it hangs if std's futex
//!   waits reach the kernel, and fails if `clock_nanosleep` does (both checked by
//!   sending them there in a copy of the workspace).
//! * **A `std::net` echo server on upthreads**: thread per connection, 100 connections x
//!   1000 round trips, on one vcore and on all, with upthread clients and with plain
//!   thread clients.
//! * **One socket, two faces.** A socket that `parlib::syscalls::io::connect` made
//!   non-blocking, wrapped in a `std::net::TcpStream`: std's reads and writes block (on an
//!   upthread and on a plain thread), never `WouldBlock`; `set_nonblocking(true)` hands
//!   `WouldBlock` to the caller and `set_nonblocking(false)` takes it back; `try_clone`
//!   blocks like the original. (Checked to fail without `ioctl`'s `FIONBIO` handling,
//!   without `fcntl`'s `F_GETFL` hiding and without `F_DUPFD`'s copy of what the layer
//!   knows.) Setting non-blocking mode through a clone shows through the original, which
//!   shares the open file description (this failed before `fdkind`'s dup groups).
//! * **Names.** A named upthread runs on a backing std thread of that name, so
//!   `std::thread::current().name()` and panic messages show it.
//!
//! At c4d4214, the commit before std's calls were interposed, the upthread variants of
//! the workload and of the echo server hang (the workload before its first line).
//!
//! Every test runs its body in a child process under the testkit's watchdog.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, Once, OnceLock, RwLock};
use std::time::{Duration, Instant};

use parlib::syscalls::io as pio;
use parlib::upthread;
use parlib_testkit::{fill_pattern, Rng};

/// A watchdog for the tests that do little: long enough for a loaded machine running a
/// debug build; the tests never assert on speed, so this only bounds a hang.
const TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Shared helpers.

/// Where a test starts its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    /// upthread threads (uthreads), through `parlib::upthread::Builder`.
    Upthreads,
    /// Plain Linux threads, through `std::thread::Builder`.
    PlainThreads,
}

/// A thread of either kind.
enum Handle<T> {
    Up(upthread::JoinHandle<T>),
    Plain(std::thread::JoinHandle<T>),
}

/// Starts `f` as a thread named `name` of kind `on`. A panic in it aborts the test child
/// after the panic message is printed: its partners would otherwise wait for it until the
/// watchdog fires.
fn start<T: Send + 'static>(on: On, name: String, f: impl FnOnce() -> T + Send + 'static) -> Handle<T> {
    let f = move || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("a test thread panicked (message above): aborting the test child");
            std::process::abort();
        }
    };
    match on {
        On::Upthreads => Handle::Up(upthread::Builder::new().name(name).spawn(f).expect("spawn an upthread")),
        On::PlainThreads => {
            Handle::Plain(std::thread::Builder::new().name(name).spawn(f).expect("spawn a plain thread"))
        }
    }
}

impl<T> Handle<T> {
    /// Waits for the thread and returns its result. From a uthread, a plain thread is
    /// waited for by yielding: `JoinHandle::join` of a std thread is glibc's
    /// `pthread_join`, which the syscall layer does not cover and which would block the
    /// whole vcore (and with it, on one vcore, the upthreads the plain thread talks to).
    fn wait(self) -> T {
        match self {
            Handle::Up(h) => h.join().expect("an upthread panicked"),
            Handle::Plain(h) => {
                if parlib::uthread::current().is_some() {
                    while !h.is_finished() {
                        upthread::yield_now();
                    }
                }
                h.join().expect("a plain thread panicked")
            }
        }
    }
}

/// Starts upthread in a test child: the test thread becomes `main`, a uthread.
fn init_upthread() {
    upthread::init().expect("parlib::upthread::init");
}

/// Fails the test with the child's output unless the child finished its body and exited
/// successfully. Long outputs are cut to their ends.
fn require_success(out: &parlib_testkit::Outcome, what: &str) {
    if out.finished && out.status.is_some_and(|s| s.success()) {
        return;
    }
    fn tail(s: &str) -> &str {
        let mut at = s.len().saturating_sub(8 * 1024);
        while !s.is_char_boundary(at) {
            at += 1;
        }
        &s[at..]
    }
    panic!(
        "{what}: the child failed or hung (status {:?}, body finished: {})\n--- stdout (end) ---\n{}\n--- stderr (end) ---\n{}",
        out.status,
        out.finished,
        tail(&out.stdout),
        tail(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// 1. A std workload of 64 threads for 10 s.

/// How long the workload runs: each pair's first thread checks it against `Instant`
/// itself and stops the pair.
const RUN_FOR: Duration = Duration::from_secs(10);
/// Threads in the workload, in pairs (`2k`, `2k + 1`) for the condvar ping-pong and the
/// park handshake.
const WORKERS: usize = 64;
/// A worker prints one line every this many rounds: enough lines to keep stdout's lock
/// contended (measured on 2 cores: about 130 000 lines on upthreads in a debug build,
/// 380 000 in a release one, 430 000 on plain threads), few enough that the captured
/// output stays under 30 MB.
const PRINT_EVERY: u64 = 8;
/// The end of every printed line, so that a line cut short or run into another shows.
const LINE_TAIL: &str = "and-the-rest-of-a-whole-line-0123456789";
/// The `Once` a worker races on is the one for the current 5 ms slot of the run, so the
/// threads running at the same time race on the same one.
const ONCE_SLOT_MS: u128 = 5;
/// Slots for twice `RUN_FOR` (later callers are clamped to the last one).
const ONCE_SLOTS: usize = 2 * (10_000 / ONCE_SLOT_MS as usize);
/// A worker sleeps 1 ms in one round of this many.
const SLEEP_EVERY: u64 = 32;
/// The watchdog for the workload: `RUN_FOR` plus start-up, the final checks and a loaded
/// debug build's slowness.
const MIX_TIMEOUT: Duration = Duration::from_secs(120);

/// The condvar ping-pong of a pair: `turn` is the side (0 or 1) whose pass it is.
struct PingPong {
    turn: usize,
    passes: u64,
    /// Set by side 0 with its last pass: side 1 makes its matching pass and stops too.
    stop: bool,
}

/// What the two threads of a pair share.
struct Pair {
    ping_pong: Mutex<PingPong>,
    turn_changed: Condvar,
    /// The park handshake: in round `r`, side 0 waits for `2r`, sets `2r + 1` and unparks
    /// side 1, which waits for `2r + 1`, sets `2r + 2` and unparks side 0.
    park_step: AtomicU64,
    /// Each side's `std::thread::current()`, for the other's `unpark`.
    threads: [OnceLock<std::thread::Thread>; 2],
}

/// What every worker shares.
struct Shared {
    start: Instant,
    /// All workers have registered their `Thread` before any looks up its partner's.
    registered: Barrier,
    counter: Mutex<u64>,
    /// Writers bump both halves with work in between; readers check they are equal.
    rw: RwLock<(u64, u64)>,
    onces: Vec<Once>,
    once_called: Vec<AtomicBool>,
    once_inits: Vec<AtomicU8>,
    pairs: Vec<Pair>,
    dev_null: File,
}

/// What one worker did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    rounds: u64,
    lines: u64,
    null_writes: u64,
    mutex_incs: u64,
    rw_reads: u64,
    rw_writes: u64,
    once_calls: u64,
    sleeps: u64,
    handshakes: u64,
    passes: u64,
}

/// Some work that takes a while and cannot be optimised out: widens the windows in which
/// a holder of a lock is preempted.
fn busy(iters: u32) {
    let mut x = 0u32;
    for i in 0..iters {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

/// Worker `i`: rounds of every std operation until its pair stops.
fn worker(i: usize, sh: Arc<Shared>) -> Tally {
    let side = i % 2;
    let pair = &sh.pairs[i / 2];
    pair.threads[side].set(std::thread::current()).expect("each side registers once");
    sh.registered.wait();
    let partner = pair.threads[1 - side].get().expect("registered before the barrier").clone();
    let mut t = Tally::default();
    loop {
        let round = t.rounds;
        // stdout: one line, whole, under std's stdout lock.
        if round.is_multiple_of(PRINT_EVERY) {
            println!("STDLINE t={i} n={} {LINE_TAIL}", t.lines);
            t.lines += 1;
        }
        // A file: one write(2) per line.
        writeln!(&sh.dev_null, "worker {i} round {round}").expect("write to /dev/null");
        t.null_writes += 1;
        // Mutex handoffs.
        *sh.counter.lock().expect("counter lock") += 1;
        t.mutex_incs += 1;
        // RwLock: one round in eight writes.
        if (round + i as u64).is_multiple_of(8) {
            let mut g = sh.rw.write().expect("rw write");
            g.0 += 1;
            busy(500);
            g.1 += 1;
            t.rw_writes += 1;
        } else {
            let g = sh.rw.read().expect("rw read");
            let (a, b) = *g;
            busy(50);
            assert_eq!((a, b), *g, "the value changed under a read lock");
            assert_eq!(a, b, "a reader saw a writer's half-done update");
            t.rw_reads += 1;
        }
        // Once: everyone running now races on this slot's.
        let slot = ((sh.start.elapsed().as_millis() / ONCE_SLOT_MS) as usize).min(ONCE_SLOTS - 1);
        sh.once_called[slot].store(true, Ordering::Relaxed);
        sh.onces[slot].call_once(|| {
            sh.once_inits[slot].fetch_add(1, Ordering::Relaxed);
            // Keep the others waiting for the initialiser a little.
            std::thread::sleep(Duration::from_micros(50));
        });
        assert_eq!(
            sh.once_inits[slot].load(Ordering::Relaxed),
            1,
            "call_once of slot {slot} returned, but its init ran a different number of times"
        );
        t.once_calls += 1;
        // A sleep now and then.
        if (round + i as u64).is_multiple_of(SLEEP_EVERY) {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(1), "thread::sleep(1 ms) returned after {took:?}");
            t.sleeps += 1;
        }
        // park/unpark handshake with the partner.
        let mine = 2 * round + side as u64;
        while pair.park_step.load(Ordering::Acquire) != mine {
            std::thread::park();
        }
        pair.park_step.store(mine + 1, Ordering::Release);
        partner.unpark();
        t.handshakes += 1;
        // Condvar ping-pong with the partner; side 0 decides when the pair stops.
        let mut pp = pair.ping_pong.lock().expect("ping-pong lock");
        while pp.turn != side {
            pp = pair.turn_changed.wait(pp).expect("ping-pong wait");
        }
        pp.passes += 1;
        t.passes += 1;
        pp.turn = 1 - side;
        if side == 0 && sh.start.elapsed() >= RUN_FOR {
            pp.stop = true;
        }
        let stop = pp.stop;
        drop(pp);
        pair.turn_changed.notify_one();
        t.rounds += 1;
        if stop {
            return t;
        }
    }
}

/// The workload on threads of kind `on`, in a test child; checks every count and prints,
/// after the workers' lines, one `STDSUMMARY` line per worker for the parent's check of
/// stdout, and a `STDTOTALS` line.
fn std_mix(on: On) {
    // libtest printed "test NAME ... " without a newline: start our lines on a fresh one.
    println!();
    let sh = Arc::new(Shared {
        start: Instant::now(),
        registered: Barrier::new(WORKERS),
        counter: Mutex::new(0),
        rw: RwLock::new((0, 0)),
        onces: (0..ONCE_SLOTS).map(|_| Once::new()).collect(),
        once_called: (0..ONCE_SLOTS).map(|_| AtomicBool::new(false)).collect(),
        once_inits: (0..ONCE_SLOTS).map(|_| AtomicU8::new(0)).collect(),
        pairs: (0..WORKERS / 2)
            .map(|_| Pair {
                ping_pong: Mutex::new(PingPong { turn: 0, passes: 0, stop: false }),
                turn_changed: Condvar::new(),
                park_step: AtomicU64::new(0),
                threads: [OnceLock::new(), OnceLock::new()],
            })
            .collect(),
        dev_null: File::options().write(true).open("/dev/null").expect("open /dev/null"),
    });
    let hs: Vec<_> = (0..WORKERS)
        .map(|i| {
            let sh = sh.clone();
            start(on, format!("worker-{i}"), move || worker(i, sh))
        })
        .collect();
    let tallies: Vec<Tally> = hs.into_iter().map(Handle::wait).collect();
    let took = sh.start.elapsed();
    assert!(took >= RUN_FOR, "the workers stopped after {took:?}, before {RUN_FOR:?}");

    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    assert_eq!(*sh.counter.lock().unwrap(), sum(|t| t.mutex_incs), "Mutex-protected counter");
    let (a, b) = *sh.rw.read().unwrap();
    assert_eq!((a, b), (sum(|t| t.rw_writes), sum(|t| t.rw_writes)), "RwLock-protected pair");
    for (p, pair) in sh.pairs.iter().enumerate() {
        let (t0, t1) = (&tallies[2 * p], &tallies[2 * p + 1]);
        let pp = pair.ping_pong.lock().unwrap();
        assert!(pp.stop, "pair {p} stopped without its stop flag");
        assert_eq!(pp.turn, 0, "pair {p}: side 1 made the last pass");
        assert_eq!(t0.passes, t1.passes, "pair {p}: both sides make the same number of passes");
        assert_eq!(pp.passes, t0.passes + t1.passes, "pair {p}: condvar passes");
        assert_eq!(t0.handshakes, t1.handshakes, "pair {p}: park handshakes per side");
        assert_eq!(pair.park_step.load(Ordering::Relaxed), 2 * t0.handshakes, "pair {p}: park steps");
        assert_eq!((t0.rounds, t1.rounds), (t0.passes, t0.passes), "pair {p}: rounds");
    }
    let mut inits = 0;
    for s in 0..ONCE_SLOTS {
        let called = sh.once_called[s].load(Ordering::Relaxed);
        let n = sh.once_inits[s].load(Ordering::Relaxed);
        assert_eq!(n, u8::from(called), "Once slot {s}: called {called}, init ran {n} times");
        inits += u64::from(n);
    }
    for (i, t) in tallies.iter().enumerate() {
        assert_eq!(t.null_writes, t.rounds, "worker {i}: /dev/null writes");
        assert_eq!(t.mutex_incs, t.rounds, "worker {i}: mutex increments");
        assert_eq!(t.rw_reads + t.rw_writes, t.rounds, "worker {i}: rwlock uses");
        assert_eq!(t.once_calls, t.rounds, "worker {i}: call_once calls");
        assert_eq!(t.lines, t.rounds.div_ceil(PRINT_EVERY), "worker {i}: lines printed");
        println!("STDSUMMARY t={i} lines={}", t.lines);
    }
    println!(
        "STDTOTALS on={on:?} took={took:?} rounds={} lines={} mutex={} rw_reads={} rw_writes={} once_calls={} \
         once_inits={inits} sleeps={} handshakes={} passes={}",
        sum(|t| t.rounds),
        sum(|t| t.lines),
        sum(|t| t.mutex_incs),
        sum(|t| t.rw_reads),
        sum(|t| t.rw_writes),
        sum(|t| t.once_calls),
        sum(|t| t.sleeps),
        sum(|t| t.handshakes),
        sum(|t| t.passes),
    );
}

/// The parent's check of the workload's stdout: every line that mentions `STDLINE` is
/// exactly one whole line of the known shape, each worker's lines arrive numbered
/// 0, 1, 2, ... (one thread's `println!`s are ordered), and each worker's count matches
/// its `STDSUMMARY`.
fn check_mix_output(out: &parlib_testkit::Outcome) {
    require_success(out, "the std workload");
    let mut next = [0u64; WORKERS];
    let mut summary = [None::<u64>; WORKERS];
    let mut totals = None;
    for (no, line) in out.stdout.lines().enumerate() {
        if line.contains("STDLINE") {
            let parsed = line
                .strip_prefix("STDLINE t=")
                .and_then(|r| r.split_once(" n="))
                .and_then(|(t, r)| Some((t.parse::<usize>().ok()?, r.split_once(' ')?)))
                .and_then(|(t, (n, _))| Some((t, n.parse::<u64>().ok()?)))
                .filter(|&(t, n)| t < WORKERS && line == format!("STDLINE t={t} n={n} {LINE_TAIL}"));
            let Some((t, n)) = parsed else {
                panic!("stdout line {no} is not one whole worker line: {line:?}");
            };
            assert_eq!(n, next[t], "stdout line {no}: worker {t}'s lines out of order or missing: {line:?}");
            next[t] += 1;
        } else if let Some(r) = line.strip_prefix("STDSUMMARY t=") {
            let (t, n) = r.split_once(" lines=").expect("summary shape");
            let t: usize = t.parse().expect("summary worker");
            assert!(summary[t].replace(n.parse().expect("summary count")).is_none(), "two summaries of {t}");
        } else if line.starts_with("STDTOTALS") {
            totals = Some(line);
        }
    }
    assert_eq!(
        out.stdout.matches("STDLINE").count() as u64,
        next.iter().sum::<u64>(),
        "worker lines run into each other"
    );
    for t in 0..WORKERS {
        assert_eq!(summary[t], Some(next[t]), "worker {t}: lines seen in stdout vs lines it printed");
    }
    eprintln!("{}", totals.expect("the totals line"));
}

#[test]
fn std_sync_io_and_sleep_on_64_preempted_upthreads_keep_exact_counts() {
    let out = parlib_testkit::child_outcome!(MIX_TIMEOUT, env = &[("UPTHREAD_SCHED_PERIOD_US", "100")], {
        init_upthread();
        assert_eq!(upthread::sched_period(), 100, "preemption every 100 µs from the environment");
        assert_eq!(upthread::num_vcores(), parlib::vcore::max_vcores(), "all vcores");
        std_mix(On::Upthreads);
    });
    check_mix_output(&out);
}

/// Whether the libc name `syscall` (std's way to futex) is bound to the definition in this
/// executable (parlib's interposer) rather than glibc's.
fn syscall_is_interposed() -> bool {
    // SAFETY: dladdr only reads the dynamic linker's tables; `info` is written by it.
    unsafe {
        let mut ours: libc::Dl_info = std::mem::zeroed();
        let mut sys: libc::Dl_info = std::mem::zeroed();
        let here = syscall_is_interposed as *const libc::c_void;
        let syscall = libc::syscall as *const libc::c_void;
        assert_ne!(libc::dladdr(here, &mut ours), 0, "dladdr of a test function");
        assert_ne!(libc::dladdr(syscall, &mut sys), 0, "dladdr of syscall");
        ours.dli_fbase == sys.dli_fbase
    }
}

/// The same workload on plain threads, upthread never started. The interposers are in
/// this executable all the same: the other tests of this binary call `upthread::init`,
/// which calls `parlib_syscalls::init`, which refers to every one of them (so the linker
/// keeps them, and with them the libc names); the check below makes sure, so this test
/// cannot pass by running glibc's functions.
#[test]
fn the_same_std_workload_on_plain_threads_keeps_exact_counts_with_the_interposers_linked() {
    let out = parlib_testkit::child_outcome!(MIX_TIMEOUT, {
        assert!(syscall_is_interposed(), "parlib's `syscall` is not the one std calls in this binary");
        std_mix(On::PlainThreads);
        assert!(!upthread::is_initialized());
    });
    check_mix_output(&out);
}

/// Each std blocking path, one at a time, on one vcore without preemption: the waiter
/// must block only itself, because the thread that ends its wait runs on the same vcore
/// after it. Had a lock or condvar wait blocked the vcore (std's `futex` reaching the
/// kernel), nothing would ever end it and the watchdog would fire; had the sleep
/// (`clock_nanosleep`) reached the kernel, main would not have run during it. (The
/// 64-thread workload does not show a kernel futex wait by itself: checked by sending
/// uthreads' futex waits to the kernel, it still passed, with about 13 times fewer rounds;
/// on all vcores with preemption, a vcore waiting in the kernel is presumably interrupted
/// by its tick and the thread it waits for runs elsewhere.)
#[test]
fn each_std_blocking_call_on_one_cooperative_vcore_blocks_only_its_upthread() {
    parlib_testkit::isolated!(Duration::from_secs(60), env = &[("UPTHREAD_VCORES", "1")], {
        init_upthread();
        assert_eq!((upthread::num_vcores(), upthread::sched_period()), (1, 0), "one vcore, cooperative");
        /// Lets the other threads on the vcore run.
        fn let_others_run() {
            for _ in 0..10 {
                upthread::yield_now();
            }
        }
        static DONE: AtomicBool = AtomicBool::new(false);

        // Mutex: main holds it while the other waits.
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let m2 = m.clone();
        let h = upthread::spawn(move || *m2.lock().unwrap() += 1);
        let_others_run();
        assert!(!h.is_finished(), "Mutex::lock returned while main held the lock");
        drop(g);
        h.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 1);

        // RwLock: a reader waits for main's write lock, a writer for main's read lock.
        let rw = Arc::new(RwLock::new(0u32));
        let w = rw.write().unwrap();
        let rw2 = rw.clone();
        let h = upthread::spawn(move || *rw2.read().unwrap());
        let_others_run();
        assert!(!h.is_finished(), "RwLock::read returned while main held the write lock");
        drop(w);
        assert_eq!(h.join().unwrap(), 0);
        let r = rw.read().unwrap();
        let rw2 = rw.clone();
        let h = upthread::spawn(move || *rw2.write().unwrap() = 7);
        let_others_run();
        assert!(!h.is_finished(), "RwLock::write returned while main held a read lock");
        drop(r);
        h.join().unwrap();
        assert_eq!(*rw.read().unwrap(), 7);

        // Condvar: the other waits until main sets the flag.
        let cv = Arc::new((Mutex::new(false), Condvar::new()));
        let cv2 = cv.clone();
        let h = upthread::spawn(move || {
            let mut set = cv2.0.lock().unwrap();
            while !*set {
                set = cv2.1.wait(set).unwrap();
            }
        });
        let_others_run();
        assert!(!h.is_finished(), "Condvar::wait returned before the flag was set");
        *cv.0.lock().unwrap() = true;
        cv.1.notify_all();
        h.join().unwrap();

        // park: the other parks until main unparks it.
        let (tx, rx) = mpsc::channel();
        let h = upthread::spawn(move || {
            tx.send(std::thread::current()).unwrap();
            while !DONE.load(Ordering::Acquire) {
                std::thread::park();
            }
        });
        let parked = rx.recv().expect("the parking thread's handle");
        let_others_run();
        assert!(!h.is_finished(), "park returned before the flag was set");
        DONE.store(true, Ordering::Release);
        parked.unpark();
        h.join().unwrap();

        // Once: the initialiser yields inside call_once; another caller waits for it.
        static ONCE: Once = Once::new();
        static INITS: AtomicU64 = AtomicU64::new(0);
        let a = upthread::spawn(|| {
            ONCE.call_once(|| {
                let_others_run();
                INITS.fetch_add(1, Ordering::Relaxed);
            })
        });
        let b = upthread::spawn(|| {
            ONCE.call_once(|| {
                INITS.fetch_add(1, Ordering::Relaxed);
            });
            INITS.load(Ordering::Relaxed)
        });
        a.join().unwrap();
        assert_eq!(b.join().unwrap(), 1, "the second call_once returned after the first's init");

        // stdout's lock: main holds it while the other prints.
        let out = std::io::stdout();
        let lock = out.lock();
        let h = upthread::spawn(|| println!("\nprinted by another upthread after main let go of stdout"));
        let_others_run();
        assert!(!h.is_finished(), "println! returned while main held stdout's lock");
        drop(lock);
        h.join().unwrap();

        // thread::sleep: main keeps running while the other sleeps.
        static YIELDS: AtomicU64 = AtomicU64::new(0);
        let h = upthread::spawn(|| {
            let (t0, before) = (Instant::now(), YIELDS.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
            (t0.elapsed(), YIELDS.load(Ordering::Relaxed) - before)
        });
        while !h.is_finished() {
            upthread::yield_now();
            YIELDS.fetch_add(1, Ordering::Relaxed);
        }
        let (slept, yields) = h.join().unwrap();
        assert!(slept >= Duration::from_millis(100), "thread::sleep(100 ms) took {slept:?}");
        assert!(yields > 0, "main did not run while the other upthread slept");
    });
}

// ---------------------------------------------------------------------------------------
// 2. A std::net echo server, thread per connection.

const CONNS: usize = 100;
const ROUND_TRIPS: u64 = 1000;
/// Messages are 1 to this many bytes.
const MAX_MSG: usize = 512;

/// The length of connection `c`'s message number `seq`.
fn msg_len(c: u64, seq: u64) -> usize {
    1 + (Rng::new((c << 32) | seq).next() % MAX_MSG as u64) as usize
}

/// The server side of one connection: echoes until EOF; returns the bytes echoed.
fn echo(mut s: TcpStream) -> u64 {
    s.set_nodelay(true).expect("TCP_NODELAY");
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => {
                s.write_all(&buf[..n]).expect("echo write");
                total += n as u64;
            }
            Err(e) => panic!("echo read: {e}"),
        }
    }
}

/// Client `c`: `ROUND_TRIPS` messages, each echoed back exactly; returns the bytes sent.
fn client(c: u64, addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("TCP_NODELAY");
    let mut out = [0u8; MAX_MSG];
    let mut back = [0u8; MAX_MSG];
    let mut total = 0;
    for seq in 0..ROUND_TRIPS {
        let n = msg_len(c, seq);
        fill_pattern(&mut out[..n], c, seq);
        s.write_all(&out[..n]).unwrap_or_else(|e| panic!("client {c}, message {seq}: write: {e}"));
        s.read_exact(&mut back[..n]).unwrap_or_else(|e| panic!("client {c}, message {seq}: read: {e}"));
        assert!(back[..n] == out[..n], "client {c}, message {seq}: the echo differs from what was sent");
        total += n as u64;
    }
    total
}

/// The echo server on upthreads, `CONNS` clients of kind `clients`; checks every byte.
fn echo_server(clients: On) {
    init_upthread();
    let t0 = Instant::now();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let acceptor = start(On::Upthreads, "acceptor".into(), move || {
        let conns: Vec<_> = (0..CONNS)
            .map(|c| {
                let (s, _) = listener.accept().expect("accept");
                start(On::Upthreads, format!("echo-{c}"), move || echo(s))
            })
            .collect();
        conns.into_iter().map(Handle::wait).sum::<u64>()
    });
    let cs: Vec<_> =
        (0..CONNS as u64).map(|c| start(clients, format!("client-{c}"), move || client(c, addr))).collect();
    let sent: u64 = cs.into_iter().map(Handle::wait).sum();
    let echoed = acceptor.wait();
    let want: u64 = (0..CONNS as u64).flat_map(|c| (0..ROUND_TRIPS).map(move |s| msg_len(c, s) as u64)).sum();
    assert_eq!((sent, echoed), (want, want), "bytes sent by the clients, echoed by the server");
    eprintln!(
        "echo: {CONNS} connections x {ROUND_TRIPS} round trips, {} vcore(s), {clients:?} clients: {:?}",
        upthread::num_vcores(),
        t0.elapsed()
    );
}

#[test]
fn a_std_net_echo_server_on_one_vcore_serves_upthread_clients() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "1")], {
        echo_server(On::Upthreads);
    });
}

#[test]
fn a_std_net_echo_server_on_one_vcore_serves_plain_thread_clients() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "1")], {
        echo_server(On::PlainThreads);
    });
}

#[test]
fn a_std_net_echo_server_on_all_vcores_serves_upthread_clients() {
    parlib_testkit::isolated!(TIMEOUT, {
        echo_server(On::Upthreads);
    });
}

#[test]
fn a_std_net_echo_server_on_all_vcores_serves_plain_thread_clients() {
    parlib_testkit::isolated!(TIMEOUT, {
        echo_server(On::PlainThreads);
    });
}

// ---------------------------------------------------------------------------------------
// 3. One socket, parlib's face and std's.

/// How long the peer waits before it sends or reads, so that the call under test is
/// (almost surely) waiting when it does. Only makes the test sharper: a call that got
/// there late finds the data (or room) at once and passes all the same.
const LATE: Duration = Duration::from_millis(100);
/// The send and receive buffer sizes of both ends (`SO_SNDBUF`, `SO_RCVBUF`; the kernel
/// doubles them): fixed, so autotuning cannot grow them past [`BIG`].
const SOCKET_BUFFER: i32 = 64 << 10;
/// Many times what the connection buffers with [`SOCKET_BUFFER`] (about 256 KiB in all),
/// so a blocking `write_all` of it must wait for the peer to read.
const BIG: usize = 4 << 20;

/// Fixes `fd`'s send and receive buffers at [`SOCKET_BUFFER`] (a listener's are
/// inherited by the connections it accepts).
fn small_buffers(fd: i32) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: a valid option value of the size we pass.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &SOCKET_BUFFER as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
    }
}

/// What the peer, a plain thread on the other end of the connection, does next.
enum Peer {
    /// Waits `LATE`, then sends these bytes.
    SendLate(Vec<u8>),
    /// Waits `LATE`, then reads this many bytes, which must be `fill_pattern(_, 7, seq)`,
    /// and acknowledges.
    ReadLate(usize, u64, mpsc::Sender<()>),
}

/// Accepts one connection on `listener` and obeys commands until the channel closes.
fn peer(listener: TcpListener, cmds: mpsc::Receiver<Peer>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("peer".into())
        .spawn(move || {
            let (mut s, _) = listener.accept().expect("peer accept");
            for cmd in cmds {
                std::thread::sleep(LATE);
                match cmd {
                    Peer::SendLate(data) => s.write_all(&data).expect("peer write"),
                    Peer::ReadLate(n, seq, ack) => {
                        let mut got = vec![0u8; n];
                        s.read_exact(&mut got).expect("peer read");
                        let mut want = vec![0u8; n];
                        fill_pattern(&mut want, 7, seq);
                        assert!(got == want, "the peer got other bytes than were written (seq {seq})");
                        ack.send(()).expect("ack");
                    }
                }
            }
        })
        .expect("spawn the peer")
}

/// The side under test: blocking std calls on `s` (a stream whose descriptor is
/// non-blocking underneath) with the peer's help.
struct Side<'a> {
    s: &'a TcpStream,
    peer: &'a mpsc::Sender<Peer>,
    seq: u64,
}

impl Side<'_> {
    /// One blocking `read` of an empty socket, which the peer fills `LATE`: it must wait
    /// and return the data, not `WouldBlock`.
    fn read_blocks(&mut self, on: &str) {
        self.seq += 1;
        let msg = format!("late data {}", self.seq).into_bytes();
        self.peer.send(Peer::SendLate(msg.clone())).unwrap();
        let mut buf = vec![0u8; msg.len()];
        let t0 = Instant::now();
        let r = (&*self.s).read(&mut buf);
        let waited = t0.elapsed();
        match r {
            Ok(n) => {
                assert!(n > 0, "{on}: EOF instead of data");
                (&*self.s).read_exact(&mut buf[n..]).unwrap_or_else(|e| panic!("{on}: the rest: {e}"));
                assert_eq!(buf, msg, "{on}: the read got other bytes");
            }
            Err(e) => panic!("{on}: a blocking std read of an empty socket failed with {e} ({:?})", e.kind()),
        }
        assert!(waited >= LATE / 2, "{on}: the read returned after {waited:?}, before the data was sent");
    }

    /// A blocking `write_all` of more than the connection buffers, which the peer reads
    /// only `LATE`: it must wait for room, never `WouldBlock`.
    fn write_blocks(&mut self, on: &str) {
        self.seq += 1;
        let mut data = vec![0u8; BIG];
        fill_pattern(&mut data, 7, self.seq);
        let (ack, acked) = mpsc::channel();
        self.peer.send(Peer::ReadLate(BIG, self.seq, ack)).unwrap();
        let t0 = Instant::now();
        if let Err(e) = (&*self.s).write_all(&data) {
            panic!("{on}: a blocking std write_all of {BIG} bytes failed with {e} ({:?})", e.kind());
        }
        let waited = t0.elapsed();
        acked.recv().expect("the peer read everything");
        assert!(waited >= LATE / 2, "{on}: write_all returned after {waited:?}, before the peer read");
    }

    /// A read of the empty socket after `set_nonblocking(true)`: `WouldBlock` at once.
    fn read_would_block(&mut self, on: &str) {
        let mut buf = [0u8; 16];
        match (&*self.s).read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            r => panic!("{on}: a non-blocking std read of an empty socket gave {r:?}, not WouldBlock"),
        }
    }
}

/// `F_GETFL` as the program sees it (the layer's `fcntl`) and as the kernel has it.
fn flags(fd: i32) -> (i32, i32) {
    // SAFETY: F_GETFL takes no pointer; the raw form is the plain system call.
    unsafe { (libc::fcntl(fd, libc::F_GETFL), libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) as i32) }
}

/// A socket connected by parlib's face on an upthread, so the layer made it
/// non-blocking; returns it as a std stream, the peer's command channel and the peer.
fn connected_by_parlib() -> (Arc<TcpStream>, mpsc::Sender<Peer>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().unwrap();
    small_buffers(listener.as_raw_fd());
    let (tx, rx) = mpsc::channel();
    let p = peer(listener, rx);
    let s = start(On::Upthreads, "connector".into(), move || {
        let fd = pio::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
        small_buffers(fd);
        pio::connect(fd, &pio::SockAddr::from(addr)).expect("parlib connect");
        // SAFETY: `fd` is a connected socket we own and hand to the stream.
        unsafe { TcpStream::from_raw_fd(fd) }
    })
    .wait();
    let (seen, raw) = flags(s.as_raw_fd());
    assert_ne!(raw & libc::O_NONBLOCK, 0, "precondition: the layer's connect made the socket non-blocking");
    assert_eq!(seen & libc::O_NONBLOCK, 0, "fcntl(F_GETFL) shows the layer's O_NONBLOCK");
    (Arc::new(s), tx, p)
}

/// The blocking calls of [`Side`] on `s`, from an upthread and from a plain thread.
fn std_calls_block_on_both_kinds_of_thread(s: &Arc<TcpStream>, tx: &mpsc::Sender<Peer>, what: &str) {
    for on in [On::Upthreads, On::PlainThreads] {
        let (s, tx) = (s.clone(), tx.clone());
        let what = format!("{what} on {on:?}");
        start(on, "blocking-side".into(), move || {
            let mut side = Side { s: &s, peer: &tx, seq: 0 };
            side.read_blocks(&what);
            side.write_blocks(&what);
            side.read_blocks(&what);
        })
        .wait();
    }
}

#[test]
fn std_calls_on_a_socket_the_layer_made_non_blocking_block_until_set_nonblocking() {
    parlib_testkit::isolated!(TIMEOUT, {
        init_upthread();
        let (s, tx, p) = connected_by_parlib();
        std_calls_block_on_both_kinds_of_thread(&s, &tx, "the layer's non-blocking socket");

        // A clone while the flag is the layer's: it blocks too.
        let c = Arc::new(s.try_clone().expect("try_clone"));
        std_calls_block_on_both_kinds_of_thread(&c, &tx, "a try_clone of it");
        drop(c);

        // The caller's own non-blocking mode: WouldBlock, on both kinds of thread.
        s.set_nonblocking(true).expect("set_nonblocking(true)");
        assert_ne!(flags(s.as_raw_fd()).0 & libc::O_NONBLOCK, 0, "F_GETFL after set_nonblocking(true)");
        for on in [On::Upthreads, On::PlainThreads] {
            let (s2, tx2) = (s.clone(), tx.clone());
            start(on, "nonblocking-side".into(), move || {
                Side { s: &s2, peer: &tx2, seq: 0 }
                    .read_would_block(&format!("set_nonblocking(true) on {on:?}"))
            })
            .wait();
        }

        // Blocking again.
        s.set_nonblocking(false).expect("set_nonblocking(false)");
        assert_eq!(flags(s.as_raw_fd()).0 & libc::O_NONBLOCK, 0, "F_GETFL after set_nonblocking(false)");
        std_calls_block_on_both_kinds_of_thread(&s, &tx, "after set_nonblocking(false)");
        let c = Arc::new(s.try_clone().expect("try_clone"));
        std_calls_block_on_both_kinds_of_thread(&c, &tx, "a try_clone after set_nonblocking(false)");

        drop(tx);
        let p = start(On::PlainThreads, "peer-joiner".into(), move || p.join().is_ok()).wait();
        assert!(p, "the peer failed (message above)");
    });
}

/// A clone shares the original's open file description, so `set_nonblocking(true)` on
/// the clone makes the original non-blocking too, as it does without parlib: a read of
/// the empty socket through the original gives `WouldBlock`, on an upthread and on a plain
/// thread, and `fcntl(F_GETFL)` of the original shows the flag. (Every finding is
/// collected, and the test fails with all of them.)
#[test]
fn set_nonblocking_through_a_clone_is_seen_through_the_original() {
    parlib_testkit::isolated!(TIMEOUT, {
        init_upthread();
        let (s, tx, p) = connected_by_parlib();
        let c = s.try_clone().expect("try_clone");
        c.set_nonblocking(true).expect("set_nonblocking(true) on the clone");
        let mut wrong = Vec::new();
        if flags(c.as_raw_fd()).0 & libc::O_NONBLOCK == 0 {
            wrong.push("fcntl(F_GETFL) of the clone hides O_NONBLOCK".to_string());
        }
        if flags(s.as_raw_fd()).0 & libc::O_NONBLOCK == 0 {
            wrong.push("fcntl(F_GETFL) of the original hides O_NONBLOCK".to_string());
        }
        for on in [On::Upthreads, On::PlainThreads] {
            let s2 = s.clone();
            // Should the read wait after all, this data ends the wait (and the check fails)
            // instead of the watchdog.
            tx.send(Peer::SendLate(b"rescue".to_vec())).unwrap();
            let got = start(on, "original-side".into(), move || {
                let mut buf = [0u8; 16];
                (&*s2).read(&mut buf).map_err(|e| e.kind())
            })
            .wait();
            match got {
                Err(ErrorKind::WouldBlock) => {
                    // Take the rescue data out (through the original: the clone's view
                    // is right in any case), so the next round starts empty.
                    std::thread::sleep(2 * LATE);
                    let mut buf = [0u8; 6];
                    assert_eq!((&*s).read(&mut buf).expect("the rescue data"), 6);
                }
                r => wrong.push(format!(
                    "a std read of the empty socket through the original on {on:?} gave {r:?} (after waiting \
                     for the peer's data), not WouldBlock"
                )),
            }
        }
        assert!(wrong.is_empty(), "after set_nonblocking(true) on a try_clone:\n{}", wrong.join("\n"));
        drop(tx);
        let p = start(On::PlainThreads, "peer-joiner".into(), move || p.join().is_ok()).wait();
        assert!(p, "the peer failed (message above)");
    });
}

// ---------------------------------------------------------------------------------------
// 4. Names.

#[test]
fn std_sees_a_named_upthreads_name_and_no_name_for_an_unnamed_one() {
    parlib_testkit::isolated!(TIMEOUT, {
        init_upthread();
        let hs: Vec<_> = (0..100)
            .map(|i| {
                let b = upthread::Builder::new();
                let b = if i % 2 == 0 { b.name(format!("named-{i}")) } else { b };
                b.spawn(move || {
                    let before = std::thread::current().name().map(String::from);
                    // Move about: the name is the thread's, not the vcore's.
                    for _ in 0..3 {
                        upthread::yield_now();
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    let after = std::thread::current().name().map(String::from);
                    (before, after, upthread::current_name())
                })
                .expect("spawn")
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let want = (i % 2 == 0).then(|| format!("named-{i}"));
            let (before, after, ours) = h.join().unwrap();
            assert_eq!(before, want, "thread {i}: std's name at start");
            assert_eq!(after, want, "thread {i}: std's name after yields and sleeps");
            assert_eq!(ours, want, "thread {i}: upthread's own name");
        }
    });
}

#[test]
fn a_panic_message_from_a_named_upthread_names_it() {
    let out = parlib_testkit::child_outcome!(TIMEOUT, {
        init_upthread();
        let h = upthread::Builder::new().name("the-panicker").spawn(|| panic!("on purpose, 4711")).unwrap();
        assert!(h.join().is_err(), "the panic is the join's Err");
        let h = upthread::spawn(|| panic!("unnamed on purpose, 4712"));
        assert!(h.join().is_err(), "the panic is the join's Err");
    });
    require_success(&out, "the panicking threads");
    assert!(
        panic_says(&out.stderr, "the-panicker", "on purpose, 4711"),
        "the named thread's panic message:\n{}",
        out.stderr
    );
    assert!(
        panic_says(&out.stderr, "<unnamed>", "unnamed on purpose, 4712"),
        "an unnamed upthread's panic message, as std words it for an unnamed thread:\n{}",
        out.stderr
    );
}

/// Whether `stderr` holds std's panic message for thread `name` with `message`:
/// "thread '{name}' ({tid}) panicked at {place}:" then the message on the next line (std
/// 1.95; older versions leave out the tid, and put the message on the same line).
fn panic_says(stderr: &str, name: &str, message: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().collect();
    lines.iter().enumerate().any(|(i, l)| {
        l.starts_with(&format!("thread '{name}' "))
            && l.contains(" panicked at ")
            && (l.contains(message) || lines.get(i + 1).is_some_and(|m| m.contains(message)))
    })
}
