//! Backtraces pass through the assembly trampolines to the real callers (their CFI, see
//! `vcore/src/arch/x86_64.rs`), checked with libgcc's unwinder (`_Unwind_Backtrace`), the
//! one Rust panics, gdb's fallback and perf's `--call-graph dwarf` agree with:
//! * a call pushed onto a suspended context (`push_call`) shows the suspended
//!   function's callers above it;
//! * a function run on an interrupted context shows, above the interrupt trampoline,
//!   the function the notification interrupted, at the interrupted instruction (a
//!   signal frame), and that function's callers;
//! * a fresh context, and vcore context at the top of its stack, end the backtrace
//!   cleanly at their first frame, every frame found in the unwind tables.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_vcore::arch::{self, Context};
use parlib_vcore::{self as vcore, Stack};

const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// libgcc's unwinder.

#[repr(C)]
struct UnwindContext {
    _opaque: [u8; 0],
}

/// `_URC_NO_REASON` and `_URC_END_OF_STACK` of `unwind.h`.
const URC_NO_REASON: i32 = 0;
const URC_END_OF_STACK: i32 = 5;

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut UnwindContext, *mut core::ffi::c_void) -> i32,
        arg: *mut core::ffi::c_void,
    ) -> i32;
    fn _Unwind_GetIPInfo(ctx: *mut UnwindContext, ip_before_insn: *mut libc::c_int) -> usize;
    fn _Unwind_GetRegionStart(ctx: *mut UnwindContext) -> usize;
}

/// One frame as the unwinder saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Frame {
    /// Start of the function the frame's PC lies in (0: no unwind information for it).
    func: usize,
    ip: usize,
    /// The PC is the interrupted instruction itself, not a return address (signal frame).
    exact_ip: bool,
}

/// A backtrace, in a fixed buffer: it is taken in vcore context and on stacks of ours.
struct Trace {
    frames: [Frame; 64],
    len: usize,
    /// What `_Unwind_Backtrace` returned.
    end: i32,
}

extern "C" fn record_frame(ctx: *mut UnwindContext, arg: *mut core::ffi::c_void) -> i32 {
    // SAFETY: `arg` is the `Trace` that `backtrace` passed.
    let t = unsafe { &mut *(arg as *mut Trace) };
    if t.len == t.frames.len() {
        return 9; // _URC_FAILURE: stop
    }
    let mut before: libc::c_int = 0;
    // SAFETY: `ctx` is the unwinder's context for this frame.
    let (ip, func) = unsafe { (_Unwind_GetIPInfo(ctx, &mut before), _Unwind_GetRegionStart(ctx)) };
    t.frames[t.len] = Frame { func, ip, exact_ip: before != 0 };
    t.len += 1;
    URC_NO_REASON
}

#[inline(never)]
fn backtrace() -> Trace {
    let mut t = Trace { frames: [Frame::default(); 64], len: 0, end: -1 };
    // SAFETY: the callback only writes into `t`, which outlives the call.
    t.end = unsafe { _Unwind_Backtrace(record_frame, &mut t as *mut Trace as *mut core::ffi::c_void) };
    t
}

impl Trace {
    /// The frames, without the one with PC 0 that libgcc reports last when the outermost
    /// frame's return address is undefined (the clean end of a backtrace).
    fn frames(&self) -> &[Frame] {
        match &self.frames[..self.len] {
            [walk @ .., last] if last.ip == 0 => walk,
            all => all,
        }
    }

    /// Whether the walk ended with `_URC_END_OF_STACK` in a frame the unwind tables
    /// describe: libgcc also stops at a PC it has no unwind information for, but then
    /// reports that last frame with the previous frame's function start.
    fn ends_cleanly(&self) -> bool {
        let f = self.frames();
        self.end == URC_END_OF_STACK
            && f.iter().all(|fr| fr.func != 0)
            && f.len() >= 2
            && f[f.len() - 1].func != f[f.len() - 2].func
    }

    /// Index of the first frame in function `f`.
    fn find(&self, f: usize) -> Option<usize> {
        self.frames().iter().position(|fr| fr.func == f)
    }

    fn describe(&self) -> String {
        let mut s = format!("{} frames, _Unwind_Backtrace returned {}:\n", self.len, self.end);
        for (i, f) in self.frames().iter().enumerate() {
            s += &format!(
                "  #{i} ip {:#x} in fn at {:#x}{}\n",
                f.ip,
                f.func,
                if f.exact_ip { " (signal frame)" } else { "" }
            );
        }
        s
    }
}

