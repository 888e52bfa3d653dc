//! A bounded multi-producer, single-consumer ring of events (one per vcore).
//!
//! Producers claim a slot by advancing `head` with a CAS, write it, then publish it by
//! storing the slot's sequence number (Vyukov's bounded queue). The consumer reads slots
//! in order while their sequence says "published". There is no lock, so a producer may
//! be a signal handler that interrupted another producer on the same task: the handler
//! claims the next slot; the consumer stops at the interrupted producer's unpublished
//! slot and finds both once that producer publishes and notifies.
//!
//! | `slot.seq` | meaning |
//! |---|---|
//! | `pos` | free for the producer whose claim is `pos` |
//! | `pos + 1` | published message `pos`, for the consumer |
//! | `pos + capacity` | consumed; free for claim `pos + capacity` |

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use crate::{EventMsg, EventType};

struct Slot {
    seq: AtomicUsize,
    ty: UnsafeCell<EventType>,
    msg: UnsafeCell<EventMsg>,
}

pub(crate) struct Ring {
    /// Padded (128 bytes on x86-64) so that producers' `head` and the consumer's `tail`
    /// never share a prefetched pair of cache lines.
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot]>,
    mask: usize,
}

// SAFETY: slot contents are written by the one producer that claimed the slot and read
// by the one consumer after the Release/Acquire on `seq`.
unsafe impl Sync for Ring {}
// SAFETY: as above.
unsafe impl Send for Ring {}

impl Ring {
    pub(crate) fn new(capacity: usize) -> Ring {
        assert!(capacity.is_power_of_two(), "ring capacity must be a power of two");
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                ty: UnsafeCell::new(EventType(0)),
                msg: UnsafeCell::new(EventMsg::default()),
            })
            .collect();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots,
            mask: capacity - 1,
        }
    }

    /// Enqueues; false if the ring is full.
    pub(crate) fn push(&self, ty: EventType, msg: &EventMsg) -> bool {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos) as isize {
                0 => {
                    match self.head.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed)
                    {
                        Ok(_) => {
                            // SAFETY: the CAS made slot `pos` ours until we publish it.
                            unsafe {
                                *slot.ty.get() = ty;
                                *slot.msg.get() = *msg;
                            }
                            slot.seq.store(pos + 1, Ordering::Release);
                            return true;
                        }
                        Err(now) => pos = now,
                    }
                }
                d if d < 0 => return false, // the consumer has not freed this slot yet
                _ => pos = self.head.load(Ordering::Relaxed),
            }
        }
    }

    /// Dequeues the oldest published message.
    ///
    /// # Safety
    /// Only one consumer at a time (the vcore that owns the ring, in vcore context).
    pub(crate) unsafe fn pop(&self) -> Option<(EventType, EventMsg)> {
        let pos = self.tail.load(Ordering::Relaxed);
        let slot = &self.slots[pos & self.mask];
        if slot.seq.load(Ordering::Acquire) != pos + 1 {
            return None;
        }
        // SAFETY: the Acquire above pairs with the producer's publishing Release.
        let out = unsafe { (*slot.ty.get(), *slot.msg.get()) };
        slot.seq.store(pos + self.mask + 1, Ordering::Release);
        self.tail.store(pos + 1, Ordering::Relaxed);
        Some(out)
    }

    /// Whether a published message is waiting (racy, for polling).
    pub(crate) fn has_ready(&self) -> bool {
        let pos = self.tail.load(Ordering::Relaxed);
        self.slots[pos & self.mask].seq.load(Ordering::Acquire) == pos + 1
    }
}

#[cfg(test)]
mod tests {
    //! The ring alone, on plain threads: FIFO order, full detection, wrap-around, and many
    //! producers with one consumer delivering every message exactly once.

    use super::Ring;
    use crate::{EventMsg, EventType};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn msg(a: u64, b: u64) -> EventMsg {
        EventMsg { arg0: a, arg1: b, arg2: a ^ b }
    }

    fn pop(r: &Ring) -> Option<(EventType, EventMsg)> {
        // SAFETY: each test has a single consumer: the thread calling this.
        unsafe { r.pop() }
    }

