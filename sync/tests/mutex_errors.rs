//! The raw, pthread-shaped face reports misuse with glibc's errno values (DESIGN §8),
//! from uthreads and from plain threads alike:
//!
//! | primitive | misuse | errno |
//! |---|---|---|
//! | error-checking mutex | relock by the owner | `EDEADLK` |
//! | error-checking / recursive mutex | unlock by another uthread or thread | `EPERM` |
//! | any mutex | unlock while unlocked | `EPERM` |
//! | any mutex | trylock while held (error-checking: even by the owner) | `EBUSY` |
//! | any mutex | destroy or re-init while locked | `EBUSY` |
//! | recursive mutex | one unlock more than locks | `EPERM` |
//! | condvar | wait without holding the mutex | `EPERM` |
//! | condvar, semaphore, barrier | destroy with a waiter | `EBUSY` |
//! | barrier | a count of 0 | `EINVAL` |
//! | semaphore | post at `SEM_VALUE_MAX`; init above it | `EOVERFLOW`; `EINVAL` |
//! | rwlock | write or read lock while holding it for writing | `EDEADLK` |
//! | rwlock | unlock when not held, or a writer's lock by another | `EPERM` |
//! | rwlock | destroy while held | `EBUSY` |
//!
//! Each scenario runs with a uthread as the owner and with a plain thread as the owner,
//! and the "other" party is in turn a uthread and a plain thread; the last test runs
//! them all without the runtime (plain threads only, as a C program using the raw API
//! from ordinary threads would).

use parlib_testsched as common;
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parlib_sync::{
    Barrier, Errno, RawBarrier, RawCondvar, RawMutex, RawRwLock, RawSemaphore, Semaphore, MUTEX_ERRORCHECK,
    MUTEX_NORMAL, MUTEX_RECURSIVE, SEM_VALUE_MAX,
};
use parlib_testkit::isolated;
use support::{run_as, start, Who, BOTH};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh object that lives for the rest of the process, so closures running on other
/// uthreads and threads may borrow it.
fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// Runs `scenario` with the main uthread as the owner, then with a plain thread as the
/// owner, each time letting it use uthreads and threads as the "other" parties.
fn on_uthread_and_plain_thread(scenario: fn(&[Who])) {
    common::init();
    scenario(&BOTH);
    support::on_plain_thread(move || scenario(&BOTH));
}

// ---------------------------------------------------------------------------------------
// Scenarios. `others` are the kinds of caller that play "someone else".

fn error_checking_mutex(others: &[Who]) {
    let m = leak(RawMutex::with_kind(MUTEX_ERRORCHECK));
    assert_eq!(m.kind(), MUTEX_ERRORCHECK);
    assert_eq!(m.unlock(), Err(Errno::PERM), "unlock of an unlocked error-checking mutex");
    m.lock().unwrap();
    assert_eq!(m.lock(), Err(Errno::DEADLK), "relock by the owner");
    assert_eq!(m.lock(), Err(Errno::DEADLK), "a refused relock changes nothing");
    assert_eq!(m.try_lock(), Err(Errno::BUSY), "trylock by the owner");
    assert_eq!(m.destroy(), Err(Errno::BUSY), "destroy while locked");
    assert_eq!(m.init(MUTEX_NORMAL), Err(Errno::BUSY), "re-init while locked");
    assert_eq!(m.kind(), MUTEX_ERRORCHECK, "a refused init leaves the kind");
    for &who in others {
        assert_eq!(run_as(who, move || m.unlock()), Err(Errno::PERM), "unlock by another {who:?}");
        assert_eq!(run_as(who, move || m.try_lock()), Err(Errno::BUSY), "trylock by another {who:?}");
    }
    assert!(m.is_locked(), "the refused unlocks left it locked");
    m.unlock().expect("the owner unlocks");
    assert!(!m.is_locked());
    assert_eq!(m.unlock(), Err(Errno::PERM), "second unlock");
    assert_eq!(m.destroy(), Ok(()));
    // Ownership moves with the lock: while another caller holds it, *we* may neither
    // unlock nor take it, and its own unlock works.
    for &who in others {
        let (locked, checked) = (leak(AtomicBool::new(false)), leak(AtomicBool::new(false)));
        let other = start(who, move || {
            m.lock().unwrap();
            locked.store(true, Ordering::Release);
            support::wait_for(|| checked.load(Ordering::Acquire));
            m.unlock()
        });
        support::wait_for(|| locked.load(Ordering::Acquire));
        assert_eq!(m.unlock(), Err(Errno::PERM), "we unlocked a mutex another {who:?} holds");
        assert_eq!(m.try_lock(), Err(Errno::BUSY));
        assert_eq!(m.init(MUTEX_ERRORCHECK), Err(Errno::BUSY));
        checked.store(true, Ordering::Release);
        assert_eq!(other.join(), Ok(()), "the {who:?} unlocked its own hold");
        assert!(!m.is_locked());
    }
}

