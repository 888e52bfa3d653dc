//! The rwlock's fairness policy (`rwlock.rs`, "Policy"):
//!
//! * writers never starve: once a writer waits, new readers queue behind it, so even a
//!   continuous stream of overlapping readers lets it in;
//! * readers never starve either: every reader that queued during a write enters when
//!   that writer leaves, all together, before a writer that queued after them.

use parlib_testsched as common;
mod support;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_sync::{RawRwLock, RwLock};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, State, TlsMode, Uthread};
use support::{spawn_plain, Failures};

const TIMEOUT: Duration = Duration::from_secs(30);

fn is_blocked(uth: NonNull<Uthread>) -> bool {
    // SAFETY: callers pass `main`, which lives for the process.
    unsafe { uth.as_ref() }.state() == State::Blocked
}

#[test]
fn a_writer_gets_the_lock_despite_a_continuous_stream_of_readers() {
    // Readers re-take the read lock in a loop and hold it across yields, so at every
    // instant some reader holds it: a reader-preferring lock would never let the writer
    // in (and the watchdog would fail the test). Once the writer (main) is queued, a
    // reader that *starts* a read must not get in before the writer has had its turn.
    const UTHREAD_READERS: usize = 8;
    const THREAD_READERS: usize = 2;
    static L: RwLock<u64> = RwLock::new(0);
    static WRITER_DONE: AtomicBool = AtomicBool::new(false);
    static WRITER_HAD_IT: AtomicBool = AtomicBool::new(false);
    static READS: AtomicUsize = AtomicUsize::new(0);
    static READS_BEHIND_WRITER: AtomicUsize = AtomicUsize::new(0);
    static FAILURES: Failures = Failures::new();
    fn reader(main: usize) {
        let main = NonNull::new(main as *mut Uthread).expect("main");
        while !WRITER_DONE.load(Ordering::Acquire) {
            let writer_queued = is_blocked(main); // main blocks only in `write`
            let g = L.read();
            if writer_queued {
                READS_BEHIND_WRITER.fetch_add(1, Ordering::Relaxed);
                if !WRITER_HAD_IT.load(Ordering::Acquire) {
                    FAILURES.record(|| "a reader that came after the queued writer got in first".into());
                }
            }
            READS.fetch_add(1, Ordering::Relaxed);
            for _ in 0..3 {
                support::pause(); // hold it across yields (sleeps on a thread)
            }
            drop(g);
        }
    }
    isolated!(TIMEOUT, {
        common::init();
        let main = uthread::current().expect("main is a uthread").as_ptr() as usize;
        for _ in 0..UTHREAD_READERS {
            common::spawn(TlsMode::Backed, move || reader(main));
        }
        let threads: Vec<_> = (0..THREAD_READERS).map(|_| spawn_plain(move || reader(main))).collect();
        // Let the stream get going: plenty of reads, overlapping.
        common::wait_until(|| READS.load(Ordering::Relaxed) >= 200);
        let mut w = L.write();
        WRITER_HAD_IT.store(true, Ordering::Release);
        *w += 1;
        drop(w);
        WRITER_DONE.store(true, Ordering::Release);
        common::wait_all();
        common::wait_until(|| threads.iter().all(|t| t.is_finished()));
        FAILURES.assert_none("readers behind a queued writer");
        assert_eq!(*L.read(), 1);
        println!(
            "{} reads; {} started while the writer was queued and got in after it",
            READS.load(Ordering::Relaxed),
            READS_BEHIND_WRITER.load(Ordering::Relaxed)
        );
    });
}

