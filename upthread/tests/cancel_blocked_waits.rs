//! A cancel (or a uthread-directed signal) ends a wait in a cancellation point: condvar
//! waits (cleanup handlers run with the mutex held), semaphore waits, joins and sleeps.
//! Waits that race their normal wake-up end exactly once and lose no wake-up.
//!
//! Each test makes sure the worker is really blocked before it is cancelled (its uthread
//! state is `Blocked`), so the interrupt path is the one tested, not the cancellation
//! point on entry.

mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use libc::{c_void, pthread_cond_t, pthread_mutex_t, sem_t};
use parlib_upthread::cancel::*;
use parlib_upthread::capi::*;
use parlib_upthread::upthread_t;
use parlib_uthread::{State, Uthread};
use support::{create, join, wait_until, TIMEOUT};

/// Yields until thread `t` is blocked. An upthread handle is the address of its record,
/// a `parlib_uthread::Record`, which starts with its `Uthread`.
fn wait_until_blocked(t: upthread_t) {
    // SAFETY: `t` is a live thread the caller has not joined; its record starts with its
    // uthread.
    let u = unsafe { &*(t as *const Uthread) };
    wait_until(|| u.state() == State::Blocked);
}

/// Storage for a C object the tests share between threads.
struct Shared<T>(core::cell::UnsafeCell<T>);
// SAFETY: only used through the upthread C API, which synchronises.
unsafe impl<T> Sync for Shared<T> {}
impl<T> Shared<T> {
    fn get(&self) -> *mut T {
        self.0.get()
    }
}

fn zeroed<T>() -> Shared<T> {
    // SAFETY: all-zero bytes are a valid mutex, condvar and semaphore (at 0) for upthread.
    Shared(core::cell::UnsafeCell::new(unsafe { core::mem::zeroed() }))
}

static HANDLER_SAW_MUTEX_HELD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn check_held_and_unlock(m: *mut c_void) {
    // A normal mutex held by anyone (us) refuses a trylock.
    // SAFETY: the test's mutex.
    let r = unsafe { upthread_mutex_trylock(m.cast()) };
    HANDLER_SAW_MUTEX_HELD.store((r == libc::EBUSY) as i32, Ordering::SeqCst);
    // SAFETY: the test's mutex, held by this thread.
    assert_eq!(unsafe { upthread_mutex_unlock(m.cast()) }, 0);
}

#[test]
fn a_cancel_ends_a_condvar_wait_and_cleanup_runs_with_the_mutex_held() {
    static M: std::sync::LazyLock<Shared<pthread_mutex_t>> = std::sync::LazyLock::new(zeroed);
    static C: std::sync::LazyLock<Shared<pthread_cond_t>> = std::sync::LazyLock::new(zeroed);
    extern "C" fn waiter(_: *mut c_void) -> *mut c_void {
        let mut buf = core::mem::MaybeUninit::<CleanupBuffer>::uninit();
        // SAFETY: the test's mutex and condvar; `buf` stays in this frame until the
        // thread exits (it never returns).
        unsafe {
            assert_eq!(upthread_mutex_lock(M.get()), 0);
            upthread_cleanup_push_impl(buf.as_mut_ptr(), Some(check_held_and_unlock), M.get().cast());
            loop {
                assert_eq!(upthread_cond_wait(C.get(), M.get()), 0);
            }
        }
    }
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(waiter, 0);
        wait_until_blocked(t);
        assert_eq!(upthread_cancel(t), 0);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert_eq!(HANDLER_SAW_MUTEX_HELD.load(Ordering::SeqCst), 1, "the handler ran with the mutex held");
        // SAFETY: the test's mutex.
        unsafe {
            assert_eq!(upthread_mutex_trylock(M.get()), 0, "the handler released the mutex");
            assert_eq!(upthread_mutex_unlock(M.get()), 0);
        }
    });
}

static HANDLER_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn mark(_: *mut c_void) {
    HANDLER_RAN.store(true, Ordering::SeqCst);
}

/// Pushes [`mark`] and runs `f` forever (the thread only leaves by cancellation).
fn with_mark(f: impl Fn()) -> ! {
    let mut buf = core::mem::MaybeUninit::<CleanupBuffer>::uninit();
    // SAFETY: `buf` stays in this frame until the thread exits (it never returns).
    unsafe { upthread_cleanup_push_impl(buf.as_mut_ptr(), Some(mark), core::ptr::null_mut()) };
    loop {
        f();
    }
}

static NEVER_POSTED: std::sync::LazyLock<Shared<sem_t>> = std::sync::LazyLock::new(zeroed);

