//! A uthread that blocks in a system call is handed to its scheduler through
//! `Scheduler::thread_blockon_sysc`, with a `Syscall` record describing the call the
//! user made (DESIGN §4, §7; parlib's `sched_ops->thread_blockon_sysc`), so a scheduler
//! can tell returning syscalls from other wake-ups (upthread puts them at the head of its
//! queue). Syscall blocks do not also go through `thread_has_blocked`.
//!
//! The scheduler here is this file's own (one FIFO, one vcore): it records every
//! callback.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, BlockReason, Exited, Record, Runnable, Scheduler, Syscall, TlsMode};
use parlib_vcore::spin::SpinLock;

/// Bounds a hang only; nothing here depends on speed.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What the scheduler saw of one `thread_blockon_sysc`: number, first and third argument.
type Seen = (usize, usize, usize);

/// One FIFO for the one vcore; records the blocking callbacks.
struct Recorder {
    queue: SpinLock<VecDeque<Runnable<()>>>,
    sysc: SpinLock<Vec<Seen>>,
    has_blocked_syscall: AtomicUsize,
}

static SCHED: Recorder = Recorder {
    queue: SpinLock::new(VecDeque::new()),
    sysc: SpinLock::new(Vec::new()),
    has_blocked_syscall: AtomicUsize::new(0),
};
static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Scheduler for Recorder {
    type Thread = ();

    fn sched_entry(&self) -> ! {
        loop {
            let next = self.queue.lock().pop_front();
            if let Some(t) = next {
                uthread::run_uthread(t);
            }
            if parlib_events::events_pending() {
                parlib_events::handle_events();
            }
            std::hint::spin_loop();
        }
    }

    fn thread_runnable(&self, t: Runnable<()>) {
        self.queue.lock().push_back(t);
    }

    fn thread_has_blocked(&self, _: &Record<()>, reason: BlockReason) {
        if reason == BlockReason::Syscall {
            self.has_blocked_syscall.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn thread_blockon_sysc(&self, _: &Record<()>, s: &Syscall) {
        self.sysc.lock().push((s.num, s.args[0], s.args[2]));
    }

    fn thread_exited(&self, t: Exited<()>) {
        drop(t);
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

fn spawn(tls: TlsMode, body: impl FnOnce() + Send + 'static) {
    LIVE.fetch_add(1, Ordering::AcqRel);
    uthread::spawn((), tls, body).expect("uthread::spawn");
}

fn yield_until(mut done: impl FnMut() -> bool) {
    while !done() {
        uthread::yield_with(uthread::paused);
    }
}

/// On one vcore: a TLS-less uthread blocks reading an empty pipe (readiness wait), a
/// backed uthread blocks in `pread` of a regular file (its backing thread), and `main`
/// blocks in `open` (an offload worker). The scheduler sees each call as the user made
/// it, and never a `has_blocked(Syscall)` besides.
#[test]
fn each_blocking_call_reaches_the_scheduler_as_blockon_sysc_with_the_users_call() {
    static READER_BLOCKED: AtomicBool = AtomicBool::new(false);
    let body = || {
        let path = std::env::temp_dir().join(format!("parlib-blockon-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let cpath: &'static CString = Box::leak(Box::new(CString::new(path.to_str().unwrap()).unwrap()));
        uthread::lib_init(&SCHED, ()).expect("lib_init");
        parlib_alarms::init().expect("alarms");
        parlib_syscalls::init().expect("syscalls");

        let [r, w] = io::pipe2(libc::O_CLOEXEC).expect("pipe2");
        spawn(TlsMode::None, move || {
            READER_BLOCKED.store(true, Ordering::Release);
            let mut b = [0u8; 3];
            assert_eq!(io::read(r, &mut b).map_err(|e| e.raw_os_error()), Ok(3));
            assert_eq!(&b, b"abc");
        });
        yield_until(|| READER_BLOCKED.load(Ordering::Acquire));
        uthread::yield_with(uthread::paused); // the reader runs and blocks
        assert_eq!(io::write(w, b"abc").map_err(|e| e.raw_os_error()), Ok(3));
        spawn(TlsMode::Backed, move || {
            let fd = io::open(cpath, libc::O_RDONLY, 0).expect("open");
            let mut b = [0u8; 4];
            assert_eq!(io::pread(fd, &mut b, 3).map_err(|e| e.raw_os_error()), Ok(4));
            assert_eq!(&b, b"3456");
            io::close(fd).unwrap();
        });
        let fd = io::open(cpath, libc::O_RDONLY | libc::O_CLOEXEC, 0).expect("main's open");
        yield_until(|| LIVE.load(Ordering::Acquire) == 0);
        io::close(fd).unwrap();

        let seen = SCHED.sysc.lock().clone();
        let want_read = (libc::SYS_read as usize, r as usize, 3);
        assert!(seen.contains(&want_read), "the pipe read's block: {seen:?}");
        assert!(
            seen.iter().any(|s| s.0 == libc::SYS_pread64 as usize && s.2 == 4),
            "the backed uthread's pread: {seen:?}"
        );
        assert!(
            seen.iter().any(|s| s.0 == libc::SYS_openat as usize && s.1 == libc::AT_FDCWD as usize),
            "main's open: {seen:?}"
        );
        assert_eq!(
            SCHED.has_blocked_syscall.load(Ordering::Relaxed),
            0,
            "syscall blocks also went to has_blocked"
        );
        let _ = std::fs::remove_file(path);
    };
    isolated!(TIMEOUT, env = &[("VCORE_LIMIT", "1")], { body() });
}
