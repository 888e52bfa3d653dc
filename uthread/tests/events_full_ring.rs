//! What `send_event` does when the target's ring is full (events crate docs, "Sending
//! never allocates, and never loses a message"):
//!
//! * a sender on another task waits for room, losing and reordering nothing;
//! * a uthread that sends to its own vcore with notifications disabled (so nothing can
//!   drain) spills into the overflow ring, and past both rings panics naming the vcore;
//! * senders that wait must not wait for each other forever.
//! * vcore contexts sending to each other's full rings, a signal handler interrupting a
//!   send, a uthread interrupted inside a send, and handlers that flood their own ring
//!   all make progress (each was a deadlock or a stack overflow once).

use parlib_testsched as common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE, OVERFLOW_CAPACITY, QUEUE_CAPACITY};
use parlib_testkit::probe::{assert_unwound_with, expect_unwinding_panic};
use parlib_testkit::{child_outcome, isolated};
use parlib_uthread::{self as uthread, TlsMode};
use parlib_vcore as vcore;

const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];
const TIMEOUT: Duration = Duration::from_secs(30);
const EV_SEQ: EventType = EventType(EV_USER_BASE.0 + 1);

static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// The next sequence number expected by `in_order`.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);
static OUT_OF_ORDER: AtomicUsize = AtomicUsize::new(0);

/// Counts, and checks the messages of the one sender arrive numbered 0, 1, 2, ...
fn in_order(msg: &EventMsg, _: EventType) {
    if msg.arg0 != NEXT_SEQ.load(Ordering::Relaxed) {
        OUT_OF_ORDER.fetch_add(1, Ordering::Relaxed);
    }
    NEXT_SEQ.store(msg.arg0 + 1, Ordering::Relaxed);
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn seq(i: usize) -> EventMsg {
    EventMsg { arg0: i as u64, ..Default::default() }
}

#[test]
fn a_sender_to_a_full_ring_waits_for_room_and_loses_or_reorders_nothing() {
    // Main (on the only vcore) disables notifications, so nothing drains the ring while
    // a plain thread sends three rings' worth: exactly QUEUE_CAPACITY sends complete,
    // then the sender waits. Re-enabling lets the vcore drain, and the sender finishes.
    const SENDS: usize = 3 * QUEUE_CAPACITY;
    static SENT: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_SEQ, in_order).unwrap();
        uthread::disable_notifs();
        let sender = std::thread::spawn(|| {
            for i in 0..SENDS {
                events::send_event(&seq(i), EV_SEQ, 0).unwrap();
                SENT.store(i + 1, Ordering::SeqCst);
            }
        });
        while SENT.load(Ordering::SeqCst) < QUEUE_CAPACITY {
            std::hint::spin_loop();
        }
        // Give the sender ample time to (wrongly) get further.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(100) {
            std::hint::spin_loop();
        }
        assert_eq!(SENT.load(Ordering::SeqCst), QUEUE_CAPACITY, "sends completed beyond the ring's capacity");
        assert_eq!(HANDLED.load(Ordering::SeqCst), 0);
        uthread::enable_notifs();
        assert!(HANDLED.load(Ordering::SeqCst) >= QUEUE_CAPACITY, "the full ring was drained on re-enabling");
        common::wait_until(|| HANDLED.load(Ordering::SeqCst) == SENDS && sender.is_finished());
        sender.join().unwrap();
        assert_eq!(OUT_OF_ORDER.load(Ordering::Relaxed), 0, "messages of one sender were reordered");
        assert_eq!(NEXT_SEQ.load(Ordering::Relaxed), SENDS as u64);
    });
}

