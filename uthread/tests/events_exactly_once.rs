//! Every event sent is handled exactly once (DESIGN §5, events crate docs): 1 000 000
//! events, each carrying a unique id, sent to the vcores at once by
//!
//! * plain Linux threads blasting as fast as they can (faster than a vcore handles
//!   them, so senders find rings full and wait for room),
//! * uthreads, on the last vcore, sending to the other vcores,
//! * vcore context: an event handler that forwards each `EV_RELAY` it gets as a counted
//!   event to the next vcore,
//! * a signal handler, on a plain thread that keeps raising SIGUSR2 at itself.
//!
//! Everything but the forwarded events targets vcores 0..n-2; the last vcore runs the
//! sending uthreads and receives the forwarded events, so a vcore forwarding from vcore
//! context rarely waits behind a vcore that drains its ring only when its busy uthreads
//! are interrupted.
//!
//! The counting handler marks a per-id counter; at the end every counter must be 1.
//!
//! The topology avoids three library bugs shown in `events_full_ring.rs`: no vcore
//! context sends to its own vcore or in a cycle (vcores 0..n-2 forward to the next one;
//! the last forwards nothing), and no vcore both runs a sending uthread and sends from
//! vcore context (a uthread interrupted inside `send_event` holds a claimed slot that its
//! own vcore context would then wait behind). With one vcore there is no other vcore to
//! send to, so the relayed ids are sent directly.

use parlib_testsched as common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, BlockReason, Blocked, TlsMode, Uthread};
use parlib_vcore as vcore;

const EV_COUNT: EventType = EventType(EV_USER_BASE.0 + 1);
const EV_RELAY: EventType = EventType(EV_USER_BASE.0 + 2);

const TOTAL: usize = 1_000_000;
const BLASTERS: usize = 4;
const PER_BLASTER: usize = 150_000;
const RELAYED: usize = 100_000;
const FROM_UTHREADS: usize = 200_000;
const FROM_SIGNALS: usize = 100_000;
// Id ranges, in this order: blasters, relayed, uthreads, signal handler.
const RELAY_BASE: usize = BLASTERS * PER_BLASTER;
const UTHREAD_BASE: usize = RELAY_BASE + RELAYED;
const SIGNAL_BASE: usize = UTHREAD_BASE + FROM_UTHREADS;
const _: () = assert!(SIGNAL_BASE + FROM_SIGNALS == TOTAL);

static COUNTS: [AtomicU8; TOTAL] = [const { AtomicU8::new(0) }; TOTAL];
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static RELAYS_HANDLED: AtomicUsize = AtomicUsize::new(0);
static SEND_ERRORS: AtomicUsize = AtomicUsize::new(0);

fn on_count(msg: &EventMsg, _: EventType) {
    COUNTS[msg.arg0 as usize].fetch_add(1, Ordering::Relaxed);
    if HANDLED.fetch_add(1, Ordering::AcqRel) + 1 == TOTAL {
        wake_main();
    }
}

// Main waits blocked, not yielding: a uthread running on a vcore makes every event sent
// there a signal, where a vcore idling in vcore context takes events for free.

/// Main, while it is blocked waiting for the last event.
static MAIN_WAITING: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());

/// Vcore context: makes main runnable if it is waiting (whoever takes it wakes it).
fn wake_main() {
    let m = MAIN_WAITING.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if let Some(m) = NonNull::new(m) {
        // SAFETY: main stored the pointer of its Blocked handle; the swap makes us the
        // one party that takes it.
        uthread::runnable(unsafe { Blocked::from_raw(m) });
    }
}

/// Blocks main until every event has been handled.
fn wait_for_all_events() {
    while HANDLED.load(Ordering::Acquire) < TOTAL {
        uthread::yield_with(|main| {
            let main = uthread::has_blocked(main, BlockReason::Event);
            MAIN_WAITING.store(main.into_raw().as_ptr(), Ordering::Release);
            // The last event may have been handled before main was published.
            if HANDLED.load(Ordering::Acquire) >= TOTAL {
                wake_main();
            }
        });
    }
}

/// Where relay `k` is sent: one of the vcores 0..n-2, each of which forwards to the next.
fn relay_source(k: usize) -> usize {
    k % (vcore::max_vcores() - 1)
}

