//! Events reach vcores in every state the vcore layer alone allows (no uthreads): an
//! event sent to a parked vcore wakes it (a futex wake, the cheapest notification), its
//! entry handles the event and the vcore parks again; every event is handled exactly
//! once, by the vcore it was sent to.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE};
use parlib_testkit::isolated;
use parlib_vcore as vcore;

const EV_MARK: EventType = EventType(EV_USER_BASE.0 + 1);
const ROUNDS: usize = 200;
const MAX: usize = 64;

static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// Per vcore: the events handled there, and the ones that arrived somewhere else.
static ON: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
static MISDELIVERED: AtomicUsize = AtomicUsize::new(0);
/// Per round: which vcores handled that round's event (a bit each).
static ROUND_SEEN: [AtomicU64; ROUNDS] = [const { AtomicU64::new(0) }; ROUNDS];
static DUPLICATES: AtomicUsize = AtomicUsize::new(0);

fn on_mark(msg: &EventMsg, _: EventType) {
    let (round, to, here) = (msg.arg0 as usize, msg.arg1 as usize, vcore::id());
    if to != here {
        MISDELIVERED.fetch_add(1, Ordering::Relaxed);
    }
    if ROUND_SEEN[round].fetch_or(1 << to, Ordering::Relaxed) & (1 << to) != 0 {
        DUPLICATES.fetch_add(1, Ordering::Relaxed);
    }
    ON[here].fetch_add(1, Ordering::Relaxed);
    HANDLED.fetch_add(1, Ordering::Release);
}

/// The whole of vcore context: handle what is queued, then park.
fn entry() -> ! {
    events::handle_events();
    vcore::yield_vcore()
}

#[test]
fn events_sent_to_parked_vcores_wake_them_and_are_handled_once_where_sent() {
    isolated!(Duration::from_secs(30), {
        vcore::lib_init().unwrap();
        events::init().unwrap();
        events::register_handler(EV_MARK, on_mark).unwrap();
        vcore::set_entry(entry);
        let n = vcore::max_vcores().min(MAX);
        // This plain thread never becomes a vcore: nothing calls vcore::request.
        for round in 0..ROUNDS {
            for to in 0..n {
                let msg = EventMsg { arg0: round as u64, arg1: to as u64, arg2: 0 };
                events::send_event(&msg, EV_MARK, to).unwrap();
            }
            // Every few rounds, let them all park again before the next sends.
            if round % 20 == 0 {
                while HANDLED.load(Ordering::Acquire) < (round + 1) * n
                    || (0..n).any(|v| !vcore::get(v).unwrap().is_parked())
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        while HANDLED.load(Ordering::Acquire) < ROUNDS * n {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20)); // anything handled twice shows now
        assert_eq!(HANDLED.load(Ordering::Acquire), ROUNDS * n);
        assert_eq!(MISDELIVERED.load(Ordering::Relaxed), 0, "an event was handled by another vcore");
        assert_eq!(DUPLICATES.load(Ordering::Relaxed), 0);
        for (v, on) in ON.iter().enumerate().take(n) {
            assert_eq!(on.load(Ordering::Relaxed), ROUNDS, "vcore {v}");
        }
        // Idle again: everything handled, every vcore parked.
        while (0..n).any(|v| !vcore::get(v).unwrap().is_parked()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(vcore::num_vcores(), 0);
    });
}
