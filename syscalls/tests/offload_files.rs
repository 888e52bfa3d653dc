//! Regular files go through the offload path (DESIGN §7: "Calls that cannot be made
//! non-blocking (regular files, `open`, ...) run on the uthread's backing thread, with its
//! TLS, and complete with an `EV_SYSCALL` event"), and come back with the right bytes and
//! the right errno:
//!
//! * `open` / `read` / `pread` / `write` / `pwrite` / `close` on uthreads with backing TLS
//!   (offloaded to the backing thread), on TLS-less uthreads and on `main` (offloaded to
//!   the layer's offload workers);
//! * a failing offloaded `open` gives `ENOENT`, and through the C face that errno lands in
//!   the calling uthread's own `errno`, leaving another uthread's untouched;
//! * the offloaded call really runs on the backing thread that owns the uthread's TLS
//!   (and, for `main` and TLS-less uthreads, off the vcore);
//! * a uthread blocked in an offloaded call (`open` of a FIFO with no writer yet) does not
//!   block its vcore, whether it is backed, TLS-less or `main`.
//!
//! Files are made with `std::fs` on the plain test thread before the runtime starts.

use parlib_testsched as common;
mod support;

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use parlib_syscalls::{cabi, io, raw};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;
use support::{errno_of, Rng, ONE_VCORE, TIMEOUT};

/// Size of the test file: several pages, not a multiple of any read size used.
const FILE_LEN: usize = 100_003;

/// A fresh path in the temporary directory, unique to this process and `tag`.
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("parlib-syscalls-{tag}-{}", std::process::id()))
}

fn file_bytes() -> Vec<u8> {
    let mut v = vec![0u8; FILE_LEN];
    support::fill_pattern(&mut v, 42, 7);
    v
}

/// Writes the test file on the calling plain thread; returns its path as a C string.
fn make_file(tag: &str) -> (PathBuf, &'static CString) {
    let path = temp_path(tag);
    std::fs::write(&path, file_bytes()).expect("write the test file");
    let c = CString::new(path.to_str().expect("a UTF-8 temp path")).unwrap();
    (path, Box::leak(Box::new(c)))
}

fn open(path: &CString, flags: i32) -> i32 {
    io::open(path, flags | libc::O_CLOEXEC, 0o600).unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

/// Reads the whole file through `read` in chunks of varying size, then checks `pread` at
/// random offsets and past the end, and `close`; with `alone` (nothing else opens files
/// meanwhile, so the number cannot be reused) also that closing again gives EBADF.
fn read_and_check(path: &CString, seed: u64, alone: bool) {
    let want = file_bytes();
    let fd = open(path, libc::O_RDONLY);
    let mut rng = Rng::new(seed);
    let mut got = Vec::with_capacity(FILE_LEN);
    let mut buf = vec![0u8; 9000];
    loop {
        let n = rng.range(1, buf.len());
        match io::read(fd, &mut buf[..n]) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got.len(), FILE_LEN, "read returned a different length than the file's");
    assert!(got == want, "read returned other bytes than the file's");
    for _ in 0..50 {
        let off = rng.range(0, FILE_LEN - 1);
        let n = rng.range(1, buf.len());
        let k = io::pread(fd, &mut buf[..n], off as u64).unwrap_or_else(|e| panic!("pread: {e}"));
        assert_eq!(k, n.min(FILE_LEN - off), "pread of {n} at {off}: wrong length");
        assert!(buf[..k] == want[off..off + k], "pread of {n} at {off}: wrong bytes");
    }
    assert_eq!(errno_of(io::pread(fd, &mut buf[..10], FILE_LEN as u64)), Ok(0), "pread at the end");
    // SAFETY: `buf` is valid for writes of 10 bytes.
    let negative = unsafe { raw::pread(fd, buf.as_mut_ptr(), 10, -1) };
    assert_eq!(negative, Err(libc::EINVAL), "pread at a negative offset (the raw layer's `off_t`)");
    assert_eq!(errno_of(io::read(fd, &mut buf[..10])), Ok(0), "read at EOF");
    assert_eq!(errno_of(io::close(fd)), Ok(()), "close");
    if alone {
        assert_eq!(errno_of(io::close(fd)), Err(libc::EBADF), "closing twice");
    }
}

#[test]
fn file_reads_return_the_files_bytes_on_backed_and_tls_less_uthreads_and_main() {
    /// Readers at once, half with backing threads (offloaded), half TLS-less (in place).
    const READERS: usize = 64;
    static DONE: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        let (path, cpath) = make_file("read");
        support::init_runtime();
        for k in 0..READERS as u64 {
            let tls = if k % 2 == 0 { TlsMode::Backed } else { TlsMode::None };
            support::spawn(tls, move || {
                read_and_check(cpath, k, false);
                DONE.fetch_add(1, Ordering::Relaxed);
            });
        }
        read_and_check(cpath, 98, false); // main: no backing thread, runs in place
        common::wait_all();
        assert_eq!(DONE.load(Ordering::Relaxed), READERS, "not every reader finished");
        read_and_check(cpath, 99, true);
        std::fs::remove_file(path).expect("remove the test file");
    });
}

