//! Preemption never lands inside libc (DESIGN §5): a call that spends most of its time in
//! `malloc`, `free`, `memcpy` and `fprintf` is preempted only at safe points. Expiries
//! that meet libc are retried, and the libc state the launcher shares with the suspended
//! call (one stdio stream, one malloc arena) stays consistent.

use std::io::Read;
use std::time::Duration;

use parlib_timed::{self as timed, Outcome};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A stream both sides write whole lines to: a line split by a preemption inside
/// `fprintf` would show up interleaved.
struct Stream(*mut libc::FILE);
// SAFETY: a C stream may be used from any thread (glibc locks it).
unsafe impl Send for Stream {}

/// libc work until the call has been preempted `preemptions` times and at least one
/// expiry met libc (a count, not a time: the watchdog bounds it); returns the rounds done.
fn libc_heavy(f: Stream, preemptions: u64) -> u32 {
    let before = timed::stats();
    let mut src = vec![0u8; 4096];
    let mut r = 0u32;
    loop {
        let s = timed::stats();
        if s.preemptions - before.preemptions >= preemptions && s.deferred_unsafe > before.deferred_unsafe {
            return r;
        }
        // SAFETY: plain libc calls on buffers we own; `f` is an open stream.
        unsafe {
            let n = 64 + (r as usize * 37) % 4000;
            let p = libc::malloc(n) as *mut u8;
            assert!(!p.is_null());
            src[n % 4096] = r as u8;
            libc::memcpy(p.cast(), src.as_ptr().cast(), n);
            assert_eq!(*p.add(n % 4096 % n), src[n % 4096 % n]);
            libc::free(p.cast());
            libc::fprintf(f.0, c"call line %u abcdefghijklmnopqrstuvwxyz\n".as_ptr(), r);
        }
        r += 1;
    }
}

#[test]
fn a_call_that_lives_in_libc_is_preempted_only_at_safe_points() {
    parlib_testkit::isolated!(TIMEOUT, {
        // SAFETY: a new temporary stream.
        let f = unsafe { libc::tmpfile() };
        assert!(!f.is_null());
        let before = timed::stats();
        let stream = Stream(f);
        let mut out = timed::launch(Duration::from_micros(100), move || libc_heavy(stream, 50)).unwrap();
        let mut stops = 0u32;
        let rounds = loop {
            match out {
                Outcome::Completed(v) => break v,
                Outcome::Timeout(c) | Outcome::Paused(c) => {
                    stops += 1;
                    // The launcher uses the same stream and allocator while the call is
                    // suspended.
                    // SAFETY: as in `libc_heavy`.
                    unsafe { libc::fprintf(f, c"launcher line %u 0123456789\n".as_ptr(), stops) };
                    drop(vec![stops as u8; 1000]);
                    out = c.resume(Duration::from_micros(100)).unwrap();
                }
            }
        };
        let s = timed::stats();
        assert!(stops >= 50, "the call was preempted until it had been 50 times ({stops})");
        assert!(s.preemptions - before.preemptions >= stops as u64);
        assert!(s.deferred_unsafe > before.deferred_unsafe, "some expiries met libc and were retried: {s:?}");
        // Every line is whole: no fprintf was split by a preemption.
        // SAFETY: flushing and rewinding our stream, then reading it through its fd.
        let text = unsafe {
            assert_eq!(libc::fflush(f), 0);
            libc::rewind(f);
            let mut file = std::mem::ManuallyDrop::new(
                <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(libc::fileno(f)),
            );
            let mut t = String::new();
            file.read_to_string(&mut t).unwrap();
            t
        };
        let (mut calls, mut launchers) = (0, 0);
        for line in text.lines() {
            if line.starts_with("call line ") && line.ends_with(" abcdefghijklmnopqrstuvwxyz") {
                calls += 1;
            } else if line.starts_with("launcher line ") && line.ends_with(" 0123456789") {
                launchers += 1;
            } else {
                panic!("a torn line: {line:?}");
            }
        }
        assert_eq!((calls, launchers), (rounds, stops));
    });
}
