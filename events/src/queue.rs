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

use crate::{EventMsg, EventType};

struct Slot {
    seq: AtomicUsize,
    ty: UnsafeCell<EventType>,
    msg: UnsafeCell<EventMsg>,
}

/// Pads to 128 bytes so producers' `head` and the consumer's `tail` do not share a
/// prefetched line pair (see `parlib_vcore::Vcore`).
#[repr(align(128))]
struct Padded(AtomicUsize);

pub(crate) struct Ring {
    head: Padded,
    tail: Padded,
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
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            slots,
            mask: capacity - 1,
        }
    }

    /// Enqueues; false if the ring is full.
    pub(crate) fn push(&self, ty: EventType, msg: &EventMsg) -> bool {
        let mut pos = self.head.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos) as isize {
                0 => match self.head.0.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
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
                },
                d if d < 0 => return false, // the consumer has not freed this slot yet
                _ => pos = self.head.0.load(Ordering::Relaxed),
            }
        }
    }

    /// Dequeues the oldest published message.
    ///
    /// # Safety
    /// Only one consumer at a time (the vcore that owns the ring, in vcore context).
    pub(crate) unsafe fn pop(&self) -> Option<(EventType, EventMsg)> {
        let pos = self.tail.0.load(Ordering::Relaxed);
        let slot = &self.slots[pos & self.mask];
        if slot.seq.load(Ordering::Acquire) != pos + 1 {
            return None;
        }
        // SAFETY: the Acquire above pairs with the producer's publishing Release.
        let out = unsafe { (*slot.ty.get(), *slot.msg.get()) };
        slot.seq.store(pos + self.mask + 1, Ordering::Release);
        self.tail.0.store(pos + 1, Ordering::Relaxed);
        Some(out)
    }

    /// Whether a published message is waiting (racy, for polling).
    pub(crate) fn has_ready(&self) -> bool {
        let pos = self.tail.0.load(Ordering::Relaxed);
        self.slots[pos & self.mask].seq.load(Ordering::Acquire) == pos + 1
    }
}