#[test]
fn file_writes_through_the_offload_path_land_in_the_file() {
    isolated!(TIMEOUT, {
        let path = temp_path("write");
        let _ = std::fs::remove_file(&path);
        let cpath: &'static CString = Box::leak(Box::new(CString::new(path.to_str().unwrap()).unwrap()));
        support::init_runtime();
        support::spawn(TlsMode::Backed, move || {
            let fd = open(cpath, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
            let want = file_bytes();
            // Sequential writes of varying size, then a positioned overwrite of a stretch.
            let mut rng = Rng::new(5);
            let mut at = 0;
            while at < want.len() {
                let n = rng.range(1, 7000).min(want.len() - at);
                let k = io::write(fd, &want[at..at + n]).unwrap_or_else(|e| panic!("write: {e}"));
                assert!(k > 0 && k <= n, "write of {n} bytes returned {k}");
                at += k;
            }
            let patch = [0xA5u8; 333];
            assert_eq!(errno_of(io::pwrite(fd, &patch, 4096)), Ok(patch.len()), "pwrite");
            let mut back = vec![0u8; patch.len()];
            assert_eq!(errno_of(io::pread(fd, &mut back, 4096)), Ok(patch.len()), "pread");
            assert_eq!(back, patch, "pread did not see pwrite's bytes");
            assert_eq!(errno_of(io::close(fd)), Ok(()), "close");
            // Exclusive creation of an existing file fails on the offload path too.
            assert_eq!(
                errno_of(io::open(cpath, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)),
                Err(libc::EEXIST),
                "O_EXCL on an existing file"
            );
        });
        common::wait_all();
        let got = support::on_plain_thread({
            let path = path.clone();
            move || std::fs::read(path).expect("read the file back")
        });
        let mut want = file_bytes();
        want[4096..4096 + 333].fill(0xA5);
        assert_eq!(got.len(), want.len(), "file length after the writes");
        assert!(got == want, "the file's bytes are not what was written");
        std::fs::remove_file(path).expect("remove the test file");
    });
}

/// On one vcore, so both uthreads share it: B's failing `parlib_open` sets B's errno to
/// ENOENT, and A, which set its errno to a sentinel and ran in between, still has it.
#[test]
fn a_failing_offloaded_open_sets_only_the_calling_uthreads_errno() {
    static A_READY: AtomicBool = AtomicBool::new(false);
    static B_DONE: AtomicBool = AtomicBool::new(false);
    const SENTINEL: i32 = 0x7171;
    isolated!(TIMEOUT, env = ONE_VCORE, {
        let missing = temp_path("missing");
        let _ = std::fs::remove_file(&missing);
        let cmissing: &'static CString =
            Box::leak(Box::new(CString::new(missing.to_str().unwrap()).unwrap()));
        // What plain libc says, on this (still plain) thread.
        // SAFETY: a valid NUL-terminated path.
        let r = unsafe { libc::open(cmissing.as_ptr(), libc::O_RDONLY) };
        assert_eq!((r, support::errno()), (-1, libc::ENOENT), "plain libc open of a missing path");

        support::init_runtime();
        assert_eq!(vcore::max_vcores(), 1);
        support::spawn(TlsMode::Backed, || {
            support::set_errno(SENTINEL);
            A_READY.store(true, Ordering::Release);
            while !B_DONE.load(Ordering::Acquire) {
                common::yield_now();
                assert_eq!(support::errno(), SENTINEL, "another uthread's failing call changed our errno");
            }
            assert_eq!(support::errno(), SENTINEL, "another uthread's failing call changed our errno");
        });
        support::spawn(TlsMode::Backed, move || {
            common::wait_until(|| A_READY.load(Ordering::Acquire));
            assert_eq!(errno_of(io::open(cmissing, libc::O_RDONLY, 0)), Err(libc::ENOENT), "io::open");
            support::set_errno(0);
            // SAFETY: a valid NUL-terminated path.
            let r = unsafe { cabi::parlib_open(cmissing.as_ptr(), libc::O_RDONLY, 0) };
            assert_eq!(r, -1, "parlib_open of a missing path");
            assert_eq!(support::errno(), libc::ENOENT, "errno after parlib_open of a missing path");
            // It stays ours while A runs.
            for _ in 0..10 {
                common::yield_now();
                assert_eq!(support::errno(), libc::ENOENT, "our errno changed while another uthread ran");
            }
            B_DONE.store(true, Ordering::Release);
        });
        common::wait_all();
        assert!(B_DONE.load(Ordering::Relaxed));
    });
}

/// The thread id glibc recorded in the calling TLS block's thread descriptor: that of the
/// Linux thread that created the TLS (for a backed uthread, its backing thread). glibc's
/// `pthread_getcpuclockid` encodes it as `(~tid << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED`.
fn tls_owner_tid() -> i32 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self() is the running TLS's own descriptor.
    assert_eq!(unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) }, 0);
    assert_eq!(clock & 7, 6, "not a per-thread CPUCLOCK_SCHED clock id");
    !(clock >> 3)
}