extern "C" fn in_sem_wait(_: *mut c_void) -> *mut c_void {
    // SAFETY: the test's semaphore.
    with_mark(|| assert_eq!(unsafe { upthread_sem_wait(NEVER_POSTED.get()) }, 0))
}

#[test]
fn a_cancel_ends_a_semaphore_wait_without_taking_a_unit() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(in_sem_wait, 0);
        wait_until_blocked(t);
        assert_eq!(upthread_cancel(t), 0);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert!(HANDLER_RAN.load(Ordering::SeqCst));
        let mut v = -1;
        // SAFETY: the test's semaphore; `v` is writable.
        assert_eq!(unsafe { upthread_sem_getvalue(NEVER_POSTED.get(), &mut v) }, 0);
        assert_eq!(v, 0);
    });
}

#[test]
fn a_cancel_ends_a_join_and_leaves_the_target_joinable() {
    static TARGET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static RELEASE: std::sync::LazyLock<Shared<sem_t>> = std::sync::LazyLock::new(zeroed);
    extern "C" fn target(_: *mut c_void) -> *mut c_void {
        // SAFETY: the test's semaphore.
        assert_eq!(unsafe { upthread_sem_wait(RELEASE.get()) }, 0);
        7 as *mut c_void
    }
    extern "C" fn joiner(_: *mut c_void) -> *mut c_void {
        with_mark(|| {
            let mut rv = core::ptr::null_mut();
            // SAFETY: `rv` is writable.
            let r = unsafe { parlib_upthread::thread::upthread_join(TARGET.load(Ordering::SeqCst), &mut rv) };
            panic!("joined a thread that does not exit: {r}");
        })
    }
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let tt = create(target, 0);
        TARGET.store(tt, Ordering::SeqCst);
        let j = create(joiner, 0);
        wait_until_blocked(j);
        assert_eq!(upthread_cancel(j), 0);
        assert_eq!(join(j), PTHREAD_CANCELED);
        assert!(HANDLER_RAN.load(Ordering::SeqCst));
        // SAFETY: the test's semaphore.
        assert_eq!(unsafe { upthread_sem_post(RELEASE.get()) }, 0);
        assert_eq!(join(tt), 7 as *mut c_void, "the cancelled join left its target joinable");
    });
}

extern "C" fn in_sleep(_: *mut c_void) -> *mut c_void {
    with_mark(|| {
        parlib_syscalls::io::sleep(std::time::Duration::from_secs(3600));
    })
}

#[test]
fn a_cancel_ends_a_sleep() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(in_sleep, 0);
        wait_until_blocked(t);
        assert_eq!(upthread_cancel(t), 0);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert!(HANDLER_RAN.load(Ordering::SeqCst));
    });
}

extern "C" fn in_pipe_read(fd: *mut c_void) -> *mut c_void {
    with_mark(|| {
        let mut b = [0u8; 1];
        let r = parlib_syscalls::io::read(fd as i32, &mut b);
        panic!("read from a pipe nobody writes returned {r:?}");
    })
}

#[test]
fn a_cancel_ends_a_pipe_read() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let fds = parlib_syscalls::io::pipe2(libc::O_CLOEXEC).expect("pipe2");
        let t = create(in_pipe_read, fds[0] as usize);
        wait_until_blocked(t);
        assert_eq!(upthread_cancel(t), 0);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert!(HANDLER_RAN.load(Ordering::SeqCst));
    });
}

static SIGNALLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALLED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_signal_without_sa_restart_ends_a_semaphore_wait_with_eintr_after_its_handler() {
    static ERRNO: AtomicI32 = AtomicI32::new(0);
    extern "C" fn waiter(_: *mut c_void) -> *mut c_void {
        // SAFETY: the test's semaphore.
        let r = unsafe { upthread_sem_wait(NEVER_POSTED.get()) };
        // SAFETY: the calling uthread's errno.
        ERRNO.store(if r == -1 { unsafe { *libc::__errno_location() } } else { 0 }, Ordering::SeqCst);
        core::ptr::null_mut()
    }
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        // SAFETY: an all-zero sigaction is valid; we set a one-argument handler, no flags.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
        }
        let t = create(waiter, 0);
        wait_until_blocked(t);
        assert_eq!(parlib_upthread::signal::upthread_kill(t, libc::SIGUSR2), 0);
        join(t);
        assert_eq!(SIGNALLED.load(Ordering::SeqCst), 1, "the handler ran");
        assert_eq!(ERRNO.load(Ordering::SeqCst), libc::EINTR);
    });
}

