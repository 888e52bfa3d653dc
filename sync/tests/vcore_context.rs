//! Vcore context (scheduler callbacks, event handlers) may never block (DESIGN §2). A
//! blocking call there that would have to wait panics, naming the call; nothing can
//! unwind out of vcore context, so the process aborts with that message instead of
//! hanging the vcore. Calls that need no waiting (uncontended locks, trylocks, posts,
//! signals, futex wakes) work there, and may wake uthreads.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE};
use parlib_sync::{
    futex_wait, futex_wake, Condvar, Mutex, Once, RawBarrier, RawCondvar, RawMutex, RawRwLock, RawSemaphore,
};
use parlib_testkit::probe::assert_aborted_with;
use parlib_testkit::{child_outcome, isolated};
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;

const TIMEOUT: Duration = Duration::from_secs(20);
const EV_CALL: EventType = EventType(EV_USER_BASE.0 + 1);

/// Sends `EV_CALL` to the calling uthread's own vcore with notifications enabled, so the
/// handler runs (in vcore context) before `send_event` returns; the child aborts there
/// if the handler blocks.
fn run_handler_here(handler: fn(&EventMsg, EventType)) {
    events::register_handler(EV_CALL, handler).unwrap();
    let _g = parlib_uthread::NotifGuard::new(); // stay on this vcore until sent
    events::send_event(&EventMsg::default(), EV_CALL, vcore::id()).unwrap();
} // delivered here, as the guard re-enables notifications

#[test]
fn a_mutex_lock_that_would_block_in_a_scheduler_callback_aborts_naming_the_call() {
    static M: RawMutex = RawMutex::new();
    static ARMED: AtomicBool = AtomicBool::new(false);
    fn on_sched_entry() {
        if ARMED.load(Ordering::Acquire) {
            M.lock().unwrap(); // held by main: would block
        }
    }
    let out = child_outcome!(TIMEOUT, {
        common::on_sched_entry(on_sched_entry);
        common::init();
        M.lock().unwrap();
        ARMED.store(true, Ordering::Release);
        loop {
            common::yield_now(); // the scheduler runs the hook on the way
        }
    });
    assert_aborted_with(&out, "Mutex::lock would block in vcore context");
}

#[test]
fn a_semaphore_wait_with_no_units_in_an_event_handler_aborts_naming_the_call() {
    static S: RawSemaphore = RawSemaphore::new(0);
    let out = child_outcome!(TIMEOUT, {
        common::init();
        run_handler_here(|_, _| S.wait());
    });
    assert_aborted_with(&out, "Semaphore::wait would block in vcore context");
}

#[test]
fn a_condvar_wait_in_an_event_handler_aborts_naming_the_call() {
    static M: RawMutex = RawMutex::new();
    static CV: RawCondvar = RawCondvar::new();
    let out = child_outcome!(TIMEOUT, {
        common::init();
        run_handler_here(|_, _| {
            M.lock().unwrap(); // free: taking it does not block
            let _ = CV.wait(&M);
        });
    });
    assert_aborted_with(&out, "Condvar::wait would block in vcore context");
}

#[test]
fn a_contended_rwlock_in_an_event_handler_aborts_naming_the_call() {
    static L: RawRwLock = RawRwLock::new();
    let out = child_outcome!(TIMEOUT, {
        common::init();
        L.read_lock().unwrap(); // main reads; the handler wants to write
        run_handler_here(|_, _| {
            let _ = L.write_lock();
        });
    });
    assert_aborted_with(&out, "RwLock::write_lock would block in vcore context");
}

#[test]
fn a_barrier_wait_in_an_event_handler_aborts_naming_the_call() {
    static B: RawBarrier = RawBarrier::new(2);
    let out = child_outcome!(TIMEOUT, {
        common::init();
        run_handler_here(|_, _| {
            let _ = B.wait();
        });
    });
    assert_aborted_with(&out, "Barrier::wait would block in vcore context");
}

#[test]
fn a_futex_wait_in_an_event_handler_aborts_naming_the_call() {
    static WORD: AtomicU32 = AtomicU32::new(0);
    let out = child_outcome!(TIMEOUT, {
        common::init();
        run_handler_here(|_, _| {
            let _ = futex_wait(&WORD, 0);
        });
    });
    assert_aborted_with(&out, "futex_wait would block in vcore context");
}

#[test]
fn calls_that_need_no_waiting_work_in_vcore_context_and_wake_uthreads() {
    static M: Mutex<u32> = Mutex::new(0);
    static CV: Condvar = Condvar::new();
    static S: RawSemaphore = RawSemaphore::new(1);
    static SEM_WAITER: RawSemaphore = RawSemaphore::new(0);
    static WORD: AtomicU32 = AtomicU32::new(0);
    static ONCE: Once = Once::new();
    static L: RawRwLock = RawRwLock::new();
    static STEPS: AtomicUsize = AtomicUsize::new(0);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    fn handler(_: &EventMsg, _: EventType) {
        assert!(vcore::in_vcore_context());
        // Uncontended locks, trylocks and reads.
        *M.lock() += 1;
        drop(M.try_lock().expect("free"));
        L.read_lock().unwrap();
        L.unlock().unwrap();
        L.try_write_lock().unwrap();
        L.unlock().unwrap();
        S.wait(); // a unit is there
        S.post().unwrap();
        ONCE.call_once(|| {});
        // Wake-ups of uthreads, from vcore context.
        CV.notify_all();
        SEM_WAITER.post().unwrap();
        WORD.store(1, Ordering::SeqCst);
        futex_wake(&WORD, u32::MAX);
        STEPS.fetch_add(1, Ordering::SeqCst);
    }
    isolated!(TIMEOUT, {
        common::init();
        ONCE.call_once(|| {}); // completed: the handler's call returns at once
                               // Three uthreads wait, on a condvar, a semaphore and a futex word.
        let waiters = [
            common::spawn(TlsMode::Backed, || {
                let mut g = M.lock();
                while *g == 0 {
                    g = CV.wait(g);
                }
                WOKEN.fetch_add(1, Ordering::SeqCst);
            }),
            common::spawn(TlsMode::Backed, || {
                SEM_WAITER.wait();
                WOKEN.fetch_add(1, Ordering::SeqCst);
            }),
            common::spawn(TlsMode::Backed, || {
                while WORD.load(Ordering::SeqCst) == 0 {
                    let _ = futex_wait(&WORD, 0);
                }
                WOKEN.fetch_add(1, Ordering::SeqCst);
            }),
        ];
        for u in waiters {
            // SAFETY: none of them can finish before the handler wakes it.
            unsafe { support::wait_until_blocked(u) };
        }
        run_handler_here(handler);
        assert_eq!(STEPS.load(Ordering::SeqCst), 1, "the handler ran to its end");
        common::wait_all();
        assert_eq!(WOKEN.load(Ordering::SeqCst), 3, "every waiter was woken from vcore context");
        assert_eq!(*M.lock(), 1);
        assert_eq!(S.value(), 1);
    });
}