/// The id of the Linux thread that opens `/proc/thread-self/stat`, read through the
/// layer (both the open and the read are regular-file calls).
fn opener_tid() -> i32 {
    let path = c"/proc/thread-self/stat";
    let fd = io::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .unwrap_or_else(|e| panic!("open /proc/thread-self/stat: {e}"));
    let mut buf = [0u8; 64];
    let n = io::read(fd, &mut buf).expect("read /proc/thread-self/stat");
    io::close(fd).expect("close");
    let s = std::str::from_utf8(&buf[..n]).unwrap();
    s.split(' ').next().unwrap().parse().expect("a thread id first in stat")
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// `/proc/thread-self` names the task that opens it, so an offloaded open reveals where
/// it ran: on a backed uthread, on the backing thread whose TLS the uthread runs on (not
/// on the vcore), the same one every time; on a TLS-less uthread and on `main`, on an
/// offload worker (not on the vcore either).
#[test]
fn offloaded_calls_run_on_the_backing_thread_that_owns_the_uthreads_tls() {
    static TIDS: [AtomicI32; 2] = [const { AtomicI32::new(0) }; 2];
    isolated!(TIMEOUT, {
        support::init_runtime();
        for slot in &TIDS {
            support::spawn(TlsMode::Backed, move || {
                let owner = tls_owner_tid();
                for _ in 0..5 {
                    let vcore_tid = gettid();
                    let t = opener_tid();
                    assert_ne!(t, vcore_tid, "an offloaded open ran on the vcore's own task");
                    assert_eq!(t, owner, "an offloaded open ran on a thread other than the TLS's owner");
                    common::yield_now();
                }
                slot.store(owner, Ordering::Relaxed);
            });
        }
        support::spawn(TlsMode::None, || {
            for _ in 0..5 {
                let vcore_tid = gettid();
                assert_ne!(opener_tid(), vcore_tid, "a TLS-less uthread's open ran on the vcore's own task");
                common::yield_now();
            }
        });
        for _ in 0..5 {
            let vcore_tid = gettid();
            assert_ne!(opener_tid(), vcore_tid, "main's open ran on the vcore's own task");
            common::yield_now();
        }
        common::wait_all();
        let (a, b) = (TIDS[0].load(Ordering::Relaxed), TIDS[1].load(Ordering::Relaxed));
        assert!(a > 0 && b > 0 && a != b, "two uthreads shared a backing thread ({a}, {b})");
    });
}

/// On one vcore: uthread A's offloaded `open` of a FIFO blocks (in the kernel, on its
/// backing thread) until a writer opens it; meanwhile uthread C keeps counting, and only
/// then opens the write end. A gets C's bytes through the FIFO.
#[test]
fn a_uthread_blocked_in_an_offloaded_open_does_not_block_its_vcore() {
    const SPINS: u64 = 2000;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static OPENED: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        let fifo = temp_path("fifo");
        let _ = std::fs::remove_file(&fifo);
        let cfifo: &'static CString = Box::leak(Box::new(CString::new(fifo.to_str().unwrap()).unwrap()));
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o600) }, 0, "mkfifo");
        support::init_runtime();
        assert_eq!(vcore::max_vcores(), 1);
        support::spawn(TlsMode::Backed, move || {
            let before = COUNTER.load(Ordering::Relaxed);
            let fd = open(cfifo, libc::O_RDONLY);
            OPENED.store(true, Ordering::Release);
            let after = COUNTER.load(Ordering::Relaxed);
            assert!(
                after - before >= SPINS,
                "the vcore ran only {} yields while the open blocked",
                after - before
            );
            let mut buf = [0u8; 32];
            support::read_exact(fd, &mut buf[..5]);
            assert_eq!(&buf[..5], b"hello", "bytes through the FIFO");
            assert_eq!(errno_of(io::read(fd, &mut buf)), Ok(0), "EOF after the writer closed");
            support::close(fd);
        });
        support::spawn(TlsMode::Backed, move || {
            while COUNTER.load(Ordering::Relaxed) < SPINS {
                assert!(!OPENED.load(Ordering::Acquire), "a FIFO opened for reading without a writer");
                COUNTER.fetch_add(1, Ordering::Relaxed);
                common::yield_now();
            }
            let fd = open(cfifo, libc::O_WRONLY);
            support::write_all(fd, b"hello");
            support::close(fd);
        });
        common::wait_all();
        assert!(OPENED.load(Ordering::Relaxed));
        std::fs::remove_file(fifo).expect("remove the FIFO");
    });
}

