//! Standard streams (0-2) are shared with other processes: `O_NONBLOCK` belongs to the open
//! file description, so a flag the layer set on a terminal or a pipeline's pipe would
//! make the shell's (or a sibling's) reads and writes fail with `EAGAIN`, even after this
//! process exits. The layer never sets it there: a uthread's call asks `poll` first and
//! waits for readiness, blocking only itself.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{ONE_VCORE, TIMEOUT};

/// A uthread's writes to standard output (the test child's stdout is a pipe to the test
/// runner) and standard error go out whole, and leave both without `O_NONBLOCK`.
#[test]
fn writes_to_standard_streams_leave_them_blocking() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        static DONE: AtomicBool = AtomicBool::new(false);
        support::spawn(TlsMode::Backed, || {
            for fd in [1, 2] {
                let line = format!("a whole line from a uthread to fd {fd}\n");
                assert_eq!(support::errno_of(io::write(fd, line.as_bytes())), Ok(line.len()));
            }
            DONE.store(true, Ordering::Release);
        });
        common::wait_until(|| DONE.load(Ordering::Acquire));
        for fd in [1, 2] {
            assert_eq!(support::fd_flags(fd) & libc::O_NONBLOCK, 0, "the layer made fd {fd} non-blocking");
        }
    });
}

/// Standard input made a pipe of ours (`dup2`): a uthread's read of it, empty, blocks only
/// that uthread (another on the one vcore keeps counting) until the write, and the pipe's
/// read end (shared by descriptors 0 and the original) is never made non-blocking.
#[test]
fn a_read_of_standard_input_blocks_only_the_uthread_and_leaves_it_blocking() {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static READ: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = support::pipe();
        // SAFETY: dup2 of descriptors we own onto standard input.
        assert_eq!(unsafe { libc::dup2(r, 0) }, 0);
        support::spawn(TlsMode::Backed, || {
            let mut b = [0u8; 5];
            assert_eq!(support::errno_of(io::read(0, &mut b)), Ok(5));
            assert_eq!(&b, b"input");
            assert!(COUNT.load(Ordering::Relaxed) >= 100, "the reader did not wait for the writer");
            READ.store(true, Ordering::Release);
        });
        support::spawn(TlsMode::Backed, move || {
            while COUNT.fetch_add(1, Ordering::Relaxed) < 100 {
                common::yield_now(); // runs while the reader waits: it did not block the vcore
            }
            support::write_all(w, b"input");
        });
        common::wait_until(|| READ.load(Ordering::Acquire));
        assert_eq!(support::fd_flags(0) & libc::O_NONBLOCK, 0, "the layer made standard input non-blocking");
        common::wait_all();
    });
}