/// Rounds of the race tests: enough to hit both orders many times on two cores, few
/// enough for a debug build under the watchdog.
const ROUNDS: usize = 200;

static RACE_SEM: std::sync::LazyLock<Shared<sem_t>> = std::sync::LazyLock::new(zeroed);
static GO: AtomicBool = AtomicBool::new(false);

extern "C" fn take_one(_: *mut c_void) -> *mut c_void {
    // SAFETY: the test's semaphore.
    assert_eq!(unsafe { upthread_sem_wait(RACE_SEM.get()) }, 0);
    2 as *mut c_void // got the unit (no cancellation point after the wait)
}

extern "C" fn post_on_go(_: *mut c_void) -> *mut c_void {
    wait_until(|| GO.load(Ordering::SeqCst));
    // SAFETY: the test's semaphore.
    assert_eq!(unsafe { upthread_sem_post(RACE_SEM.get()) }, 0);
    core::ptr::null_mut()
}

#[test]
fn a_post_racing_a_cancel_is_consumed_or_stays_for_the_next_waiter() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let (mut consumed, mut cancelled) = (0, 0);
        for _ in 0..ROUNDS {
            GO.store(false, Ordering::SeqCst);
            let w = create(take_one, 0);
            let p = create(post_on_go, 0);
            wait_until_blocked(w);
            GO.store(true, Ordering::SeqCst);
            assert_eq!(upthread_cancel(w), 0);
            join(p);
            let mut v = -1;
            // SAFETY: the test's semaphore; `v` is writable.
            assert_eq!(unsafe { upthread_sem_getvalue(RACE_SEM.get(), &mut v) }, 0);
            match join(w) {
                r if r == PTHREAD_CANCELED => {
                    cancelled += 1;
                    assert_eq!(v, 1, "the cancelled waiter did not take the unit: it stays");
                    // SAFETY: the test's semaphore: take the unit back for the next round.
                    assert_eq!(unsafe { upthread_sem_trywait(RACE_SEM.get()) }, 0);
                }
                r => {
                    assert_eq!(r, 2 as *mut c_void);
                    consumed += 1;
                    assert_eq!(v, 0, "the waiter took the unit");
                }
            }
        }
        assert_eq!(consumed + cancelled, ROUNDS);
    });
}

#[test]
fn interrupts_racing_posts_end_each_wait_exactly_once_and_lose_no_unit() {
    // The sync layer alone: a uthread waits on a semaphore again and again while one
    // thread posts and another interrupts it. Every post is either consumed by a wait
    // that returned Ok or still in the count at the end.
    static SEM: parlib_sync::RawSemaphore = parlib_sync::RawSemaphore::new(0);
    static WAITER: AtomicUsize = AtomicUsize::new(0);
    static OK: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicBool = AtomicBool::new(false);
    extern "C" fn wait_loop(_: *mut c_void) -> *mut c_void {
        WAITER.store(parlib_uthread::current().expect("a uthread").as_ptr() as usize, Ordering::SeqCst);
        while !DONE.load(Ordering::SeqCst) {
            match SEM.wait_interruptible() {
                Ok(()) => {
                    OK.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => assert_eq!(e, parlib_sync::Errno::INTR),
            }
        }
        core::ptr::null_mut()
    }
    extern "C" fn post_all(_: *mut c_void) -> *mut c_void {
        for _ in 0..ROUNDS {
            SEM.post().expect("post");
            parlib_upthread::yield_now();
        }
        core::ptr::null_mut()
    }
    extern "C" fn interrupt_all(_: *mut c_void) -> *mut c_void {
        let w = WAITER.load(Ordering::SeqCst) as *mut Uthread;
        for _ in 0..ROUNDS {
            // SAFETY: the waiter lives until DONE, after this thread is joined.
            unsafe { parlib_uthread::interrupt_wait(core::ptr::NonNull::new(w).expect("waiter")) };
            parlib_upthread::yield_now();
        }
        core::ptr::null_mut()
    }
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let w = create(wait_loop, 0);
        wait_until(|| WAITER.load(Ordering::SeqCst) != 0);
        let p = create(post_all, 0);
        let i = create(interrupt_all, 0);
        join(p);
        join(i);
        // Let the waiter drain what it can, then stop it: one more post ends its last wait.
        wait_until(|| OK.load(Ordering::SeqCst) + SEM.value() as usize == ROUNDS);
        DONE.store(true, Ordering::SeqCst);
        SEM.post().expect("post");
        join(w);
        assert_eq!(
            OK.load(Ordering::SeqCst) + SEM.value() as usize,
            ROUNDS + 1,
            "no unit lost or duplicated"
        );
    });
}
