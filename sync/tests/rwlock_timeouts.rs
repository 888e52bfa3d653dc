//! `RawRwLock::timed_read_lock` and `timed_write_lock` (`rwlock.rs`, "Timed waits"):
//!
//! * they time out while the lock is held against them, and leave nothing queued;
//! * the writer holding the lock gets `EDEADLK` at once, whatever the deadline;
//! * a writer that times out lets in the readers that queued behind it, unless another
//!   writer still waits (then they keep waiting for that one);
//! * a hand-over that races the deadline is never lost: the timed waiter either gets
//!   the lock or the hand-over goes to the next waiter;
//! * on a uthread without a timeout service they are `EINVAL` and, again, leave nothing
//!   behind.
//!
//! The timed waiters are plain threads (their timeouts are kernel futex timeouts):
//! this crate sits below the alarms layer that serves uthreads' timeouts, which
//! upthread's `capi_rwlock` tests exercise. No test depends on how fast anything runs:
//! deadlines only decide *which* of the allowed outcomes happens.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use parlib_sync::{Deadline, Errno, RawRwLock};
use parlib_testkit::isolated;
use support::{gettid, spawn_plain, task_asleep, wait_for, Who};

const TIMEOUT: Duration = Duration::from_secs(60);

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// A deadline that has passed.
const PAST: Deadline = Deadline::at_monotonic_ns(0);

/// A deadline no test reaches: a call given it that returns did not wait for it.
fn far() -> Deadline {
    Deadline::after(Duration::from_secs(3600))
}

/// Whether a writer is queued: new readers are turned away while one is.
fn writer_queued(l: &RawRwLock) -> bool {
    match l.try_read_lock() {
        Ok(()) => {
            l.unlock().unwrap();
            false
        }
        Err(e) => {
            assert_eq!(e, Errno::BUSY);
            true
        }
    }
}

/// Starts a plain thread running `f(l)` and waits until it sleeps (queued on `l`) or
/// has finished (it did not have to wait, or its deadline came first).
fn start_queued<T: Send + 'static>(
    l: &'static RawRwLock,
    f: impl FnOnce(&'static RawRwLock) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let tid = leak(AtomicI32::new(0));
    let h = spawn_plain(move || {
        tid.store(gettid(), Ordering::Release);
        f(l)
    });
    wait_for(|| {
        h.is_finished() || (tid.load(Ordering::Acquire) != 0 && task_asleep(tid.load(Ordering::Acquire)))
    });
    h
}

#[test]
fn timed_locks_time_out_while_the_lock_is_held_against_them() {
    isolated!(TIMEOUT, {
        let l = leak(RawRwLock::new());
        l.write_lock().unwrap();
        let r = std::thread::spawn(move || {
            [
                l.timed_read_lock(PAST),
                l.timed_write_lock(PAST),
                l.timed_read_lock(Deadline::after(Duration::from_millis(5))),
                l.timed_write_lock(Deadline::after(Duration::from_millis(5))),
            ]
        })
        .join()
        .unwrap();
        assert_eq!(r, [Err(Errno::TIMEDOUT); 4], "held for writing");
        l.unlock().unwrap();

        l.read_lock().unwrap();
        let r = std::thread::spawn(move || {
            let read = l.timed_read_lock(PAST).and_then(|()| l.unlock());
            [read, l.timed_write_lock(PAST), l.timed_write_lock(Deadline::after(Duration::from_millis(5)))]
        })
        .join()
        .unwrap();
        assert_eq!(r, [Ok(()), Err(Errno::TIMEDOUT), Err(Errno::TIMEDOUT)], "held for reading");
        assert!(!writer_queued(l), "the timed-out writers left no count behind");
        l.unlock().unwrap();
        assert_eq!(l.destroy(), Ok(()));
        l.timed_write_lock(PAST).expect("a free lock is taken whatever the deadline");
        l.unlock().unwrap();
    });
}

#[test]
fn the_write_holder_gets_edeadlk_from_timed_locks_at_once() {
    isolated!(TIMEOUT, {
        let l = leak(RawRwLock::new());
        l.write_lock().unwrap();
        for _ in 0..2 {
            // Held once taken untimed, then once taken timed: both record the owner.
            assert_eq!(l.timed_read_lock(far()), Err(Errno::DEADLK));
            assert_eq!(l.timed_write_lock(far()), Err(Errno::DEADLK));
            assert_eq!(l.timed_write_lock(PAST), Err(Errno::DEADLK), "checked before the deadline");
            l.unlock().unwrap();
            l.timed_write_lock(far()).unwrap();
            assert_eq!(l.write_lock(), Err(Errno::DEADLK));
            assert_eq!(l.read_lock(), Err(Errno::DEADLK));
        }
        l.unlock().unwrap();
        assert_eq!(l.destroy(), Ok(()));
    });
}

