//! Criterion micro-benchmark: the bare context switch of `parlib_vcore::arch`, with no
//! scheduler, no vcore and no uthread record.
//!
//! * `arch_switch/one_way`: two contexts on one thread (criterion's, and a partner on a
//!   stack of its own) switch back and forth with `arch::switch`, which saves and loads
//!   the callee-saved registers, MXCSR and the x87 control word. The time reported per
//!   iteration is one switch, one way: elapsed / (2 x round trips).
//! * `arch_switch/one_way_fs_base`: the same with one FS-base write (`arch::set_fs_base`)
//!   before every switch, as a switch between uthreads that each have their own TLS
//!   makes. The base written is the thread's own, so TLS stays valid; the instruction
//!   costs the same whatever the value. It is `wrfsbase` where the kernel allows it
//!   (`AT_HWCAP2`), else an `arch_prctl` system call.
//!
//! A yield through a scheduler (uthread -> vcore context -> next uthread, with the run
//! queue and the notification checks) is `benches/switch.rs`; the difference between the
//! two is the scheduler's share. Setup (the stack, both contexts, a warm-up) happens
//! outside the timed region.
//!
//! Run: `cargo bench --bench arch_switch` (add `-- one_way` or `-- fs_base` to pick).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use parlib::vcore::arch::{self, Context};
use parlib::vcore::Stack;

/// Round trips in the untimed warm-up: enough to fault in the partner's stack pages and
/// train the indirect-jump predictor `restore_frame!` relies on.
const WARMUP_ROUND_TRIPS: u64 = 10_000;
/// The partner's stack: it only runs its loop, a few hundred bytes.
const PARTNER_STACK: usize = 16 * 1024;

/// The two contexts, used by one thread only: each side writes its own context when it
/// switches away, and nothing else touches them.
struct PingPong {
    main: UnsafeCell<Context>,
    partner: UnsafeCell<Context>,
    /// The thread's FS base, which both sides write back before switching.
    tls: usize,
    _stack: Stack,
}

impl PingPong {
    /// A suspended partner that switches straight back, writing the FS base first if `FS`.
    fn new<const FS: bool>() -> Box<PingPong> {
        let stack = Stack::new(PARTNER_STACK).expect("a partner stack");
        let top = stack.top();
        let pp = Box::new(PingPong {
            main: UnsafeCell::new(Context::EMPTY),
            partner: UnsafeCell::new(Context::EMPTY),
            tls: arch::fs_base(),
            _stack: stack,
        });
        // SAFETY: a fresh stack that only the partner uses; its argument is the boxed
        // PingPong, which stays put until the partner is abandoned with it.
        unsafe {
            *pp.partner.get() = arch::init_context(top, partner::<FS>, &*pp as *const PingPong as usize)
        };
        pp.round_trips::<FS>(WARMUP_ROUND_TRIPS);
        pp
    }

    /// `n` round trips: main -> partner -> main.
    #[inline(never)]
    fn round_trips<const FS: bool>(&self, n: u64) {
        for _ in 0..n {
            // SAFETY: the partner is suspended in `partner` (or fresh) and comes back here;
            // the FS base written is this thread's own TLS.
            unsafe {
                if FS {
                    arch::set_fs_base(self.tls);
                }
                arch::switch(self.main.get(), self.partner.get());
            }
        }
        black_box(self);
    }

    /// Criterion's `iters` one-way switches, rounded up to whole round trips, timed,
    /// scaled back.
    fn time_switches<const FS: bool>(&self, iters: u64) -> Duration {
        let trips = iters.div_ceil(2).max(1);
        let start = Instant::now();
        self.round_trips::<FS>(trips);
        start.elapsed().mul_f64(iters as f64 / (2 * trips) as f64)
    }
}

/// The partner: switches back to main forever. Abandoned, suspended, when the bench ends.
unsafe extern "C" fn partner<const FS: bool>(pp: usize) -> ! {
    // SAFETY: `PingPong::new` passes its boxed PingPong, alive for as long as we run.
    let pp = unsafe { &*(pp as *const PingPong) };
    loop {
        // SAFETY: main is suspended in `round_trips` and resumes us only through
        // `partner`; the FS base is the thread's own.
        unsafe {
            if FS {
                arch::set_fs_base(pp.tls);
            }
            arch::switch(pp.partner.get(), pp.main.get());
        }
    }
}

fn arch_switch(c: &mut Criterion) {
    let mut group = c.benchmark_group("arch_switch");
    let plain = PingPong::new::<false>();
    group.bench_function("one_way", |b| b.iter_custom(|iters| plain.time_switches::<false>(iters)));
    let fs = PingPong::new::<true>();
    group.bench_function("one_way_fs_base", |b| b.iter_custom(|iters| fs.time_switches::<true>(iters)));
    group.finish();
}

criterion_group!(benches, arch_switch);
criterion_main!(benches);
