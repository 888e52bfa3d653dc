//! Preemption never switches a uthread out inside libc (DESIGN §5, safe points): a
//! notification that arrives while the interrupted PC lies in libc, the loader or
//! another non-reentrant library stays pending and is retried shortly after, so glibc's
//! locks and per-thread caches are never left half-updated by a uthread that another
//! uthread on the same vcore then follows into the same code.
//!
//! Both tests run on one vcore (`VCORE_LIMIT=1`) under a fast preempting tick.

use parlib_testsched as common;

use std::ffi::CStr;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, TlsMode, Uthread};
use parlib_vcore as vcore;

const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];
const TICK: Duration = Duration::from_micros(100);

const UTHREADS: usize = 64;
const SOAK: Duration = Duration::from_secs(10);

static ITERATIONS: [AtomicU64; UTHREADS] = [const { AtomicU64::new(0) }; UTHREADS];
static CORRUPTIONS: AtomicUsize = AtomicUsize::new(0);
static FIRST_CORRUPTION: AtomicPtr<String> = AtomicPtr::new(core::ptr::null_mut());
static STOP: AtomicBool = AtomicBool::new(false);

fn corrupted(what: String) {
    if CORRUPTIONS.fetch_add(1, Ordering::Relaxed) == 0 {
        FIRST_CORRUPTION.store(Box::into_raw(Box::new(what)), Ordering::Release);
    }
}

/// A small xorshift generator: sizes and contents vary from iteration to iteration.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A stdio stream every uthread writes to: each `fprintf` holds the stream's lock.
static SHARED_FILE: AtomicPtr<libc::FILE> = AtomicPtr::new(core::ptr::null_mut());

/// One round of libc work by uthread `me`, checking every result.
fn libc_round(me: usize, round: u64, rng: &mut u64) {
    // malloc / free, from tiny to above the mmap threshold (which makes system calls
    // inside libc), several blocks live at once.
    let mut blocks = [(core::ptr::null_mut::<u8>(), 0usize, 0u8); 4];
    for b in &mut blocks {
        let size = match next(rng) % 8 {
            0 => 200 * 1024,
            k => 1 << (3 + 2 * k),
        };
        let fill = (next(rng) & 0xFF) as u8;
        // SAFETY: malloc of a nonzero size; the result is checked before use.
        let p = unsafe { libc::malloc(size) } as *mut u8;
        assert!(!p.is_null(), "malloc({size}) failed");
        // SAFETY: `p` is a fresh block of `size` bytes.
        unsafe { core::ptr::write_bytes(p, fill, size) };
        *b = (p, size, fill);
    }
    for &(p, size, fill) in &blocks {
        // SAFETY: each block is live and `size` bytes long.
        let s = unsafe { core::slice::from_raw_parts(p, size) };
        if let Some(i) = s.iter().position(|&x| x != fill) {
            corrupted(format!("uthread {me} round {round}: malloc block byte {i} of {size} changed"));
        }
        // SAFETY: allocated by malloc above, freed once.
        unsafe { libc::free(p.cast()) };
    }

    // Rust's allocator (also malloc) through a Vec that grows by reallocation.
    let n = 1 + (next(rng) % 5000) as usize;
    let v: Vec<u64> = (0..n as u64).map(|k| k ^ round).collect();
    if v.iter().enumerate().any(|(k, &x)| x != k as u64 ^ round) {
        corrupted(format!("uthread {me} round {round}: Vec contents changed"));
    }
    drop(v);

    // snprintf: locale data and stdio internals.
    let mut buf = [0u8; 96];
    let x = (round % 1000) as f64 / 8.0;
    // SAFETY: the format matches the arguments (int, unsigned long, C string, double)
    // and snprintf writes at most `buf.len()` bytes, NUL included.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"u%d r%lu %s %.3f".as_ptr(),
            me as libc::c_int,
            round as libc::c_ulong,
            c"safe-point".as_ptr(),
            x,
        )
    };
    let expected = format!("u{me} r{round} safe-point {x:.3}");
    let got = CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    if len as usize != expected.len() || got != expected {
        corrupted(format!(
            "uthread {me} round {round}: snprintf gave {got:?} ({len}), expected {expected:?}"
        ));
    }
}