/// Item 2 of the gaps in issue 6: `main` and TLS-less uthreads have no backing thread, and
/// their offloaded calls used to run in place, blocking the vcore. On one vcore: a
/// TLS-less uthread's `open` of a FIFO blocks until `main` (which keeps yielding
/// meanwhile) opens the write end; then `main`'s own `open` of a second FIFO blocks until
/// a TLS-less uthread that keeps yielding opens that one's write end. With the old
/// in-place call, either open would have hung the only vcore (the watchdog's failure).
#[test]
fn main_and_tls_less_uthreads_blocked_in_an_offloaded_open_do_not_block_their_vcore() {
    const SPINS: u64 = 200;
    static OPENED: AtomicBool = AtomicBool::new(false);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        let fifos = ["fifo-a", "fifo-b"].map(|t| {
            let p = temp_path(t);
            let _ = std::fs::remove_file(&p);
            let c: &'static CString = Box::leak(Box::new(CString::new(p.to_str().unwrap()).unwrap()));
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
            (p, c)
        });
        let (a, b) = (fifos[0].1, fifos[1].1);
        support::init_runtime();
        assert_eq!(vcore::max_vcores(), 1);

        // A TLS-less reader blocks in open; main keeps the vcore busy, then writes.
        support::spawn(TlsMode::None, move || {
            let fd = open(a, libc::O_RDONLY);
            OPENED.store(true, Ordering::Release);
            let mut buf = [0u8; 4];
            support::read_exact(fd, &mut buf);
            assert_eq!(&buf, b"ping");
            support::close(fd);
        });
        for _ in 0..SPINS {
            assert!(!OPENED.load(Ordering::Acquire), "a FIFO opened for reading without a writer");
            common::yield_now();
        }
        let w = open(a, libc::O_WRONLY);
        support::write_all(w, b"ping");
        support::close(w);
        common::wait_all();

        // Main blocks in open; a TLS-less uthread runs meanwhile, then opens the write end.
        support::spawn(TlsMode::None, move || {
            while COUNTER.load(Ordering::Relaxed) < SPINS {
                COUNTER.fetch_add(1, Ordering::Relaxed);
                common::yield_now();
            }
            let w = open(b, libc::O_WRONLY);
            support::write_all(w, b"pong");
            support::close(w);
        });
        let r = open(b, libc::O_RDONLY);
        assert!(COUNTER.load(Ordering::Relaxed) >= SPINS, "main's open returned before a writer came");
        let mut buf = [0u8; 4];
        support::read_exact(r, &mut buf);
        assert_eq!(&buf, b"pong");
        support::close(r);
        common::wait_all();
        for (p, _) in fifos {
            std::fs::remove_file(p).expect("remove a FIFO");
        }
    });
}
