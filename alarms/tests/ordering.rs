//! Alarms fire in deadline order on the vcore that started them, never early, exactly
//! once (DESIGN §6: "each vcore keeps its waiters ordered by deadline ... expiry becomes
//! an `EV_ALARM` event on the vcore that started the alarm").
//!
//! 10 000 alarms with random deadlines up to 200 ms ahead are spread over every vcore.
//! Each vcore's share is started by a uthread pinned to that vcore, with notifications
//! disabled for the whole batch: that vcore cannot enter vcore context, so cannot handle
//! an expiry, until every one of its alarms is in its deadline set. From then on the
//! set alone decides the order, even for deadlines that passed while the batch was being
//! started. Each callback (vcore context: no blocking, no allocation) appends the alarm's
//! index and the time it ran to a preallocated log of the vcore it runs on.

use parlib_testsched as common;
mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parlib_alarms::{AlarmWaiter, Deadline};
use parlib_testkit::isolated;
use parlib_uthread::{NotifGuard, TlsMode};
use parlib_vcore as vcore;
use support::{now, Rng};

const TIMEOUT: Duration = Duration::from_secs(60);

/// How many alarms, over all vcores.
const TOTAL: usize = 10_000;
/// Deadlines fall in `[base, base + SPREAD_NS)`.
const SPREAD_NS: u64 = 200_000_000;
/// Deadlines are multiples of this many nanoseconds after `base`, so that with 5 000
/// alarms per vcore over 20 000 possible values many share a deadline (ties are allowed
/// in either order; they must not disturb the order of the rest).
const GRAIN_NS: u64 = 10_000;

/// One line of a vcore's log: which alarm ran, and when.
struct LogEntry {
    alarm: AtomicUsize,
    fired_at: AtomicU64,
}

/// The alarms themselves (leaked: they must stay put while started).
static WAITERS: OnceLock<&'static [AlarmWaiter]> = OnceLock::new();
/// `LOGS[v]` has room for every alarm, so a callback never allocates.
static LOGS: OnceLock<Vec<Vec<LogEntry>>> = OnceLock::new();
/// Entries used in each vcore's log.
static LOG_LEN: OnceLock<Vec<AtomicUsize>> = OnceLock::new();
/// Per alarm: how often its callback ran, the vcore that started it, the deadline it was
/// given.
static FIRED: [AtomicU32; TOTAL] = [const { AtomicU32::new(0) }; TOTAL];
static STARTED_ON: [AtomicUsize; TOTAL] = [const { AtomicUsize::new(usize::MAX) }; TOTAL];
static DEADLINE: [AtomicU64; TOTAL] = [const { AtomicU64::new(0) }; TOTAL];
/// Callbacks that found their log full (impossible unless alarms fire more than once).
static LOG_OVERFLOWS: AtomicUsize = AtomicUsize::new(0);
/// Callbacks run so far.
static FIRED_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// The callback, in vcore context: log and count, touching only atomics.
fn record(w: &AlarmWaiter) {
    let fired_at = now();
    let v = vcore::id();
    let alarm = w.data();
    let slot = LOG_LEN.get().unwrap()[v].fetch_add(1, Ordering::Relaxed);
    match LOGS.get().unwrap()[v].get(slot) {
        Some(e) => {
            e.alarm.store(alarm, Ordering::Relaxed);
            e.fired_at.store(fired_at, Ordering::Relaxed);
        }
        None => {
            LOG_OVERFLOWS.fetch_add(1, Ordering::Relaxed);
        }
    }
    FIRED[alarm].fetch_add(1, Ordering::Relaxed);
    FIRED_TOTAL.fetch_add(1, Ordering::Release);
}

/// On the uthread pinned to vcore `v`: starts every alarm whose index is `v` modulo the
/// number of vcores, with notifications disabled throughout (see the module docs).
fn start_share(v: usize, nv: usize, base: u64, seed: u64) {
    let waiters = *WAITERS.get().unwrap();
    let mut rng = Rng::new(seed);
    let _no_expiry_yet = NotifGuard::new();
    let here = vcore::id();
    for i in (v..TOTAL).step_by(nv) {
        let w = &waiters[i];
        let at = base + rng.below(SPREAD_NS / GRAIN_NS) * GRAIN_NS;
        w.init_waiter(record);
        w.set_data(i);
        w.set_abs(Deadline::at_monotonic_ns(at));
        DEADLINE[i].store(at, Ordering::Relaxed);
        STARTED_ON[i].store(here, Ordering::Relaxed);
        Pin::static_ref(w).start();
    }
}

