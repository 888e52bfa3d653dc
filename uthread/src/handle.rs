//! Owned handles: what may be done to a uthread is a matter of which handle one holds.
//!
//! A uthread that is not running is owned by exactly one handle (the state table is in
//! the `uthread` module). None of them is `Copy` or `Clone`, and each library call that
//! moves a uthread to another state consumes the handle for the old one:
//!
//! | handle | who holds it | what it allows |
//! |---|---|---|
//! | [`Created<T>`] | the creator | [`runnable`](crate::runnable); dropping it frees the uthread |
//! | [`Runnable<T>`] | the scheduler | [`run_uthread`](crate::run_uthread) |
//! | [`Yielded`] | a yield callback | [`paused`](crate::paused), [`runnable`](crate::runnable), [`has_blocked`](crate::has_blocked), [`blockon_sysc`](crate::blockon_sysc) |
//! | [`Blocked`] | whoever will wake it | [`runnable`](crate::runnable) |
//! | [`Exited<T>`] | the scheduler (`thread_exited`) | reading its record; dropping it frees the uthread |
//!
//! So running a uthread twice, running one that is blocked, or using a handle once it is
//! consumed, does not compile. Queueing a uthread (where another vcore may run it) and
//! running it here:
//!
//! ```compile_fail,E0382
//! # use std::collections::VecDeque;
//! # use parlib_uthread::{run_uthread, Runnable};
//! fn sched_entry(next: Runnable<()>, queue: &mut VecDeque<Runnable<()>>) -> ! {
//!     queue.push_back(next);
//!     run_uthread(next) // error[E0382]: use of moved value: `next`
//! }
//! ```
//!
//! Running the uthread at the head of a queue while leaving it there:
//!
//! ```compile_fail,E0507
//! # use std::collections::VecDeque;
//! # use parlib_uthread::{run_uthread, Runnable};
//! fn sched_entry(queue: &VecDeque<Runnable<()>>) -> ! {
//!     run_uthread(*queue.front().unwrap()) // error[E0507]: cannot move out of a shared reference
//! }
//! ```
//!
//! Using a handle after the call that consumes it was set up:
//!
//! ```compile_fail,E0382
//! # use parlib_uthread::{run_uthread, Runnable};
//! fn sched_entry(next: Runnable<u32>) -> ! {
//!     let run = move || run_uthread(next);
//!     let _id = next.id(); // error[E0382]: borrow of moved value: `next`
//!     run()
//! }
//! ```
//!
//! Running a blocked uthread (only [`runnable`](crate::runnable) takes a [`Blocked`]),
//! and copying a handle:
//!
//! ```compile_fail,E0308
//! # use parlib_uthread::{run_uthread, Blocked};
//! fn wake(b: Blocked) -> ! {
//!     run_uthread::<()>(b) // error[E0308]: mismatched types
//! }
//! ```
//!
//! ```compile_fail,E0599
//! # use parlib_uthread::Runnable;
//! fn twice(r: Runnable<()>) -> (Runnable<()>, Runnable<()>) {
//!     (r.clone(), r) // error[E0599]: no method named `clone`
//! }
//! ```
//!
//! Raw pointers remain for intrusive structures and event payloads, behind
//! `into_raw` / `unsafe fn from_raw`, each with one stated obligation.
//!
//! A handle that is dropped while its uthread still needs it (a `Runnable`, `Yielded` or
//! `Blocked` nobody handed on) would lose the uthread forever, so dropping one panics,
//! naming it (unless a panic is already unwinding). The uthread is leaked, never freed:
//! its stack may hold frames others borrow from.

use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::record::{self, Record};
use crate::uthread::{State, Uthread};