    #[test]
    fn one_producer_pops_in_fifo_order() {
        let r = Ring::new(64);
        for i in 0..50 {
            assert!(r.push(EventType(i as u32 % 256), &msg(i, 2 * i)));
        }
        for i in 0..50 {
            assert_eq!(pop(&r), Some((EventType(i as u32 % 256), msg(i, 2 * i))));
        }
        assert_eq!(pop(&r), None);
    }

    #[test]
    fn push_fails_exactly_at_capacity_and_succeeds_again_after_a_pop() {
        let r = Ring::new(8);
        for i in 0..8 {
            assert!(r.push(EventType(1), &msg(i, 0)), "push {i} of 8 into an 8-slot ring");
        }
        assert!(!r.push(EventType(1), &msg(99, 0)), "a ninth push into a full ring");
        assert!(!r.push(EventType(1), &msg(99, 0)), "still full");
        assert_eq!(pop(&r), Some((EventType(1), msg(0, 0))));
        assert!(r.push(EventType(1), &msg(8, 0)), "one pop makes room for one push");
        assert!(!r.push(EventType(1), &msg(99, 0)));
        for i in 1..=8 {
            assert_eq!(pop(&r), Some((EventType(1), msg(i, 0))), "the failed pushes left nothing behind");
        }
        assert_eq!(pop(&r), None);
    }

    #[test]
    fn has_ready_says_whether_a_message_is_waiting() {
        let r = Ring::new(4);
        assert!(!r.has_ready());
        assert!(r.push(EventType(3), &msg(1, 1)));
        assert!(r.has_ready());
        assert!(pop(&r).is_some());
        assert!(!r.has_ready());
    }

    #[test]
    fn the_ring_wraps_around_many_times_without_losing_order() {
        let r = Ring::new(16);
        let (mut next_in, mut next_out) = (0u64, 0u64);
        // Fill levels from 0 to full and back, over hundreds of laps of the ring.
        for round in 0..2000u64 {
            let burst = round % 17;
            for _ in 0..burst {
                if r.push(EventType(7), &msg(next_in, round)) {
                    next_in += 1;
                }
            }
            for _ in 0..(round * 7) % 17 {
                match pop(&r) {
                    Some((ty, m)) => {
                        assert_eq!(ty, EventType(7));
                        assert_eq!(m.arg0, next_out);
                        assert_eq!(m.arg2, m.arg0 ^ m.arg1, "a torn message");
                        next_out += 1;
                    }
                    None => assert_eq!(next_out, next_in, "pop found nothing with messages waiting"),
                }
            }
        }
        while let Some((_, m)) = pop(&r) {
            assert_eq!(m.arg0, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(next_in > 16 * 100, "only {next_in} messages went through");
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn capacity_must_be_a_power_of_two() {
        let _ = Ring::new(100);
    }

    #[test]
    fn many_producers_and_one_consumer_deliver_every_message_once_in_per_producer_order() {
        const PRODUCERS: usize = 6;
        // Fewer in debug builds, where each spin through a full ring is slow.
        const EACH: u64 = if cfg!(debug_assertions) { 25_000 } else { 100_000 };
        // A small ring, so producers keep finding it full and retrying.
        let r = Arc::new(Ring::new(64));
        let go = Arc::new(AtomicBool::new(false));
        let mut full = Vec::new();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (r, go) = (r.clone(), go.clone());
                std::thread::spawn(move || {
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    let mut full = 0u64;
                    for i in 0..EACH {
                        while !r.push(EventType(p as u32), &msg(p as u64, i)) {
                            full += 1;
                            std::hint::spin_loop();
                        }
                    }
                    full
                })
            })
            .collect();
        go.store(true, Ordering::Release);
        let mut next = [0u64; PRODUCERS];
        let mut received = 0u64;
        while received < PRODUCERS as u64 * EACH {
            match pop(&r) {
                Some((EventType(p), m)) => {
                    let p = p as usize;
                    assert_eq!(m.arg0, p as u64, "type and payload of one message disagree");
                    assert_eq!(m.arg2, m.arg0 ^ m.arg1, "a torn message");
                    assert_eq!(m.arg1, next[p], "producer {p}: message out of order, lost or duplicated");
                    next[p] += 1;
                    received += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        for p in producers {
            full.push(p.join().unwrap());
        }
        assert_eq!(pop(&r), None, "a message was delivered twice");
        assert!(next.iter().all(|&n| n == EACH));
        assert!(full.iter().sum::<u64>() > 0, "the producers never found the ring full");
    }
}