#[test]
fn alarms_fire_in_deadline_order_on_their_own_vcore_never_early() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let nv = vcore::max_vcores();
        let waiters: Vec<AlarmWaiter> = (0..TOTAL).map(|_| AlarmWaiter::new()).collect();
        WAITERS.set(Vec::leak(waiters)).ok().unwrap();
        let logs = (0..nv)
            .map(|_| {
                (0..TOTAL)
                    .map(|_| LogEntry { alarm: AtomicUsize::new(0), fired_at: AtomicU64::new(0) })
                    .collect()
            })
            .collect();
        LOGS.set(logs).ok().unwrap();
        LOG_LEN.set((0..nv).map(|_| AtomicUsize::new(0)).collect()).ok().unwrap();

        let base = now();
        let started = std::sync::Arc::new(AtomicUsize::new(0));
        for v in 0..nv {
            let (started, seed) = (started.clone(), support::seed());
            common::spawn_on(v, TlsMode::None, move || {
                start_share(v, nv, base, seed);
                started.fetch_add(1, Ordering::Release);
            });
        }
        common::wait_until(|| started.load(Ordering::Acquire) == nv);
        common::wait_until(|| FIRED_TOTAL.load(Ordering::Acquire) >= TOTAL);
        common::wait_all();

        assert_eq!(LOG_OVERFLOWS.load(Ordering::Relaxed), 0, "a vcore logged more callbacks than alarms");
        for (i, n) in FIRED.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            assert_eq!(n, 1, "alarm {i} fired {n} times, expected exactly once");
        }
        let logs = LOGS.get().unwrap();
        let mut logged = 0;
        for (v, (log, len)) in logs.iter().zip(LOG_LEN.get().unwrap()).enumerate() {
            let len = len.load(Ordering::Relaxed);
            logged += len;
            let mut last_deadline = 0;
            for (k, e) in log[..len].iter().enumerate() {
                let i = e.alarm.load(Ordering::Relaxed);
                let fired_at = e.fired_at.load(Ordering::Relaxed);
                let (deadline, from) =
                    (DEADLINE[i].load(Ordering::Relaxed), STARTED_ON[i].load(Ordering::Relaxed));
                assert_eq!(
                    from, v,
                    "alarm {i} was started on vcore {from} but its callback ran on vcore {v}"
                );
                assert!(
                    fired_at >= deadline,
                    "alarm {i} fired {} ns before its deadline (vcore {v})",
                    deadline - fired_at
                );
                assert!(
                    deadline >= last_deadline,
                    "vcore {v}: callback #{k} (alarm {i}, deadline base+{} ns) ran after one with the later \
                     deadline base+{} ns",
                    deadline - base,
                    last_deadline - base
                );
                last_deadline = deadline;
            }
        }
        assert_eq!(logged, TOTAL, "the vcores' logs hold {logged} callbacks for {TOTAL} alarms");
    });
}

/// An alarm on a vcore that has parked still fires there: its expiry wakes the vcore.
/// The alarm is started an hour ahead from a uthread pinned to the last vcore; once that
/// vcore has parked, a uthread elsewhere resets it to fire now (the reset re-arms the
/// parked vcore's timer from outside).
#[test]
fn an_alarm_on_a_parked_vcore_wakes_it_and_runs_there() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        common::require_vcores(2); // one vcore never parks while main runs
        let last = vcore::max_vcores() - 1;
        static W: AlarmWaiter = AlarmWaiter::new();
        static RAN_ON: AtomicUsize = AtomicUsize::new(usize::MAX);
        fn note(_: &AlarmWaiter) {
            RAN_ON.store(vcore::id(), Ordering::Release);
        }
        W.init_waiter(note);
        W.set_abs(Deadline::after(Duration::from_secs(3600)));
        common::spawn_on(last, TlsMode::None, || Pin::static_ref(&W).start());
        common::wait_all();
        // The last vcore has nothing left to do (main stays on vcore 0), so it parks.
        common::wait_until(|| vcore::get(last).unwrap().is_parked());
        assert!(W.reset_abs(Deadline::after(Duration::ZERO)), "reset of an alarm an hour ahead failed");
        common::wait_until(|| RAN_ON.load(Ordering::Acquire) != usize::MAX);
        assert_eq!(
            RAN_ON.load(Ordering::Relaxed),
            last,
            "the alarm ran on another vcore than the one it lives on"
        );
    });
}

/// A periodic alarm, as parlib's (and Akaros') handlers make them: the callback re-arms
/// its own waiter for the next period (`set_inc` + `start`) while the waiter is `FIRING`,
/// and the expiry's `FIRING -> DONE` leaves that restart `ARMED`.
#[test]
fn a_callback_can_restart_its_own_alarm_for_a_periodic_alarm() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        const PERIODS: usize = 5;
        static W: AlarmWaiter = AlarmWaiter::new();
        static TICKS: AtomicUsize = AtomicUsize::new(0);
        fn tick(w: &AlarmWaiter) {
            if TICKS.fetch_add(1, Ordering::AcqRel) + 1 < PERIODS {
                w.set_inc(Duration::from_millis(1));
                // SAFETY: `w` is the static `W`, which never moves.
                unsafe { Pin::new_unchecked(w) }.start();
            }
        }
        W.init_waiter(tick);
        W.set_rel(Duration::from_millis(1));
        Pin::static_ref(&W).start();
        common::wait_until(|| TICKS.load(Ordering::Acquire) == PERIODS);
        common::wait_until(|| !W.is_armed());
        assert!(!W.stop(), "the alarm's last period neither fired nor ended");
        assert_eq!(TICKS.load(Ordering::Relaxed), PERIODS);
    });
}