/// A value the contexts of this test hand each other; they run on one task, one at a time.
struct Shared<T>(UnsafeCell<T>);
// SAFETY: see above: never two accesses at once.
unsafe impl<T> Sync for Shared<T> {}
impl<T> Shared<T> {
    const fn new(v: T) -> Shared<T> {
        Shared(UnsafeCell::new(v))
    }
    fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The address of a function, as the unwind tables give its start.
fn addr(f: *const ()) -> usize {
    f as usize
}

// ---------------------------------------------------------------------------------------
// A call pushed onto a suspended context.

static MAIN_CTX: Shared<Context> = Shared::new(Context::EMPTY);
static SUSPENDED: Shared<Context> = Shared::new(Context::EMPTY);
static PUSHED: Shared<Option<Trace>> = Shared::new(None);

/// Runs pushed onto the suspended context: records a backtrace there.
unsafe extern "C" fn probe_pushed(_: usize) {
    // SAFETY: only the context running here touches PUSHED, until it switches back.
    unsafe { *PUSHED.get() = Some(backtrace()) };
}

/// Suspends itself for good (its caller, `outer`, never runs again after the test).
#[inline(never)]
extern "C" fn middle(n: usize) -> usize {
    loop {
        // SAFETY: both contexts are this test's; main resumes us only through SUSPENDED.
        unsafe { arch::switch(SUSPENDED.get(), MAIN_CTX.get()) };
        black_box(n);
    }
}

#[inline(never)]
extern "C" fn outer(n: usize) -> usize {
    black_box(middle(black_box(n)) + 1)
}

unsafe extern "C" fn fresh_entry(n: usize) -> ! {
    outer(n);
    unreachable!("middle never returns")
}

#[test]
fn a_pushed_call_sees_the_suspended_functions_callers_above_it() {
    isolated!(TIMEOUT, {
        let stack = Stack::new(64 * 1024).unwrap();
        // SAFETY: the stack is fresh and ours; every context below is this test's, and
        // main is resumed only from `middle` through MAIN_CTX.
        unsafe {
            *SUSPENDED.get() = arch::init_context(stack.top(), fresh_entry, 7);
            arch::switch(MAIN_CTX.get(), SUSPENDED.get()); // to middle
            arch::push_call(&mut *SUSPENDED.get(), probe_pushed, 0);
            arch::switch(MAIN_CTX.get(), SUSPENDED.get()); // runs the probe
        }
        // SAFETY: the other context is suspended again.
        let t = unsafe { (*PUSHED.get()).take() }.expect("the pushed call ran");
        let why = t.describe();
        let probe = t.find(addr(probe_pushed as *const ())).expect(&why);
        let mid = t.find(addr(middle as *const ())).unwrap_or_else(|| panic!("middle is missing: {why}"));
        let out = t.find(addr(outer as *const ())).unwrap_or_else(|| panic!("outer is missing: {why}"));
        let fresh =
            t.find(addr(fresh_entry as *const ())).unwrap_or_else(|| panic!("the entry is missing: {why}"));
        // probe, call_trampoline, middle, outer, fresh_entry, start_trampoline.
        assert_eq!((mid, out, fresh), (probe + 2, probe + 3, probe + 4), "{why}");
        assert_eq!(t.frames().len(), fresh + 2, "the backtrace goes on past start_trampoline: {why}");
        assert!(t.ends_cleanly(), "{why}");
    });
}

// ---------------------------------------------------------------------------------------
// A fresh context and vcore context.

static FRESH: Shared<Option<Trace>> = Shared::new(None);

unsafe extern "C" fn record_then_return(_: usize) -> ! {
    // SAFETY: main waits in MAIN_CTX until we switch back.
    unsafe {
        *FRESH.get() = Some(backtrace());
        arch::load(MAIN_CTX.get())
    }
}

#[test]
fn a_fresh_context_ends_its_backtrace_at_its_first_frame() {
    isolated!(TIMEOUT, {
        let stack = Stack::new(64 * 1024).unwrap();
        // SAFETY: a fresh stack of ours; the context returns to MAIN_CTX.
        unsafe {
            let ctx = arch::init_context(stack.top(), record_then_return, 0);
            arch::switch(MAIN_CTX.get(), &ctx);
        }
        // SAFETY: the other context is done.
        let t = unsafe { (*FRESH.get()).take() }.unwrap();
        let why = t.describe();
        let entry = t.find(addr(record_then_return as *const ())).expect(&why);
        assert_eq!(t.frames().len(), entry + 2, "entry, then start_trampoline, then nothing: {why}");
        assert!(t.ends_cleanly(), "{why}");
    });
}

static VCORE_TRACE_LEN: AtomicUsize = AtomicUsize::new(0);
static VCORE_TRACE_OK: AtomicBool = AtomicBool::new(false);

fn entry_recording_a_backtrace() -> ! {
    let t = backtrace();
    // The entry, `enter`, park_then_enter and call_on_stack, perhaps fewer if inlined;
    // nothing of the task's pthread stack below the vcore stack.
    let ok = t.ends_cleanly() && t.frames().len() <= 6;
    if !ok {
        eprintln!("vcore context: {}", t.describe());
    }
    VCORE_TRACE_LEN.store(t.frames().len(), Ordering::Relaxed);
    VCORE_TRACE_OK.store(ok, Ordering::Release);
    vcore::resume_main()
}

#[test]
fn vcore_context_ends_its_backtrace_at_the_top_of_the_vcore_stack() {
    isolated!(TIMEOUT, {
        vcore::lib_init().unwrap();
        vcore::set_entry(entry_recording_a_backtrace);
        vcore::request(1).unwrap();
        assert!(VCORE_TRACE_OK.load(Ordering::Acquire), "see stderr");
        assert!(VCORE_TRACE_LEN.load(Ordering::Relaxed) >= 2);
    });
}

// ---------------------------------------------------------------------------------------
// An interrupted context.

static ENTRIES: AtomicUsize = AtomicUsize::new(0);
static SPINNING: AtomicBool = AtomicBool::new(false);
static PROBED: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: Shared<Option<Trace>> = Shared::new(None);

/// Runs on the interrupted context, pushed onto it by vcore context.
unsafe extern "C" fn probe_interrupted(_: usize) {
    // SAFETY: only this context touches INTERRUPTED until PROBED is published.
    unsafe { *INTERRUPTED.get() = Some(backtrace()) };
    PROBED.store(true, Ordering::Release);
}

/// Says it spins, then spins until the probe has run: the notification interrupts this
/// loop. One `asm!` block with no calls, so that in a debug build too the interrupted
/// PC lies in this function and not in an atomic's accessor.
#[inline(never)]
fn spin_until_probed() {
    // SAFETY: a byte store to one static and byte loads of another; no stack, no calls.
    unsafe {
        core::arch::asm!(
            "mov byte ptr [rip + {spinning}], 1",
            "2:",
            "pause",
            "cmp byte ptr [rip + {probed}], 0",
            "je 2b",
            spinning = sym SPINNING,
            probed = sym PROBED,
            options(nostack),
        )
    };
}

#[inline(never)]
fn caller_of_the_spinner() {
    spin_until_probed();
    black_box(());
}

/// First entry: give vcore 0 back to the moved test thread. Second (the notification
/// interrupted it): run the probe on the interrupted context, then resume it.
fn entry_probing_the_interrupted() -> ! {
    if ENTRIES.fetch_add(1, Ordering::Relaxed) == 0 {
        vcore::resume_main()
    }
    // SAFETY: vcore context on this vcore.
    let vc = unsafe { vcore::this_unchecked() };
    // SAFETY: in vcore context on `vc`.
    let mut ctx = unsafe { vc.take_interrupted() }.expect("the test thread was interrupted");
    // SAFETY: the interrupted context is suspended and ours to resume; it runs on the
    // moved test thread's TLS, as resume_main does it.
    unsafe {
        arch::push_call(&mut ctx, probe_interrupted, 0);
        vc.set_current(core::ptr::null_mut(), vcore::main_tls());
        vc.set_vcore_context(false);
        arch::set_fs_base(vcore::main_tls());
        arch::load(&ctx)
    }
}

#[test]
fn a_call_on_an_interrupted_context_sees_the_interrupted_function_and_its_callers() {
    isolated!(TIMEOUT, {
        vcore::lib_init().unwrap();
        vcore::set_entry(entry_probing_the_interrupted);
        // A plain thread notifies vcore 0 once the test thread spins there.
        let notifier = std::thread::spawn(|| {
            while !SPINNING.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            vcore::notify(0).unwrap();
        });
        vcore::request(1).unwrap(); // the test thread now runs on vcore 0
        caller_of_the_spinner();
        notifier.join().unwrap();
        // SAFETY: the probe is done (PROBED).
        let t = unsafe { (*INTERRUPTED.get()).take() }.unwrap();
        let why = t.describe();
        let probe = t.find(addr(probe_interrupted as *const ())).expect(&why);
        let spin =
            t.find(addr(spin_until_probed as *const ())).unwrap_or_else(|| panic!("spinner missing: {why}"));
        let caller = t
            .find(addr(caller_of_the_spinner as *const ()))
            .unwrap_or_else(|| panic!("its caller missing: {why}"));
        // probe, call_trampoline, enter_from_interrupt (a tail call in release builds,
        // so gone), interrupt_trampoline, spinner.
        assert!((probe + 3..=probe + 4).contains(&spin), "{why}");
        assert!(t.frames()[spin].exact_ip, "the interrupted frame is not a signal frame: {why}");
        assert_eq!(caller, spin + 1, "{why}");
        assert!(!t.frames()[caller].exact_ip, "{why}");
        assert!(t.frames()[..=caller].iter().all(|f| f.func != 0), "{why}");
    });
}