#[test]
fn readers_queued_during_a_write_all_enter_together_when_the_writer_leaves() {
    // main holds the write lock. Queued behind it, in this order: FIRST readers, a
    // second writer, SECOND more readers. When main unlocks, all the readers enter (each
    // stays until every one of them is inside at once: if they were let in one by one,
    // or only those queued before the second writer, this would never happen and the
    // watchdog would fail the test), and only then the second writer.
    const FIRST: usize = 5;
    const SECOND: usize = 5;
    const READERS: usize = FIRST + SECOND;
    static L: RawRwLock = RawRwLock::new();
    static INSIDE: AtomicUsize = AtomicUsize::new(0);
    static ENTERED: AtomicUsize = AtomicUsize::new(0);
    static WRITER_SAW_ENTERED: AtomicUsize = AtomicUsize::new(usize::MAX);
    static WRITER_SAW_INSIDE: AtomicUsize = AtomicUsize::new(usize::MAX);
    fn reader() {
        L.read_lock().unwrap();
        INSIDE.fetch_add(1, Ordering::SeqCst);
        ENTERED.fetch_add(1, Ordering::SeqCst);
        common::wait_until(|| ENTERED.load(Ordering::SeqCst) == READERS);
        INSIDE.fetch_sub(1, Ordering::SeqCst);
        L.unlock().unwrap();
    }
    isolated!(TIMEOUT, {
        common::init();
        L.write_lock().unwrap();
        let spawn_blocked = |f: fn()| {
            let u = common::spawn(TlsMode::Backed, f);
            // SAFETY: nothing queued here can finish before main unlocks.
            unsafe { support::wait_until_blocked(u) };
        };
        for _ in 0..FIRST {
            spawn_blocked(reader);
        }
        spawn_blocked(|| {
            L.write_lock().unwrap();
            WRITER_SAW_ENTERED.store(ENTERED.load(Ordering::SeqCst), Ordering::SeqCst);
            WRITER_SAW_INSIDE.store(INSIDE.load(Ordering::SeqCst), Ordering::SeqCst);
            L.unlock().unwrap();
        });
        for _ in 0..SECOND {
            spawn_blocked(reader);
        }
        assert_eq!(ENTERED.load(Ordering::SeqCst), 0, "a reader got in beside the writer");
        L.unlock().unwrap();
        common::wait_all();
        assert_eq!(ENTERED.load(Ordering::SeqCst), READERS);
        assert_eq!(
            WRITER_SAW_ENTERED.load(Ordering::SeqCst),
            READERS,
            "the second writer got in before every reader queued during the first write"
        );
        assert_eq!(WRITER_SAW_INSIDE.load(Ordering::SeqCst), 0, "the second writer got in beside readers");
        assert_eq!(L.destroy(), Ok(()));
    });
}

#[test]
fn writers_queued_behind_readers_get_the_lock_in_turn() {
    // Several writers queue behind a read hold; when it ends they run one at a time
    // (never two inside), in the order they queued.
    const WRITERS: usize = 6;
    static L: RawRwLock = RawRwLock::new();
    static INSIDE: AtomicBool = AtomicBool::new(false);
    static ORDER: [AtomicUsize; WRITERS] = [const { AtomicUsize::new(usize::MAX) }; WRITERS];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        common::init();
        L.read_lock().unwrap();
        for i in 0..WRITERS {
            let u = common::spawn(TlsMode::Backed, move || {
                L.write_lock().unwrap();
                if INSIDE.swap(true, Ordering::SeqCst) {
                    OVERLAPS.fetch_add(1, Ordering::SeqCst);
                }
                ORDER[NEXT.fetch_add(1, Ordering::SeqCst)].store(i, Ordering::SeqCst);
                common::yield_now(); // hold it across a yield
                INSIDE.store(false, Ordering::SeqCst);
                L.unlock().unwrap();
            });
            // SAFETY: a writer cannot finish before main's read hold ends.
            unsafe { support::wait_until_blocked(u) };
        }
        assert_eq!(L.try_read_lock(), Err(parlib_sync::Errno::BUSY), "new readers wait behind writers");
        L.unlock().unwrap();
        common::wait_all();
        assert_eq!(OVERLAPS.load(Ordering::SeqCst), 0, "two writers inside at once");
        let order: Vec<usize> = ORDER.iter().map(|o| o.load(Ordering::SeqCst)).collect();
        assert_eq!(order, (0..WRITERS).collect::<Vec<_>>(), "writers got the lock out of queue order");
    });
}