fn recursive_mutex(others: &[Who]) {
    let m = leak(RawMutex::with_kind(MUTEX_RECURSIVE));
    assert_eq!(m.unlock(), Err(Errno::PERM), "unlock of an unlocked recursive mutex");
    m.lock().unwrap();
    m.lock().unwrap();
    m.try_lock().expect("trylock by the owner of a recursive mutex counts too");
    for unlocks_left in (1..=3).rev() {
        assert!(m.is_locked(), "{unlocks_left} unlock(s) still owed");
        assert_eq!(m.destroy(), Err(Errno::BUSY));
        for &who in others {
            assert_eq!(run_as(who, move || m.try_lock()), Err(Errno::BUSY), "another {who:?} got it early");
            assert_eq!(run_as(who, move || m.unlock()), Err(Errno::PERM), "another {who:?} unlocked it");
        }
        m.unlock().expect("an owed unlock");
    }
    assert!(!m.is_locked(), "three locks, three unlocks");
    assert_eq!(m.unlock(), Err(Errno::PERM), "a fourth unlock");
    assert_eq!(m.destroy(), Ok(()));
    // Now another caller may take it, and it counts for that caller too.
    for &who in others {
        let r = run_as(who, move || -> Result<(bool, Result<(), Errno>), Errno> {
            m.try_lock()?;
            m.lock()?;
            m.unlock()?;
            let still_locked = m.is_locked();
            m.unlock()?;
            Ok((still_locked, m.unlock()))
        });
        assert_eq!(r, Ok((true, Err(Errno::PERM))), "another {who:?} used it recursively");
        assert!(!m.is_locked());
    }
    // A caller blocked in `lock` gets it only once the owner's count is back to 0.
    for &who in others {
        m.lock().unwrap();
        m.lock().unwrap();
        let (arrived, got) = (leak(AtomicBool::new(false)), leak(AtomicBool::new(false)));
        let other = start(who, move || {
            arrived.store(true, Ordering::Release);
            m.lock()?;
            got.store(true, Ordering::Release);
            m.unlock()
        });
        support::wait_for(|| arrived.load(Ordering::Acquire));
        for _ in 0..5 {
            support::pause(); // let it reach (and most likely block in) `lock`
        }
        m.unlock().unwrap(); // count 2 -> 1: still ours
        for _ in 0..5 {
            support::pause();
        }
        assert!(!got.load(Ordering::Acquire), "another {who:?} got it while the count was 1");
        m.unlock().unwrap(); // 1 -> 0: now it is free
        assert_eq!(other.join(), Ok(()));
        assert!(got.load(Ordering::Acquire));
        assert!(!m.is_locked());
    }
}

fn normal_mutex(others: &[Who]) {
    let m = leak(RawMutex::new());
    assert_eq!(m.kind(), MUTEX_NORMAL);
    assert_eq!(m.unlock(), Err(Errno::PERM), "unlock of an unlocked normal mutex");
    assert_eq!(m.init(MUTEX_ERRORCHECK + 1), Err(Errno::INVAL), "unknown kind");
    m.lock().unwrap();
    assert_eq!(m.try_lock(), Err(Errno::BUSY), "trylock of a held mutex");
    for &who in others {
        assert_eq!(run_as(who, move || m.try_lock()), Err(Errno::BUSY), "trylock by another {who:?}");
    }
    assert_eq!(m.destroy(), Err(Errno::BUSY));
    assert_eq!(m.init(MUTEX_RECURSIVE), Err(Errno::BUSY));
    m.unlock().unwrap();
    assert_eq!(m.destroy(), Ok(()));
    // Re-initialised as another kind, it behaves as that kind.
    m.init(MUTEX_ERRORCHECK).unwrap();
    m.lock().unwrap();
    assert_eq!(m.lock(), Err(Errno::DEADLK));
    m.unlock().unwrap();
}

