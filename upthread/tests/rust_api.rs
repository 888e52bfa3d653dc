//! The Rust API: spawn, Builder (stack size, name), scope (borrows, joins everything,
//! reports panics), yield_now, dropping a handle detaches.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::{wait_until, TIMEOUT};

#[test]
fn builder_sets_name_and_stack_size() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let h = parlib_upthread::Builder::new()
            .name("worker-7")
            .stack_size(4 * 1024 * 1024)
            .spawn(|| {
                // Use most of a large stack: 3 MiB of locals fit in 4 MiB.
                let big = [1u8; 3 * 1024 * 1024];
                let sum: usize = std::hint::black_box(&big).iter().map(|&b| b as usize).sum();
                (parlib_upthread::current_name(), sum)
            })
            .unwrap();
        let (name, sum) = h.join().unwrap();
        assert_eq!(name.as_deref(), Some("worker-7"));
        assert_eq!(sum, 3 * 1024 * 1024);
        assert_eq!(parlib_upthread::spawn(parlib_upthread::current_name).join().unwrap(), None);
    });
}

#[test]
fn a_builder_with_a_stack_too_large_to_map_fails_cleanly_and_starts_nothing() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        // Overflows with its guard page: EINVAL, as glibc's pthread_create. It used to wrap
        // to a guard-only stack in release builds, and the thread faulted on its first push.
        for size in [usize::MAX, usize::MAX - 4095] {
            let e = parlib_upthread::Builder::new().stack_size(size).spawn(|| ()).expect_err("a huge stack");
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "stack size {size:#x}");
        }
        // Fits in a usize but not in the address space: EAGAIN.
        let e = parlib_upthread::Builder::new()
            .stack_size(usize::MAX / 2)
            .spawn(|| ())
            .expect_err("a huge stack");
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        // Nothing was left half-made: a normal thread still starts and is joined.
        assert_eq!(parlib_upthread::spawn(|| 7).join().unwrap(), 7);
    });
}

#[test]
fn scope_threads_borrow_and_are_all_joined() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let data: Vec<u64> = (1..=100).collect();
        let done = AtomicUsize::new(0);
        let total = parlib_upthread::scope(|s| {
            for chunk in data.chunks(10) {
                s.spawn(|| {
                    parlib_upthread::yield_now();
                    done.fetch_add(chunk.len(), Ordering::SeqCst);
                });
            }
            let h = s.spawn(|| data.iter().sum::<u64>());
            h.join().unwrap()
        });
        assert_eq!(total, 5050);
        assert_eq!(done.load(Ordering::SeqCst), 100, "every scoped thread finished before scope returned");
    });
}

#[test]
fn a_panic_in_an_unjoined_scoped_thread_panics_the_scope() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let r = std::panic::catch_unwind(|| {
            parlib_upthread::scope(|s| {
                s.spawn(|| panic!("scoped on purpose"));
            })
        });
        assert!(r.is_err());
        // Joined by hand, the panic is the handle's Err and the scope is fine.
        let r = parlib_upthread::scope(|s| s.spawn(|| panic!("joined")).join().is_err());
        assert!(r);
    });
}

static RAN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn dropping_a_handle_detaches_the_thread() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        for _ in 0..100 {
            drop(parlib_upthread::spawn(|| RAN.fetch_add(1, Ordering::SeqCst)));
        }
        wait_until(|| RAN.load(Ordering::SeqCst) == 100);
    });
}

#[test]
fn thread_locals_are_per_thread() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        std::thread_local!(static MINE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
        let hs: Vec<_> = (1..=20)
            .map(|i| {
                parlib_upthread::spawn(move || {
                    MINE.with(|m| m.set(i));
                    for _ in 0..5 {
                        parlib_upthread::yield_now();
                    }
                    MINE.with(|m| m.get())
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i + 1);
        }
    });
}