#[test]
fn self_sends_with_notifications_disabled_spill_into_the_overflow_ring_and_all_arrive() {
    const SENDS: usize = QUEUE_CAPACITY + OVERFLOW_CAPACITY;
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_SEQ, in_order).unwrap();
        uthread::disable_notifs();
        for i in 0..SENDS {
            events::send_event(&seq(i), EV_SEQ, 0).unwrap();
        }
        assert_eq!(HANDLED.load(Ordering::SeqCst), 0);
        uthread::enable_notifs();
        assert_eq!(HANDLED.load(Ordering::SeqCst), SENDS, "every message was handled on re-enabling");
        assert_eq!(OUT_OF_ORDER.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn self_sends_beyond_both_rings_panic_naming_the_vcore() {
    let out = child_outcome!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_SEQ, in_order).unwrap();
        uthread::disable_notifs();
        for i in 0..QUEUE_CAPACITY + OVERFLOW_CAPACITY {
            events::send_event(&seq(i), EV_SEQ, 0).unwrap();
        }
        expect_unwinding_panic(|| {
            let _ = events::send_event(&seq(0), EV_SEQ, 0);
        });
    });
    assert_unwound_with(
        &out,
        &format!(
            "parlib-events: vcore 0 sent itself more than {} events",
            QUEUE_CAPACITY + OVERFLOW_CAPACITY
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Senders waiting on each other.

const EV_BURST: EventType = EventType(EV_USER_BASE.0 + 2);
const EV_COUNT: EventType = EventType(EV_USER_BASE.0 + 3);

fn count(_: &EventMsg, _: EventType) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn vcores_sending_to_each_others_full_rings_from_vcore_context_do_not_deadlock() {
    // An event handler (vcore context) on each of two vcores sends twice a ring's worth
    // to the other. Both handlers start together (a rendezvous), so both rings fill
    // while both vcores are in vcore context, sending.
    const BURST: usize = 2 * QUEUE_CAPACITY;
    static ARRIVED: AtomicUsize = AtomicUsize::new(0);
    fn burst(_: &EventMsg, _: EventType) {
        ARRIVED.fetch_add(1, Ordering::SeqCst);
        while ARRIVED.load(Ordering::SeqCst) < 2 {
            std::hint::spin_loop();
        }
        let other = 1 - vcore::id();
        for i in 0..BURST {
            events::send_event(&seq(i), EV_COUNT, other).unwrap();
        }
    }
    isolated!(Duration::from_secs(20), {
        common::init();
        assert!(vcore::max_vcores() >= 2, "this test needs two vcores");
        events::register_handler(EV_COUNT, count).unwrap();
        events::register_handler(EV_BURST, burst).unwrap();
        std::thread::spawn(|| {
            events::send_event(&EventMsg::default(), EV_BURST, 0).unwrap();
            events::send_event(&EventMsg::default(), EV_BURST, 1).unwrap();
        });
        common::wait_until(|| HANDLED.load(Ordering::SeqCst) == 2 * BURST);
    });
}

/// Just enough of `linux/userfaultfd.h` to hold a thread in a page fault on a page we
/// choose, for as long as we choose.
mod uffd {
    pub const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    pub const UFFD_API: u64 = 0xAA;
    pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    /// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
    pub const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
    /// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
    pub const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
    /// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
    pub const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
    #[repr(C)]
    pub struct Api {
        pub api: u64,
        pub features: u64,
        pub ioctls: u64,
    }
    #[repr(C)]
    pub struct Register {
        pub start: u64,
        pub len: u64,
        pub mode: u64,
        pub ioctls: u64,
    }
    #[repr(C)]
    pub struct Copy {
        pub dst: u64,
        pub src: u64,
        pub len: u64,
        pub mode: u64,
        pub copy: i64,
    }

    pub const PAGE: usize = 4096;

    /// A fresh page whose first access blocks in a page fault until [`supply`]; returns
    /// the userfaultfd and the page's address.
    pub fn held_back_page() -> (i32, usize) {
        // SAFETY: plain system calls with valid arguments; every result is checked.
        unsafe {
            let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) as i32;
            assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
            let mut api = Api { api: UFFD_API, features: 0, ioctls: 0 };
            assert_eq!(libc::ioctl(fd, UFFDIO_API, &mut api), 0, "UFFDIO_API");
            let page = libc::mmap(
                core::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            let mut reg = Register {
                start: page as u64,
                len: PAGE as u64,
                mode: UFFDIO_REGISTER_MODE_MISSING,
                ioctls: 0,
            };
            assert_eq!(libc::ioctl(fd, UFFDIO_REGISTER, &mut reg), 0, "UFFDIO_REGISTER");
            (fd, page as usize)
        }
    }

    /// A plain thread that finishes when some thread has faulted on the page.
    pub fn fault_seen(fd: i32) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut m = [0u8; 32];
            // SAFETY: reads one uffd_msg (32 bytes) into a local buffer.
            let r = unsafe { libc::read(fd, m.as_mut_ptr().cast(), m.len()) };
            assert_eq!(r, 32, "read a userfaultfd message");
        })
    }

    /// Supplies the page (zeroes): the faulting access completes.
    pub fn supply(fd: i32, page: usize) {
        let contents = [0u8; PAGE];
        let mut copy =
            Copy { dst: page as u64, src: contents.as_ptr() as u64, len: PAGE as u64, mode: 0, copy: 0 };
        // SAFETY: supplies the held-back page from a local buffer of the same size.
        assert_eq!(unsafe { libc::ioctl(fd, UFFDIO_COPY, &mut copy) }, 0, "UFFDIO_COPY");
    }
}