fn condvar_wait_without_the_mutex(others: &[Who]) {
    let cv = leak(RawCondvar::new());
    let ec = leak(RawMutex::with_kind(MUTEX_ERRORCHECK));
    let normal = leak(RawMutex::new());
    assert_eq!(cv.wait(ec), Err(Errno::PERM), "wait with an unlocked error-checking mutex");
    assert_eq!(cv.wait(normal), Err(Errno::PERM), "wait with an unlocked normal mutex");
    let rec = leak(RawMutex::with_kind(MUTEX_RECURSIVE));
    assert_eq!(cv.wait(rec), Err(Errno::PERM), "wait with an unlocked recursive mutex");
    // Held by us, waited on by someone else.
    ec.lock().unwrap();
    for &who in others {
        assert_eq!(
            run_as(who, move || cv.wait(ec)),
            Err(Errno::PERM),
            "another {who:?} waited with our mutex"
        );
    }
    assert!(ec.is_locked(), "the refused waits did not release our mutex");
    ec.unlock().expect("still ours");
    // None of the refused waits left a node queued (it would dangle: it lived on the
    // refused caller's stack).
    assert_eq!(cv.destroy(), Ok(()), "a refused wait left a waiter queued");
    cv.signal();
    cv.broadcast();
}

fn condvar_destroy_with_a_waiter(others: &[Who]) {
    for &who in others {
        let cv = leak(RawCondvar::new());
        let m = leak(RawMutex::with_kind(MUTEX_ERRORCHECK));
        let go = leak(AtomicBool::new(false));
        let waiter = start(who, move || {
            m.lock().unwrap();
            let mut waits = 0;
            while !go.load(Ordering::Relaxed) {
                cv.wait(m).expect("a proper wait");
                waits += 1;
            }
            m.unlock().unwrap();
            waits
        });
        // Polling destroy is itself the way to see the waiter queued.
        support::wait_for(|| cv.destroy() == Err(Errno::BUSY));
        m.lock().unwrap(); // the waiter released it to wait
        go.store(true, Ordering::Relaxed);
        cv.signal();
        m.unlock().unwrap();
        assert!(waiter.join() >= 1, "the {who:?} waited");
        assert_eq!(cv.destroy(), Ok(()), "no waiter left");
    }
}

fn semaphore_limits(others: &[Who]) {
    let s = leak(RawSemaphore::new(SEM_VALUE_MAX));
    assert_eq!(s.post(), Err(Errno::OVERFLOW), "post at SEM_VALUE_MAX");
    assert_eq!(s.value(), SEM_VALUE_MAX, "a refused post changes nothing");
    assert_eq!(s.init(SEM_VALUE_MAX + 1), Err(Errno::INVAL));
    s.init(0).unwrap();
    assert_eq!(s.try_wait(), Err(Errno::AGAIN), "trywait at 0");
    s.post().unwrap();
    assert_eq!(s.value(), 1);
    s.try_wait().unwrap();
    assert_eq!(s.value(), 0);
    // The Rust face panics where the raw face returns EOVERFLOW.
    let full = Semaphore::new(SEM_VALUE_MAX);
    let r = catch_unwind(AssertUnwindSafe(|| full.release()));
    assert!(r.is_err(), "Semaphore::release at SEM_VALUE_MAX returned");
    assert_eq!(full.value(), SEM_VALUE_MAX);
    // Destroy with a waiter.
    for &who in others {
        let waiter = start(who, move || s.wait());
        support::wait_for(|| s.destroy() == Err(Errno::BUSY));
        assert_eq!(s.value(), 0, "0 while a caller waits");
        s.post().unwrap();
        waiter.join();
        assert_eq!(s.value(), 0, "the unit went to the waiter");
        assert_eq!(s.destroy(), Ok(()));
    }
}

fn barrier_limits(others: &[Who]) {
    assert_eq!(RawBarrier::new(0).wait(), Err(Errno::INVAL), "a barrier for 0 arrivals");
    let b = leak(RawBarrier::new(2));
    assert_eq!(b.init(0), Err(Errno::INVAL), "init(0)");
    let r = catch_unwind(|| Barrier::new(0));
    assert!(r.is_err(), "Barrier::new(0) returned");
    for &who in others {
        let waiter = start(who, move || b.wait());
        support::wait_for(|| b.destroy() == Err(Errno::BUSY));
        assert_eq!(b.init(3), Err(Errno::BUSY), "re-init in the middle of a phase");
        assert_eq!(b.wait(), Ok(true), "the last arrival is the serial one");
        assert_eq!(waiter.join(), Ok(false), "the {who:?} was released, not serial");
        assert_eq!(b.destroy(), Ok(()));
    }
    // A barrier for one never waits.
    b.init(1).unwrap();
    assert_eq!(b.wait(), Ok(true));
    assert_eq!(b.wait(), Ok(true));
}

