//! A system call interrupted by a notification restarts (DESIGN §5): the notification
//! handler is installed with `SA_RESTART`, so the kernel rewinds a blocking `read` to
//! its `syscall` instruction before the handler runs; the uthread is switched out there
//! and, resumed, issues the call again. The caller never sees `EINTR`.
//!
//! The `syscall` instruction is inline assembly in this test binary, not libc's wrapper,
//! so the interrupted PC is a safe point and the uthread really is switched out.
//! While the uthread blocks in `read`, its whole vcore blocks; the test runs on one
//! vcore and the data comes from a plain thread.

use parlib_testsched as common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, TlsMode, Uthread};
use parlib_vcore as vcore;

const MESSAGE: &[u8] = b"hello from a plain thread";
const INTERRUPTIONS: usize = 50;

/// `read(fd, buf, len)` through the `syscall` instruction; returns the kernel's result
/// (`-errno` on failure).
fn raw_read(fd: i32, buf: &mut [u8]) -> isize {
    let ret: isize;
    // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`; `syscall` clobbers
    // only rax (the result), rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_read as isize => ret,
            in("rdi") fd as isize,
            in("rsi") buf.as_mut_ptr(),
            in("rdx") buf.len(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

static READER: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
static IN_READ: AtomicBool = AtomicBool::new(false);
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// Interruptions of the reader before the data was written: inside its `read`.
static INTERRUPTED_IN_READ: AtomicUsize = AtomicUsize::new(0);

fn on_tick_counting(pause: bool) {
    let Some(u) = uthread::interrupted() else { return };
    if u.as_ptr() == READER.load(Ordering::Acquire)
        && IN_READ.load(Ordering::Acquire)
        && !WRITTEN.load(Ordering::Acquire)
    {
        INTERRUPTED_IN_READ.fetch_add(1, Ordering::Relaxed);
        if pause {
            uthread::paused(uthread::take_interrupted().expect("it was interrupted"));
        }
    }
}

/// Resumes the reader in place, straight back into its `read`.
fn resume_in_place(_: &EventMsg, _: EventType) {
    on_tick_counting(false);
}

/// Preempts the reader: main runs before the reader re-issues its `read`.
fn preempt(_: &EventMsg, _: EventType) {
    on_tick_counting(true);
}

/// A pipe with nothing in it; a uthread reads it while a plain thread interrupts its
/// vcore with notifications, then writes MESSAGE. The read returns exactly MESSAGE.
fn interrupted_read_restarts(handler: events::Handler) {
    common::init();
    events::register_handler(EV_USER_IPI, handler).unwrap();
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (rd, wr) = (fds[0], fds[1]);
    static RESULT: AtomicUsize = AtomicUsize::new(0);
    static GOT: AtomicPtr<Vec<u8>> = AtomicPtr::new(core::ptr::null_mut());
    let reader: NonNull<Uthread> = common::spawn(TlsMode::Backed, move || {
        let mut buf = vec![0u8; 256];
        IN_READ.store(true, Ordering::Release);
        let n = raw_read(rd, &mut buf);
        IN_READ.store(false, Ordering::Release);
        RESULT.store(n as usize, Ordering::Relaxed);
        buf.truncate(n.max(0) as usize);
        GOT.store(Box::into_raw(Box::new(buf)), Ordering::Release);
    });
    READER.store(reader.as_ptr(), Ordering::Release);
    let writer = std::thread::spawn(move || {
        while !IN_READ.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Notify the reader's vcore until it has been interrupted inside read often enough.
        while INTERRUPTED_IN_READ.load(Ordering::Relaxed) < INTERRUPTIONS {
            std::thread::sleep(Duration::from_micros(500));
            events::send_event(&EventMsg::default(), EV_USER_IPI, 0).unwrap();
        }
        WRITTEN.store(true, Ordering::Release);
        // SAFETY: writes MESSAGE to the pipe's write end.
        let w = unsafe { libc::write(wr, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
        assert_eq!(w, MESSAGE.len() as isize);
    });
    common::wait_all();
    common::wait_until(|| writer.is_finished());
    writer.join().unwrap();
    let n = RESULT.load(Ordering::Relaxed) as isize;
    assert_ne!(n, -(libc::EINTR as isize), "read returned EINTR instead of restarting");
    assert_eq!(n, MESSAGE.len() as isize, "read returned {n}");
    // SAFETY: published once by the reader with Release; never freed.
    let got = unsafe { &*GOT.load(Ordering::Acquire) };
    assert_eq!(got.as_slice(), MESSAGE);
    assert!(INTERRUPTED_IN_READ.load(Ordering::Relaxed) >= INTERRUPTIONS);
    assert_eq!(vcore::max_vcores(), 1);
}

#[test]
fn a_read_interrupted_by_notifications_restarts_and_returns_the_data() {
    isolated!(Duration::from_secs(30), env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        interrupted_read_restarts(resume_in_place);
    });
}

#[test]
fn a_read_interrupted_and_preempted_restarts_when_the_uthread_runs_again() {
    isolated!(Duration::from_secs(30), env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        interrupted_read_restarts(preempt);
    });
}