/// A handle that still owned a suspended uthread was dropped: the uthread is leaked.
/// Panics naming the misuse, unless a panic is already unwinding (then its message is
/// the one that matters, and a second panic would abort).
#[cold]
#[inline(never)]
fn lost(what: &str, id: u64) {
    if !std::thread::panicking() {
        panic!(
            "a {what} handle of uthread {id} was dropped: the uthread would never run again \
             (hand it to run_uthread / runnable, or keep it)"
        )
    }
}

/// Defines a typed handle: one that owns a whole [`Record<T>`], given to or kept by the
/// scheduler, with what every such handle has (`Send`/`Sync` as `T` allows, `Deref` to
/// the record, `Debug`) and, with `raw`, the `into_raw` / `from_raw` pair.
macro_rules! typed_handle {
    ($(#[$doc:meta])* $name:ident $(, $raw:ident)?) => {
        $(#[$doc])*
        pub struct $name<T: 'static> {
            rec: NonNull<Record<T>>,
            _owns: PhantomData<Record<T>>,
        }

        // SAFETY: the one handle to a uthread that is not running; moving it to another
        // vcore or thread moves that ownership, and the record is `Send + Sync` when `T`
        // is (the uthread layer's part is).
        unsafe impl<T: Send + Sync> Send for $name<T> {}
        // SAFETY: `&handle` only gives `&Record<T>`.
        unsafe impl<T: Send + Sync> Sync for $name<T> {}

        impl<T> Deref for $name<T> {
            type Target = Record<T>;
            #[inline]
            fn deref(&self) -> &Record<T> {
                // SAFETY: a handle keeps its record alive: records are freed only by a
                // handle's own drop (a `Created` never run, or the `Exited`), and the other
                // handles exist only before the uthread exits.
                unsafe { self.rec.as_ref() }
            }
        }

        impl<T> core::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.id()).finish()
            }
        }

        $(typed_handle!(@$raw $name);)?
    };
    (@raw $name:ident) => {
        impl<T> $name<T> {
            /// Gives up the handle for its raw pointer, for intrusive queues, atomic
            /// slots and records kept for later; `from_raw` takes it back.
            #[inline]
            pub fn into_raw(self) -> NonNull<Record<T>> {
                let p = self.rec;
                core::mem::forget(self);
                p
            }

            /// Takes back a handle given up with `into_raw`.
            ///
            /// # Safety
            /// `rec` came from `into_raw` of this handle type, and this is the only
            /// `from_raw` for that call.
            #[inline]
            pub unsafe fn from_raw(rec: NonNull<Record<T>>) -> $name<T> {
                $name { rec, _owns: PhantomData }
            }

            /// # Safety
            /// `uth` is the base of a live `Record<T>` in the state this handle stands
            /// for, and no other handle to it exists.
            #[inline]
            pub(crate) unsafe fn from_uthread(uth: NonNull<Uthread>) -> $name<T> {
                // SAFETY: the caller's contract.
                $name { rec: unsafe { Record::from_uthread(uth) }, _owns: PhantomData }
            }
        }
    };
}

typed_handle!(
    /// A runnable uthread, owned by the scheduler until it runs it with
    /// [`run_uthread`](crate::run_uthread). Derefs to the uthread's [`Record`], and so to
    /// the scheduler's own per-thread data `T`.
    Runnable,
    raw
);

impl<T> Runnable<T> {
    /// [`push_call`](Yielded::push_call) for a uthread the scheduler holds.
    ///
    /// # Safety
    /// As for [`Yielded::push_call`].
    pub unsafe fn push_call(&mut self, f: unsafe extern "C" fn(usize), arg: usize) {
        // SAFETY: the caller's contract; the handle owns the suspended uthread.
        unsafe { push_call(self.uthread(), f, arg) }
    }
}

impl<T> Drop for Runnable<T> {
    fn drop(&mut self) {
        lost("Runnable", self.id())
    }
}