fn rwlock_errors(others: &[Who]) {
    let l = leak(RawRwLock::new());
    assert_eq!(l.unlock(), Err(Errno::PERM), "unlock of a free rwlock");
    l.write_lock().unwrap();
    assert_eq!(l.write_lock(), Err(Errno::DEADLK), "write lock twice");
    assert_eq!(l.read_lock(), Err(Errno::DEADLK), "read lock while holding it for writing");
    assert_eq!(l.try_write_lock(), Err(Errno::BUSY));
    assert_eq!(l.try_read_lock(), Err(Errno::BUSY));
    assert_eq!(l.destroy(), Err(Errno::BUSY), "destroy while write-held");
    for &who in others {
        assert_eq!(
            run_as(who, move || l.unlock()),
            Err(Errno::PERM),
            "another {who:?} unlocked our write lock"
        );
        assert_eq!(run_as(who, move || l.try_read_lock()), Err(Errno::BUSY));
        assert_eq!(run_as(who, move || l.try_write_lock()), Err(Errno::BUSY));
    }
    l.unlock().expect("the writer unlocks");
    assert_eq!(l.unlock(), Err(Errno::PERM), "second unlock");
    assert_eq!(l.destroy(), Ok(()));
    // Read-held: shared with others, closed to writers, not destroyable.
    l.read_lock().unwrap();
    l.read_lock().expect("two read holds by one caller");
    assert_eq!(l.try_write_lock(), Err(Errno::BUSY));
    assert_eq!(l.destroy(), Err(Errno::BUSY), "destroy while read-held");
    for &who in others {
        let r = run_as(who, move || {
            l.try_read_lock()?;
            l.unlock()?;
            l.try_write_lock()
        });
        assert_eq!(r, Err(Errno::BUSY), "another {who:?} read, then could not write");
    }
    l.unlock().unwrap();
    l.unlock().unwrap();
    assert_eq!(l.unlock(), Err(Errno::PERM), "more unlocks than read holds");
    // Free again: a writer from elsewhere gets it, and its hold is its own.
    for &who in others {
        let (locked, checked) = (leak(AtomicBool::new(false)), leak(AtomicBool::new(false)));
        let other = start(who, move || {
            l.write_lock().unwrap();
            locked.store(true, Ordering::Release);
            support::wait_for(|| checked.load(Ordering::Acquire));
            l.unlock()
        });
        support::wait_for(|| locked.load(Ordering::Acquire));
        assert_eq!(l.unlock(), Err(Errno::PERM), "we unlocked another {who:?}'s write lock");
        assert_eq!(l.try_read_lock(), Err(Errno::BUSY));
        assert_eq!(l.try_write_lock(), Err(Errno::BUSY));
        assert_eq!(l.destroy(), Err(Errno::BUSY));
        checked.store(true, Ordering::Release);
        assert_eq!(other.join(), Ok(()), "the {who:?} unlocked its own write lock");
        assert_eq!(l.destroy(), Ok(()));
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn error_checking_mutex_refuses_relock_foreign_unlock_and_destroy_while_locked() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(error_checking_mutex);
    });
}

#[test]
fn recursive_mutex_counts_its_locks_and_stays_closed_to_others_until_zero() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(recursive_mutex);
    });
}

#[test]
fn normal_mutex_refuses_trylock_when_held_unlock_when_free_and_destroy_when_locked() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(normal_mutex);
    });
}

#[test]
fn condvar_wait_without_holding_the_mutex_is_eperm_and_leaves_nothing_queued() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(condvar_wait_without_the_mutex);
    });
}

#[test]
fn destroying_a_condvar_with_a_waiter_is_ebusy() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(condvar_destroy_with_a_waiter);
    });
}

#[test]
fn semaphore_post_at_its_maximum_is_eoverflow_and_destroy_with_a_waiter_is_ebusy() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(semaphore_limits);
    });
}

#[test]
fn barrier_of_zero_is_einval_and_destroy_mid_phase_is_ebusy() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(barrier_limits);
    });
}

#[test]
fn rwlock_reports_deadlock_foreign_unlock_and_destroy_while_held() {
    isolated!(TIMEOUT, {
        on_uthread_and_plain_thread(rwlock_errors);
    });
}

#[test]
fn every_error_is_reported_the_same_without_the_runtime() {
    // No lib_init: plain threads only, as a C program using the raw API would.
    isolated!(TIMEOUT, {
        let threads = [Who::Thread];
        error_checking_mutex(&threads);
        recursive_mutex(&threads);
        normal_mutex(&threads);
        condvar_wait_without_the_mutex(&threads);
        condvar_destroy_with_a_waiter(&threads);
        semaphore_limits(&threads);
        barrier_limits(&threads);
        rwlock_errors(&threads);
    });
}