/// Readers hold the lock; a timed writer queues, and a reader queues behind it. When
/// the writer times out, that reader must get in beside the holders: nobody else will
/// ever hand it the lock (the watchdog fails the test if it stays queued).
#[test]
fn a_timed_out_writer_does_not_strand_queued_readers() {
    isolated!(TIMEOUT, {
        let l = leak(RawRwLock::new());
        l.read_lock().unwrap();
        // If the machine is slow enough that the writer times out before the reader
        // queues, the reader simply gets in at once: the test passes, checking less.
        let writer = start_queued(l, |l| l.timed_write_lock(Deadline::after(Duration::from_millis(50))));
        let reader = start_queued(l, |l| {
            l.read_lock().unwrap();
            l.unlock()
        });
        assert_eq!(writer.join().unwrap(), Err(Errno::TIMEDOUT), "we still hold our read lock");
        assert_eq!(reader.join().unwrap(), Ok(()), "the reader got in beside us");
        assert!(!writer_queued(l));
        l.unlock().unwrap();
        assert_eq!(l.destroy(), Ok(()));
    });
}

/// As above, but another (untimed) writer also waits: the readers behind the timed-out
/// one must keep waiting for it, and get in after it.
#[test]
fn a_timed_out_writer_leaves_queued_readers_to_the_next_writer() {
    isolated!(TIMEOUT, {
        let l = leak(RawRwLock::new());
        let writer_in = leak(AtomicBool::new(false));
        l.read_lock().unwrap();
        let timed = start_queued(l, |l| l.timed_write_lock(Deadline::after(Duration::from_millis(20))));
        let untimed = start_queued(l, move |l| {
            l.write_lock().unwrap();
            writer_in.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            writer_in.store(false, Ordering::SeqCst);
            l.unlock()
        });
        let reader = start_queued(l, move |l| {
            l.read_lock().unwrap();
            let beside_writer = writer_in.load(Ordering::SeqCst);
            l.unlock().map(|()| beside_writer)
        });
        assert_eq!(timed.join().unwrap(), Err(Errno::TIMEDOUT));
        assert!(writer_queued(l), "the untimed writer still waits, so readers still queue");
        assert!(!reader.is_finished(), "the reader waits for the untimed writer");
        l.unlock().unwrap(); // the untimed writer, then the reader
        assert_eq!(untimed.join().unwrap(), Ok(()));
        assert_eq!(reader.join().unwrap(), Ok(false), "the reader got in, never beside the writer");
        assert_eq!(l.destroy(), Ok(()));
    });
}

/// The holder releases the lock around a timed waiter's deadline, with an untimed
/// waiter queued too. Either the timed waiter gets the lock, or the hand-over reaches
/// the untimed one; the lock ends up free. Timed readers and timed writers, each behind
/// a writer and behind readers.
#[test]
fn a_hand_over_racing_the_timeout_is_never_lost() {
    isolated!(TIMEOUT, {
        let (mut got, mut timed_out) = (0, 0);
        for i in 0..160u64 {
            let l = leak(RawRwLock::new());
            let timed_writes = i % 2 == 0;
            let held_for_writing = (i / 2) % 2 == 0 || !timed_writes; // readers would let a timed reader in
            if held_for_writing {
                l.write_lock().unwrap();
            } else {
                l.read_lock().unwrap();
            }
            let deadline = Deadline::after(Duration::from_millis(2));
            let timed = start_queued(l, move |l| {
                let r = if timed_writes { l.timed_write_lock(deadline) } else { l.timed_read_lock(deadline) };
                if r.is_ok() {
                    l.unlock().unwrap();
                }
                r
            });
            let untimed = start_queued(l, move |l| {
                if i % 3 == 0 {
                    l.read_lock().unwrap();
                } else {
                    l.write_lock().unwrap();
                }
                l.unlock()
            });
            // Release between 0 and 4 ms after the start: before, at or after the deadline.
            std::thread::sleep(Duration::from_micros((i * 53) % 4_000));
            l.unlock().unwrap();
            match timed.join().unwrap() {
                Ok(()) => got += 1,
                Err(Errno::TIMEDOUT) => timed_out += 1,
                Err(e) => panic!("timed lock: {e}"),
            }
            assert_eq!(untimed.join().unwrap(), Ok(()), "round {i}");
            assert_eq!(l.destroy(), Ok(()), "round {i}: the lock ends up free");
            assert!(!writer_queued(l), "round {i}: no writer count left behind");
        }
        eprintln!("timed waiters got the lock {got} times and timed out {timed_out} times");
    });
}

/// Without a timeout service (this test installs none), a uthread's timed wait is
/// `EINVAL`, and a writer refused that way must undo its place in the queue just as a
/// timed-out one does.
#[test]
fn a_uthread_without_a_timeout_service_gets_einval_and_leaves_no_trace() {
    isolated!(TIMEOUT, {
        common::init();
        let l = leak(RawRwLock::new());
        l.read_lock().unwrap();
        let r = support::run_as(Who::Uthread, move || [l.timed_write_lock(far()), l.timed_write_lock(PAST)]);
        assert_eq!(r, [Err(Errno::INVAL), Err(Errno::TIMEDOUT)]);
        assert!(!writer_queued(l), "the refused writer left no count behind");
        l.unlock().unwrap();
        l.write_lock().unwrap();
        let r = support::run_as(Who::Uthread, move || l.timed_read_lock(far()));
        assert_eq!(r, Err(Errno::INVAL));
        l.unlock().unwrap();
        assert_eq!(l.destroy(), Ok(()));
    });
}