#[test]
fn a_signal_handler_sending_to_a_full_ring_does_not_deadlock_with_the_send_it_interrupted() {
    // Deterministically: thread A's send claims the first free slot of vcore 0's empty
    // ring, then, copying the message, faults on a page that userfaultfd holds back. The
    // vcore cannot drain past A's claimed, unpublished slot; thread B fills the other
    // QUEUE_CAPACITY - 1 slots. Now A gets SIGUSR2, whose handler sends to vcore 0: the
    // ring is full, and the only way it can drain is for A's send, which the handler
    // interrupted, to finish. The page is supplied as soon as the handler has started, so
    // a handler that returned would let everything through.
    static HANDLER_STARTED: AtomicBool = AtomicBool::new(false);
    static HANDLER_SENT: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_sigusr2(_: libc::c_int) {
        HANDLER_STARTED.store(true, Ordering::SeqCst);
        if events::send_event(&seq(u32::MAX as usize), EV_COUNT, 0).is_ok() {
            HANDLER_SENT.store(true, Ordering::SeqCst);
        }
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_COUNT, count).unwrap();
        // SAFETY: installs a plain handler for SIGUSR2, which nothing else uses.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_sigusr2 as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
        }
        let (fd, page) = uffd::held_back_page();
        // A: one send of the message on the held-back page.
        let a_tid = Arc::new(AtomicU64::new(0));
        let t = a_tid.clone();
        let a = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            t.store(unsafe { libc::gettid() } as u64, Ordering::SeqCst);
            // SAFETY: the page is mapped, readable and aligned; reading it blocks until
            // the test supplies its contents.
            let msg = unsafe { &*(page as *const EventMsg) };
            events::send_event(msg, EV_COUNT, 0).unwrap();
        });
        // Wait for A's fault to reach userfaultfd.
        let faulted = uffd::fault_seen(fd);
        common::wait_until(|| faulted.is_finished());
        faulted.join().unwrap();
        // B: fill the rest of the ring.
        let b = std::thread::spawn(|| {
            for i in 0..QUEUE_CAPACITY - 1 {
                events::send_event(&seq(i), EV_COUNT, 0).unwrap();
            }
        });
        common::wait_until(|| b.is_finished());
        b.join().unwrap();
        // SAFETY: tgkill to thread A, which is blocked in its page fault.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                a_tid.load(Ordering::SeqCst) as libc::pid_t,
                libc::SIGUSR2,
            )
        };
        common::wait_until(|| HANDLER_STARTED.load(Ordering::SeqCst));
        uffd::supply(fd, page);
        // The vcore is free to run main meanwhile, so the deadlock shows as a timeout here.
        let t = Instant::now();
        common::wait_until(|| HANDLER_SENT.load(Ordering::SeqCst) || t.elapsed() > Duration::from_secs(5));
        assert!(
            HANDLER_SENT.load(Ordering::SeqCst),
            "deadlock: the signal handler's send_event still waits for room after 5 s; {} of {} messages \
             handled (the vcore cannot drain past the slot the interrupted send claimed)",
            HANDLED.load(Ordering::SeqCst),
            QUEUE_CAPACITY - 1
        );
        common::wait_until(|| a.is_finished());
        a.join().unwrap();
        common::wait_until(|| HANDLED.load(Ordering::SeqCst) == QUEUE_CAPACITY + 1);
    });
}