/// Pushes `f(arg)` onto the saved context of a suspended uthread.
///
/// # Safety
/// The caller owns the suspended uthread `u` (through its handle), and `f(arg)` is sound
/// to run on it.
unsafe fn push_call(u: &Uthread, f: unsafe extern "C" fn(usize), arg: usize) {
    // SAFETY: a handle's uthread is switched out with its context saved, and nobody else
    // touches it while the handle is held.
    unsafe { parlib_vcore::arch::push_call(&mut *u.ctx.get(), f, arg) };
}

/// Defines an untyped handle: one that services and sync primitives, which serve every
/// scheduler, hold without knowing its record type.
macro_rules! untyped_handle {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        pub struct $name(NonNull<Uthread>);

        // SAFETY: the one handle to a suspended uthread; moving it moves that ownership,
        // and the base record is Sync.
        unsafe impl Send for $name {}

        impl $name {
            /// The uthread layer's record of the uthread.
            #[inline]
            pub fn uthread(&self) -> &Uthread {
                // SAFETY: a handle keeps its record alive (records are freed only by the
                // drop of a `Created` or `Exited` handle, which cannot exist while this
                // one does).
                unsafe { self.0.as_ref() }
            }

            /// The uthread's process-unique number.
            #[inline]
            pub fn id(&self) -> u64 {
                self.uthread().id()
            }

            /// Its address, as an identity (comparable with [`current`](crate::current)).
            #[inline]
            pub fn as_ptr(&self) -> NonNull<Uthread> {
                self.0
            }

            #[inline]
            pub(crate) fn into_base(self) -> NonNull<Uthread> {
                let p = self.0;
                core::mem::forget(self);
                p
            }

            /// Makes the uthread call `f(arg)` first thing when it next runs, on its own
            /// stack and TLS, then continue where it left off
            /// (`parlib_vcore::arch::push_call`): for code that must run *as* a
            /// switched-out uthread (upthread runs a thread-directed signal's handler this
            /// way). `f` runs with the uthread's notification depth, as ordinary uthread
            /// code. Calls pushed several times run newest first.
            ///
            /// # Safety
            /// `f(arg)` must be sound to run on this uthread, at whatever point it stopped,
            /// with the stack room it has left.
            pub unsafe fn push_call(&mut self, f: unsafe extern "C" fn(usize), arg: usize) {
                // SAFETY: the caller's contract; the handle owns the suspended uthread.
                unsafe { push_call(self.uthread(), f, arg) }
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                lost($what, self.id())
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_tuple($what).field(&self.id()).finish()
            }
        }
    };
}

untyped_handle!(
    /// A uthread that just switched out, given to the callback of
    /// [`yield_with`](crate::yield_with) (or taken from its vcore with
    /// [`take_interrupted`](crate::take_interrupted)). The callback must hand it on:
    /// [`paused`](crate::paused) or [`runnable`](crate::runnable) to reschedule it,
    /// [`has_blocked`](crate::has_blocked) or [`blockon_sysc`](crate::blockon_sysc) to
    /// keep it waiting.
    Yielded,
    "Yielded"
);

untyped_handle!(
    /// A blocked uthread, kept by whoever will wake it, which [`runnable`](crate::runnable)
    /// does.
    Blocked,
    "Blocked"
);

impl Yielded {
    /// # Safety
    /// `uth` is in state `Yielding` and no other handle to it exists.
    #[inline]
    pub(crate) unsafe fn from_base(uth: NonNull<Uthread>) -> Yielded {
        Yielded(uth)
    }
}

impl Blocked {
    /// Gives up the handle for its raw pointer, for intrusive wait queues, atomic words
    /// and event payloads; [`from_raw`](Blocked::from_raw) takes it back.
    #[inline]
    pub fn into_raw(self) -> NonNull<Uthread> {
        self.into_base()
    }

