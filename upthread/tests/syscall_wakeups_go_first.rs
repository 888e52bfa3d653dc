//! A thread woken after blocking in a system call goes to the head of its vcore's queue:
//! it runs before threads that were already waiting there.

mod support;

use std::ffi::CString;

use parlib_sync::{Mutex, Semaphore};
use support::TIMEOUT;

static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
static GATE: Semaphore = Semaphore::new(0);

#[test]
fn a_thread_back_from_a_syscall_runs_before_the_queue() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("VCORE_LIMIT", "1")], {
        support::init();
        let dir = std::env::temp_dir().join(format!("upthread-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let queued = |name| {
            parlib_upthread::spawn(move || {
                GATE.acquire();
                ORDER.lock().push(name);
            })
        };
        let (b, c) = (queued("queued 1"), queued("queued 2"));
        let path = fifo.clone();
        // `open` runs on the thread's backing thread; on a FIFO it blocks until a writer
        // opens it, so the thread stays blocked in the system call until we say so.
        let a = parlib_upthread::spawn(move || {
            let fd = parlib_syscalls::io::open(&path, libc::O_RDONLY | libc::O_CLOEXEC, 0).expect("open");
            ORDER.lock().push("syscall");
            parlib_syscalls::io::close(fd).expect("close");
        });
        parlib_upthread::yield_now(); // b and c block on the gate, a in open
        {
            // No interruption from here: the completion's event waits until the guard goes.
            let _quiet = parlib_uthread::NotifGuard::new();
            GATE.release();
            GATE.release(); // b, then c, queued at the tail
            let w = loop {
                // Non-blocking: ENXIO until the backing thread is in its open, waiting
                // for a writer. A plain system call: `open` itself is the syscall layer's
                // wrapper, which would run it off this uthread and let the vcore go on.
                let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
                // SAFETY: a valid path.
                let w =
                    unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, fifo.as_ptr(), flags) } as i32;
                let e = std::io::Error::last_os_error();
                if w >= 0 || e.raw_os_error() != Some(libc::ENXIO) {
                    assert!(w >= 0, "open the FIFO for writing: {e}");
                    break w;
                }
                core::hint::spin_loop();
            };
            while !parlib_events::events_pending() {
                core::hint::spin_loop(); // the completion event has not arrived yet
            }
            // SAFETY: our descriptor.
            unsafe { libc::close(w) };
        } // the event is handled here: a becomes runnable
        a.join().unwrap();
        b.join().unwrap();
        c.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(*ORDER.lock(), ["syscall", "queued 1", "queued 2"]);
    });
}