#[test]
fn a_uthread_interrupted_inside_send_event_does_not_leave_its_vcore_waiting_behind_it() {
    // Deterministically, on two vcores: uthread U on vcore 0 sends to vcore 1's empty
    // ring: it claims the first slot, then faults on its message's page, which
    // userfaultfd holds back. A plain thread fills the rest of vcore 1's ring. Another
    // sends EV_FORWARD to vcore 0, whose notification interrupts U inside send_event (the
    // faulting load is in this binary: a "safe point"); the EV_FORWARD handler, in vcore 0's
    // vcore context, sends to vcore 1 and waits for room, which only U's send can make by
    // publishing its slot, and U cannot resume until vcore 0 leaves vcore context. A
    // notification must not switch a uthread out in the middle of send_event: it should
    // stay pending until the send is complete, like one that lands in libc.
    const EV_FORWARD: EventType = EventType(EV_USER_BASE.0 + 5);
    static FORWARD_STARTED: AtomicBool = AtomicBool::new(false);
    static FORWARD_SENT: AtomicBool = AtomicBool::new(false);
    fn forward(_: &EventMsg, _: EventType) {
        FORWARD_STARTED.store(true, Ordering::SeqCst);
        events::send_event(&EventMsg::default(), EV_COUNT, 1).unwrap();
        FORWARD_SENT.store(true, Ordering::SeqCst);
    }
    isolated!(TIMEOUT, {
        common::init();
        assert!(vcore::max_vcores() >= 2, "this test needs two vcores");
        events::register_handler(EV_COUNT, count).unwrap();
        events::register_handler(EV_FORWARD, forward).unwrap();
        let (fd, page) = uffd::held_back_page();
        // Main must not be on vcore 0, which U will block.
        common::pin_current(Some(1));
        assert_eq!(vcore::id(), 1);
        common::spawn_on(0, TlsMode::Backed, move || {
            // SAFETY: the page is mapped, readable and aligned; reading it blocks until
            // the test supplies its contents.
            let msg = unsafe { &*(page as *const EventMsg) };
            events::send_event(msg, EV_COUNT, 1).unwrap();
        });
        // Spin (a yield could hand main to vcore 0) until U has faulted, then fill.
        let faulted = uffd::fault_seen(fd);
        while !faulted.is_finished() {
            std::hint::spin_loop();
        }
        let filler = std::thread::spawn(|| {
            for i in 0..QUEUE_CAPACITY - 1 {
                events::send_event(&seq(i), EV_COUNT, 1).unwrap();
            }
            events::send_event(&EventMsg::default(), EV_FORWARD, 0).unwrap();
        });
        while !filler.is_finished() {
            std::hint::spin_loop();
        }
        // Give the notification time to arrive, then let U's send complete either way.
        let t = Instant::now();
        while !FORWARD_STARTED.load(Ordering::SeqCst) && t.elapsed() < Duration::from_millis(500) {
            std::hint::spin_loop();
        }
        uffd::supply(fd, page);
        let t = Instant::now();
        common::wait_until(|| {
            HANDLED.load(Ordering::SeqCst) == QUEUE_CAPACITY + 1 || t.elapsed() > Duration::from_secs(5)
        });
        assert_eq!(
            HANDLED.load(Ordering::SeqCst),
            QUEUE_CAPACITY + 1,
            "deadlock: the EV_FORWARD handler (started: {}, sent: {}) waits for room behind the slot of the \
             send it interrupted",
            FORWARD_STARTED.load(Ordering::SeqCst),
            FORWARD_SENT.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn handlers_that_send_to_their_own_full_ring_do_not_overflow_the_vcore_stack() {
    // The ring is full of EV_FANOUT messages (sent while main had notifications
    // disabled); each one's handler, in vcore context, sends two counted messages to
    // its own vcore. Handling one message frees one slot, so the second send finds the
    // ring full and drains it, which runs the next EV_FANOUT handler, whose second send
    // drains again, ...: one level of nesting per message in the ring.
    const EV_FANOUT: EventType = EventType(EV_USER_BASE.0 + 4);
    static FANOUTS: AtomicUsize = AtomicUsize::new(0);
    fn fanout(_: &EventMsg, _: EventType) {
        FANOUTS.fetch_add(1, Ordering::SeqCst);
        for _ in 0..2 {
            events::send_event(&EventMsg::default(), EV_COUNT, vcore::id()).unwrap();
        }
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_COUNT, count).unwrap();
        events::register_handler(EV_FANOUT, fanout).unwrap();
        uthread::disable_notifs();
        let filler = std::thread::spawn(|| {
            for _ in 0..QUEUE_CAPACITY {
                events::send_event(&EventMsg::default(), EV_FANOUT, 0).unwrap();
            }
        });
        while !filler.is_finished() {
            std::hint::spin_loop();
        }
        filler.join().unwrap();
        uthread::enable_notifs();
        common::wait_until(|| HANDLED.load(Ordering::SeqCst) == 2 * QUEUE_CAPACITY);
        assert_eq!(FANOUTS.load(Ordering::SeqCst), QUEUE_CAPACITY);
    });
}

#[test]
fn uthreads_on_two_vcores_sending_to_each_others_full_rings_make_progress() {
    // The same exchange from uthreads, which notifications interrupt: a uthread waiting
    // for room in the other vcore's ring is interrupted to drain its own, so both finish.
    const BURST: usize = 4 * QUEUE_CAPACITY;
    static READY: AtomicUsize = AtomicUsize::new(0);
    let out = child_outcome!(TIMEOUT, {
        common::init();
        common::require_vcores(2);
        events::register_handler(EV_COUNT, count).unwrap();
        for v in 0..2 {
            common::spawn_on(v, TlsMode::Backed, move || {
                READY.fetch_add(1, Ordering::SeqCst);
                while READY.load(Ordering::SeqCst) < 2 {
                    std::hint::spin_loop();
                }
                for i in 0..BURST {
                    events::send_event(&seq(i), EV_COUNT, 1 - v).unwrap();
                }
            });
        }
        common::wait_until(|| HANDLED.load(Ordering::SeqCst) == 2 * BURST);
        common::wait_all();
    });
    assert!(
        out.finished && out.status.is_some_and(|s| s.success()),
        "child failed or hung\n{}",
        out.output()
    );
}