    /// A handle for a blocked uthread, to wake it.
    ///
    /// # Safety
    /// `uth` is a blocked uthread (its [`has_blocked`](crate::has_blocked) or
    /// [`blockon_sysc`](crate::blockon_sysc) has returned) whose wake-up is the caller's
    /// to make: nobody else holds a handle to it or will make it runnable. Holding its
    /// pointer from [`into_raw`](Blocked::into_raw), or having won the race that ends its
    /// wait, are the usual ways to know.
    #[inline]
    pub unsafe fn from_raw(uth: NonNull<Uthread>) -> Blocked {
        Blocked(uth)
    }
}

typed_handle!(
    /// A uthread that has been created but not yet handed to the scheduler: publish its
    /// handle where you need it ([`as_ptr`](Created::as_ptr)), then make it runnable with
    /// [`runnable`](crate::runnable). Dropping it instead frees the uthread unrun.
    Created
);

impl<T> Created<T> {
    #[inline]
    pub(crate) fn new(rec: NonNull<Record<T>>) -> Created<T> {
        Created { rec, _owns: PhantomData }
    }

    /// The record's address: an identity that stays valid until the uthread's `Exited`
    /// handle is dropped (upthread uses it as the `pthread_t`).
    #[inline]
    pub fn as_ptr(&self) -> NonNull<Record<T>> {
        self.rec
    }

    #[inline]
    pub(crate) fn into_base(self) -> NonNull<Uthread> {
        let p = Record::base(self.rec);
        core::mem::forget(self);
        p
    }
}

impl<T> Drop for Created<T> {
    fn drop(&mut self) {
        // SAFETY: the uthread never ran and this was its one handle.
        unsafe { destroy(self.rec) }
    }
}

typed_handle!(
    /// An exited uthread, given to
    /// [`Scheduler::thread_exited`](crate::Scheduler::thread_exited) (or
    /// `thread_refl_fault`). Its stack is no longer in use. Dropping it frees the
    /// uthread: its backing thread exits (running its TLS destructors), its stack goes
    /// back to the pool, and its record (with the scheduler's data) is dropped. Keep it
    /// for later with `into_raw` (a joinable thread's exit value).
    Exited,
    raw
);

impl<T> Drop for Exited<T> {
    fn drop(&mut self) {
        // SAFETY: the uthread is Done and this was its one handle.
        unsafe { destroy(self.rec) }
    }
}

/// Releases what a uthread holds (backing thread, stack, an entry it never ran) and
/// frees its record.
///
/// # Safety
/// The uthread never runs again (it is `Done`, or `Created` and never made runnable),
/// and nobody refers to the record afterwards.
unsafe fn destroy<T>(rec: NonNull<Record<T>>) {
    // SAFETY: the caller's contract: nothing runs on the uthread's TLS or stack. The
    // backing thread is the one thing the record holds that its drop (in `free`) does
    // not release; its stack and entry go with it.
    unsafe {
        if let Some(b) = (*rec.as_ref().uthread().backing.get()).take() {
            crate::tls::release(b);
        }
        record::free(rec);
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A handle [`runnable`](crate::runnable) accepts: [`Created`], [`Yielded`] or
/// [`Blocked`]. Sealed.
pub trait IntoRunnable: sealed::Sealed {
    #[doc(hidden)]
    /// The uthread, given up, and the states it may be in.
    fn into_parts(self) -> (NonNull<Uthread>, &'static [State]);
}

impl<T> sealed::Sealed for Created<T> {}
impl sealed::Sealed for Yielded {}
impl sealed::Sealed for Blocked {}

impl<T> IntoRunnable for Created<T> {
    #[inline]
    fn into_parts(self) -> (NonNull<Uthread>, &'static [State]) {
        (self.into_base(), &[State::Created])
    }
}

impl IntoRunnable for Yielded {
    #[inline]
    fn into_parts(self) -> (NonNull<Uthread>, &'static [State]) {
        (self.into_base(), &[State::Yielding])
    }
}

impl IntoRunnable for Blocked {
    #[inline]
    fn into_parts(self) -> (NonNull<Uthread>, &'static [State]) {
        (self.into_base(), &[State::Blocked])
    }
}
