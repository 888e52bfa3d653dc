//! The floating-point environment's control state is callee-saved (SysV ABI §3.2.1), so
//! it belongs to each context: a uthread that changes its rounding mode (MXCSR for SSE,
//! the x87 control word) keeps it across yields and migrations, while the other
//! uthreads on the same vcore, and vcore context itself, keep the default.

use parlib_testsched as common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, TlsMode};
use parlib_vcore as vcore;

/// MXCSR at process start: all exceptions masked, round to nearest (SysV ABI §3.2.1).
const MXCSR_DEFAULT: u32 = 0x1F80;
/// x87 control word at process start: extended precision, all exceptions masked.
const X87_CW_DEFAULT: u16 = 0x037F;
/// MXCSR's control bits; bits 0-5 are sticky status flags that arithmetic sets.
const MXCSR_CONTROL: u32 = 0xFFC0;

/// The four IEEE rounding modes, as the 2-bit rounding-control field of both registers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rounding {
    Nearest = 0,
    Down = 1,
    Up = 2,
    TowardZero = 3,
}
const MODES: [Rounding; 4] = [Rounding::Nearest, Rounding::Down, Rounding::Up, Rounding::TowardZero];

impl Rounding {
    fn mxcsr(self) -> u32 {
        MXCSR_DEFAULT | (self as u32) << 13
    }
    fn x87_cw(self) -> u16 {
        X87_CW_DEFAULT | (self as u16) << 10
    }
    /// The bits of `1.0 / 10.0` and `-1.0 / 10.0` under this mode. 0.1 is not
    /// representable; nearest rounds its magnitude up, so each mode gives a distinct pair.
    fn tenths(self) -> (u64, u64) {
        const LO: u64 = 0x3FB9_9999_9999_9999;
        const HI: u64 = 0x3FB9_9999_9999_999A;
        const NEG: u64 = 1 << 63;
        match self {
            Rounding::Nearest => (HI, NEG | HI),
            Rounding::Down => (LO, NEG | HI),
            Rounding::Up => (HI, NEG | LO),
            Rounding::TowardZero => (LO, NEG | LO),
        }
    }
}

fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr stores 4 bytes to a valid, writable local.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

fn x87_cw() -> u16 {
    let mut v: u16 = 0;
    // SAFETY: fnstcw stores 2 bytes to a valid, writable local.
    unsafe { core::arch::asm!("fnstcw [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

/// Sets both rounding-control fields, leaving everything else at its default.
fn set_rounding(mode: Rounding) {
    let (m, cw) = (mode.mxcsr(), mode.x87_cw());
    // SAFETY: loads valid control values (all exceptions stay masked, so no arithmetic
    // can trap); only the rounding of later floating-point operations changes.
    unsafe {
        core::arch::asm!(
            "ldmxcsr [{m}]",
            "fldcw [{cw}]",
            m = in(reg) &m,
            cw = in(reg) &cw,
            options(nostack, preserves_flags, readonly),
        )
    };
}

/// `±1.0 / 10.0` computed now, under the running rounding mode (`black_box` keeps the
/// compiler from folding it at compile time, under round to nearest).
fn tenths_now() -> (u64, u64) {
    let (one, ten) = (black_box(1.0f64), black_box(10.0f64));
    (black_box(one / ten).to_bits(), black_box(-one / ten).to_bits())
}

/// Whether the running context has `mode`, in both registers and in actual arithmetic.
fn runs_with(mode: Rounding) -> bool {
    mxcsr() & MXCSR_CONTROL == mode.mxcsr() && x87_cw() == mode.x87_cw() && tenths_now() == mode.tenths()
}

static CHECKS: AtomicUsize = AtomicUsize::new(0);
static WRONG: AtomicUsize = AtomicUsize::new(0);
static VCORE_CTX_CHECKS: AtomicUsize = AtomicUsize::new(0);
static VCORE_CTX_WRONG: AtomicUsize = AtomicUsize::new(0);
/// Set once every uthread has been spawned.
static STARTED: AtomicBool = AtomicBool::new(false);
/// Per rounding mode: the vcores a uthread in that mode checked it on.
static MODE_SEEN_ON: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

const YIELDS: usize = 30;

/// A uthread body: switch to `mode`, then yield many times, checking after every yield
/// that the mode is still ours, and in every yield callback that vcore context runs with
/// the default.
fn keep_rounding(mode: Rounding) {
    assert!(runs_with(Rounding::Nearest), "a new uthread starts with the default environment");
    set_rounding(mode);
    let mut y = 0;
    // Until every uthread exists (so uthreads in all modes are suspended on each vcore
    // together), then YIELDS more times.
    while !STARTED.load(Ordering::Acquire) || y < YIELDS {
        y += 1;
        uthread::yield_with(|uth| {
            VCORE_CTX_CHECKS.fetch_add(1, Ordering::Relaxed);
            if !runs_with(Rounding::Nearest) {
                VCORE_CTX_WRONG.fetch_add(1, Ordering::Relaxed);
            }
            uthread::paused(uth);
        });
        CHECKS.fetch_add(1, Ordering::Relaxed);
        if runs_with(mode) {
            MODE_SEEN_ON[mode as usize].fetch_or(1 << vcore::id(), Ordering::Relaxed);
        } else {
            WRONG.fetch_add(1, Ordering::Relaxed);
        }
    }
    set_rounding(Rounding::Nearest);
}

#[test]
fn rounding_mode_stays_with_its_uthread_across_yields() {
    isolated!(Duration::from_secs(30), {
        common::init();
        let n = vcore::max_vcores();
        let mut spawned = 0;
        // On every vcore, one pinned uthread per mode: each shares its vcore with uthreads
        // in every other mode, the default one included.
        for id in 0..n {
            for mode in MODES {
                common::spawn_on(id, TlsMode::Backed, move || keep_rounding(mode));
                spawned += 1;
            }
        }
        // And unpinned ones, which carry their mode from vcore to vcore.
        for k in 0..4 * n {
            let mode = MODES[k % 4];
            let tls = if k % 2 == 0 { TlsMode::Backed } else { TlsMode::None };
            common::spawn(tls, move || keep_rounding(mode));
            spawned += 1;
        }
        STARTED.store(true, Ordering::Release);
        // main, too, keeps its own mode while it waits.
        set_rounding(Rounding::Up);
        let mut main_wrong = 0;
        common::wait_until(|| {
            if !runs_with(Rounding::Up) {
                main_wrong += 1;
            }
            common::all_exited()
        });
        set_rounding(Rounding::Nearest);

        assert_eq!(main_wrong, 0, "main lost its rounding mode across yields");
        assert!(CHECKS.load(Ordering::Relaxed) >= spawned * YIELDS);
        assert_eq!(WRONG.load(Ordering::Relaxed), 0, "a uthread saw another context's rounding mode");
        assert_eq!(VCORE_CTX_CHECKS.load(Ordering::Relaxed), CHECKS.load(Ordering::Relaxed));
        assert_eq!(VCORE_CTX_WRONG.load(Ordering::Relaxed), 0, "vcore context inherited a uthread's mode");
        for mode in MODES {
            assert_eq!(
                MODE_SEEN_ON[mode as usize].load(Ordering::Relaxed),
                common::all_vcores_mask(),
                "{mode:?} was not checked on every vcore"
            );
        }
    });
}