#[test]
fn uthreads_preempted_every_100us_while_in_malloc_and_snprintf_never_deadlock_or_corrupt() {
    isolated!(Duration::from_secs(120), env = ONE_VCORE, {
        common::init();
        // SAFETY: opens /dev/null for writing; checked below, closed at the end.
        let file = unsafe { libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr()) };
        assert!(!file.is_null());
        SHARED_FILE.store(file, Ordering::Relaxed);
        let ticker = common::start_preempting(TICK, &[0]);
        for (me, iterations) in ITERATIONS.iter().enumerate() {
            // Half with their own TLS (glibc's locked arenas), half on the vcore's TLS
            // (one malloc tcache shared by all of them, safe only if none is ever
            // switched out in the middle of malloc).
            let tls = if me % 2 == 0 { TlsMode::Backed } else { TlsMode::None };
            common::spawn(tls, move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (me as u64) << 20 | 1;
                let mut round = 0u64;
                while !STOP.load(Ordering::Relaxed) {
                    libc_round(me, round, &mut rng);
                    round += 1;
                    iterations.store(round, Ordering::Relaxed);
                }
            });
        }
        // The uthreads never yield: main (a uthread on the same vcore) gets to look at
        // the clock only because they are preempted.
        let start = Instant::now();
        common::wait_until(|| start.elapsed() >= SOAK);
        STOP.store(true, Ordering::Relaxed);
        common::wait_all();
        ticker.stop();
        // SAFETY: every uthread that used the stream has exited.
        assert_eq!(unsafe { libc::fclose(file) }, 0);

        let preemptions = common::PREEMPTIONS.load(Ordering::Relaxed);
        let rounds: Vec<u64> = ITERATIONS.iter().map(|i| i.load(Ordering::Relaxed)).collect();
        println!(
            "{preemptions} preemptions; rounds per uthread: min {:?}, max {:?}",
            rounds.iter().min(),
            rounds.iter().max()
        );
        let first = FIRST_CORRUPTION.load(Ordering::Acquire);
        // SAFETY: published once with Release, never freed.
        let first = if first.is_null() { String::new() } else { unsafe { (*first).clone() } };
        assert_eq!(CORRUPTIONS.load(Ordering::Relaxed), 0, "libc results were corrupted; first: {first}");
        for (me, &r) in rounds.iter().enumerate() {
            assert!(r > 0, "uthread {me} never completed a round");
        }
        assert!(preemptions > UTHREADS, "the uthreads were preempted only {preemptions} times");
    });
}

#[test]
fn a_notification_during_a_long_libc_call_waits_until_the_call_returns() {
    // A uthread memsets a large buffer again and again (each call in libc for about a
    // millisecond) while ticks arrive every 100 µs. Interruptions inside memset would
    // show up as the uthread's interruption count rising during a call; deferred ones
    // arrive at most once per call, right after it returns (the retry timer).
    static SPINNER: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
    const CALLS: usize = 60;
    const BYTES: usize = 16 << 20;
    /// Counts interruptions of the spinner and preempts it, so that the other ticks
    /// handled in the same pass (deferred ones pile up) do not count again.
    fn on_tick(_: &EventMsg, _: EventType) {
        if let Some(u) = uthread::interrupted() {
            if u.as_ptr() == SPINNER.load(Ordering::Acquire) {
                INTERRUPTS.fetch_add(1, Ordering::Relaxed);
                uthread::paused(uthread::take_interrupted().expect("it was interrupted"));
            }
        }
    }
    static WORST: AtomicUsize = AtomicUsize::new(0);
    static AFTER_CALLS: AtomicUsize = AtomicUsize::new(0);
    static TICKS_DURING: AtomicUsize = AtomicUsize::new(0);
    isolated!(Duration::from_secs(60), env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, on_tick).unwrap();
        let ticker = std::sync::Arc::new(common::Ticker::start(TICK, &[0]));
        let t2 = ticker.clone();
        let u: NonNull<Uthread> = common::spawn(TlsMode::Backed, move || {
            let mut buf = vec![0u8; BYTES];
            for call in 0..CALLS {
                let (before, ticks_before) = (INTERRUPTS.load(Ordering::Relaxed), t2.sent());
                // SAFETY: `buf` has BYTES writable bytes.
                unsafe { libc::memset(buf.as_mut_ptr().cast(), call as i32, BYTES) };
                let (during, ticks_after) = (INTERRUPTS.load(Ordering::Relaxed) - before, t2.sent());
                WORST.fetch_max(during, Ordering::Relaxed);
                TICKS_DURING.fetch_add(ticks_after - ticks_before, Ordering::Relaxed);
                // Pure computation outside libc: here the deferred notification lands.
                let mut x = call as u64 + 1;
                for _ in 0..200_000 {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                AFTER_CALLS.store(INTERRUPTS.load(Ordering::Relaxed), Ordering::Relaxed);
                black_box((x, &buf));
            }
        });
        SPINNER.store(u.as_ptr(), Ordering::Release);
        common::wait_all();
        let ticker = std::sync::Arc::into_inner(ticker).expect("the uthread dropped its handle");
        ticker.stop();
        let (worst, ticks) = (WORST.load(Ordering::Relaxed), TICKS_DURING.load(Ordering::Relaxed));
        println!("worst interruptions within one memset: {worst}; ticks sent during the memsets: {ticks}");
        // Ticks were sent while the uthread was in memset, yet it was interrupted at
        // most twice per call (once in each of the few instructions around the call).
        assert!(ticks >= CALLS, "too few ticks arrived during the memsets to tell ({ticks})");
        assert!(worst <= 2, "interrupted {worst} times within one memset call");
        assert!(AFTER_CALLS.load(Ordering::Relaxed) > 0, "the deferred notifications were never delivered");
    });
}