/// Vcore context: forward the id as a counted event.
fn on_relay(msg: &EventMsg, _: EventType) {
    RELAYS_HANDLED.fetch_add(1, Ordering::Relaxed);
    let to = vcore::id() + 1;
    if events::send_event(&EventMsg { arg0: msg.arg0, ..Default::default() }, EV_COUNT, to).is_err() {
        SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

fn send_count(id: usize, to: usize) {
    if events::send_event(&EventMsg { arg0: id as u64, ..Default::default() }, EV_COUNT, to).is_err() {
        SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

static SIGNAL_NEXT: AtomicUsize = AtomicUsize::new(0);

/// SIGUSR2 handler: sends the next id of the signal range.
extern "C" fn on_sigusr2(_: libc::c_int) {
    let k = SIGNAL_NEXT.fetch_add(1, Ordering::Relaxed);
    if k < FROM_SIGNALS {
        let id = SIGNAL_BASE + k;
        let n = vcore::max_vcores();
        send_count(id, if n == 1 { 0 } else { id % (n - 1) });
    }
}

#[test]
fn a_million_events_from_threads_uthreads_vcore_context_and_signal_handlers_are_each_handled_once() {
    isolated!(Duration::from_secs(120), {
        common::init();
        let n = vcore::max_vcores();
        events::register_handler(EV_COUNT, on_count).unwrap();
        events::register_handler(EV_RELAY, on_relay).unwrap();
        let start = Instant::now();

        let mut plain = Vec::new();
        for b in 0..BLASTERS {
            plain.push(std::thread::spawn(move || {
                for k in 0..PER_BLASTER {
                    let id = b * PER_BLASTER + k;
                    send_count(id, if n == 1 { 0 } else { id % (n - 1) });
                }
            }));
        }
        plain.push(std::thread::spawn(move || {
            for k in 0..RELAYED {
                let id = RELAY_BASE + k;
                if n == 1 {
                    send_count(id, 0);
                    continue;
                }
                let msg = EventMsg { arg0: id as u64, ..Default::default() };
                if events::send_event(&msg, EV_RELAY, relay_source(k)).is_err() {
                    SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        plain.push(std::thread::spawn(|| {
            // SAFETY: installs a plain handler for SIGUSR2, which nothing else uses;
            // then raises it at this thread only, so the handler runs here, between
            // system calls, FROM_SIGNALS times.
            unsafe {
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = on_sigusr2 as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
                let (pid, tid) = (libc::getpid(), libc::gettid());
                while SIGNAL_NEXT.load(Ordering::Relaxed) < FROM_SIGNALS {
                    libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR2);
                }
            }
        }));
        // Sender uthreads on the last vcore (which forwards no relays), sending to the
        // others (to itself if it is the only one).
        const SENDER_UTHREADS: usize = 4;
        let per_uthread = FROM_UTHREADS / SENDER_UTHREADS;
        let uthread_done = Arc::new(AtomicUsize::new(0));
        for u in 0..SENDER_UTHREADS {
            let done = uthread_done.clone();
            common::spawn_on(n - 1, TlsMode::Backed, move || {
                for k in 0..per_uthread {
                    let id = UTHREAD_BASE + u * per_uthread + k;
                    send_count(id, if n == 1 { 0 } else { id % (n - 1) });
                    // Yielding now and then lets vcore context drain this vcore's own
                    // ring, which the vcores forwarding to it wait on.
                    if k % 64 == 63 {
                        common::yield_now();
                    }
                }
                done.fetch_add(1, Ordering::Release);
            });
        }

        wait_for_all_events();
        common::wait_until(|| plain.iter().all(|t| t.is_finished()));
        common::wait_all();
        for t in plain {
            t.join().unwrap();
        }
        let sending = start.elapsed();
        // Anything handled twice would have reached TOTAL early; give stragglers a moment.
        let settle = Instant::now();
        common::wait_until(|| settle.elapsed() >= Duration::from_millis(100));

        assert_eq!(SEND_ERRORS.load(Ordering::Relaxed), 0, "send_event returned an error");
        assert_eq!(uthread_done.load(Ordering::Relaxed), SENDER_UTHREADS);
        assert_eq!(RELAYS_HANDLED.load(Ordering::Relaxed), if n == 1 { 0 } else { RELAYED });
        let (mut lost, mut dup, mut first_bad) = (0usize, 0usize, None);
        for (id, c) in COUNTS.iter().enumerate() {
            match c.load(Ordering::Relaxed) {
                1 => {}
                0 => lost += 1,
                _ => dup += 1,
            }
            if first_bad.is_none() && c.load(Ordering::Relaxed) != 1 {
                first_bad = Some(id);
            }
        }
        assert!(
            lost == 0 && dup == 0,
            "{lost} events lost, {dup} handled more than once (first: id {first_bad:?})"
        );
        assert_eq!(HANDLED.load(Ordering::Relaxed), TOTAL);
        println!(
            "{TOTAL} events on {n} vcores handled exactly once in {:.0} ms",
            sending.as_secs_f64() * 1e3
        );
    });
}
