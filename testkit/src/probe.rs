//! A stack-alignment probe, a load that faults on purpose, and the protocol by which a
//! child process reports that a misuse of the library panicked cleanly: shared by the
//! test suites of every layer.
//!
//! Everything here is plain code: it works on a plain thread, on a uthread and in vcore
//! context, and never panics itself where a panic could not unwind (vcore context).

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;

use crate::Outcome;

// ---------------------------------------------------------------------------------------
// Stack alignment.

/// Returns the stack pointer as it is at the first instruction of a function: the
/// caller's `rsp` minus the 8 bytes of the return address its `call` pushed. The SysV
/// ABI (§3.2.2) requires `(rsp + 8) % 16 == 0` there.
// SAFETY (naked): two instructions that touch no memory and follow the C ABI: the
// result goes in rax, and `ret` returns with the stack as the call left it.
#[unsafe(naked)]
extern "C" fn rsp_at_entry() -> usize {
    core::arch::naked_asm!(
        "mov rax, rsp", // rsp points at our return address
        "ret",
    )
}

/// A 16-byte local: the compiler places it assuming the ABI alignment at function entry
/// and does not realign the stack for it, so a misaligned entry shows up in its address.
#[repr(C, align(16))]
struct Aligned([f32; 4]);

/// Whether code running here has the stack the SysV ABI promises: checks `rsp` at a
/// callee's entry and the address of a 16-byte-aligned local, and only if both are
/// right does 16-byte aligned SSE stores into that local (`movaps` directly, and through
/// `_mm_store_ps`), which would fault on a misaligned address. Never panics, so it may run
/// in vcore context; callers count the failures.
#[inline(never)]
pub fn stack_is_abi_aligned() -> bool {
    use core::arch::x86_64::{_mm_set1_ps, _mm_store_ps};
    if !(rsp_at_entry() + 8).is_multiple_of(16) {
        return false;
    }
    let mut slot = Aligned(black_box([0.0; 4]));
    let p = black_box(&mut slot as *mut Aligned);
    if !(p as usize).is_multiple_of(16) {
        return false;
    }
    // SAFETY: `p` points at our own 16-byte local and was checked to be 16-byte aligned,
    // which is all `movaps` needs; SSE is part of the x86-64 baseline.
    unsafe {
        core::arch::asm!(
            "movaps xmmword ptr [{p}], {v}",
            p = in(reg) p,
            v = in(xmm_reg) _mm_set1_ps(1.5),
            options(nostack, preserves_flags),
        );
    }
    let first = black_box(&slot).0;
    // SAFETY: as above: aligned, writable, 16 bytes.
    unsafe { _mm_store_ps(p.cast::<f32>(), _mm_set1_ps(2.5)) };
    first == [1.5; 4] && black_box(&slot).0 == [2.5; 4]
}

/// Calls `f` the way a broken context switch would: with the stack 8 bytes off the ABI
/// alignment at `f`'s entry. For checking that [`stack_is_abi_aligned`] can fail.
// SAFETY (naked): saves and restores rbx and rsp, calls `f` (a C-ABI function of no
// arguments) and returns its result in rax; only `f` sees the odd alignment.
#[unsafe(naked)]
pub extern "C" fn call_with_misaligned_stack(f: extern "C" fn() -> bool) -> bool {
    core::arch::naked_asm!(
        "push rbx",   // at our entry rsp % 16 == 8; now 0
        "sub rsp, 8", // now 8: wrong for a call
        "call rdi",   // f sees (rsp + 8) % 16 == 8
        "add rsp, 8",
        "pop rbx",
        "ret",
    )
}

/// Calls `f` with the stack aligned as the ABI requires: the control for
/// [`call_with_misaligned_stack`].
// SAFETY (naked): saves and restores rbx, calls `f` on an ABI-aligned stack and returns
// its result in rax.
#[unsafe(naked)]
pub extern "C" fn call_with_aligned_stack(f: extern "C" fn() -> bool) -> bool {
    core::arch::naked_asm!(
        "push rbx", // at our entry rsp % 16 == 8; now 0, right for a call
        "call rdi", "pop rbx", "ret",
    )
}

// ---------------------------------------------------------------------------------------
// Faulting on purpose.

/// Loads from `addr`: the load is the function's first instruction, so a fault's PC is
/// the function's address.
// SAFETY (naked): C ABI, one load into rax and a return.
#[unsafe(naked)]
pub extern "C" fn load_from(addr: usize) -> u64 {
    core::arch::naked_asm!("mov rax, qword ptr [rdi]", "ret")
}

// ---------------------------------------------------------------------------------------
// Misuse: a panic that unwinds back to its caller, reported by exit status.

/// Exit status of a child whose misuse call panicked and unwound back to the test, as a
/// Rust panic should. (Chosen to collide with nothing: libtest uses 101 for failures.)
pub const UNWOUND: i32 = 86;

/// In a child: runs `f`, which must panic. A panic that unwinds back here exits the child
/// with [`UNWOUND`]; if `f` returns, the child exits with 0 and the parent's
/// [`assert_unwound_with`] fails.
///
/// The exit happens here, not in libtest: the runtime may have moved the test's thread
/// onto a vcore, where libtest's own failure path (joining that thread) cannot finish.
pub fn expect_unwinding_panic(f: impl FnOnce()) -> ! {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let code = if r.is_err() { UNWOUND } else { 0 };
    if code == 0 {
        eprintln!("expect_unwinding_panic: the call returned instead of panicking");
    }
    std::process::exit(code)
}

fn status_line(out: &Outcome) -> String {
    match out.status {
        None => "killed by the watchdog (hang)".to_string(),
        Some(s) => format!("{s}"),
    }
}

/// Asserts the child did not hang and did not die of a memory fault.
pub fn assert_no_crash_or_hang(out: &Outcome) {
    let st = out.status.unwrap_or_else(|| panic!("child hung; watchdog killed it\n{}", out.output()));
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE] {
        assert_ne!(st.signal(), Some(sig), "child crashed ({})\n{}", status_line(out), out.output());
    }
}

/// Asserts the child's misuse call panicked with a message containing `msg` and the
/// panic unwound back to the test (see [`expect_unwinding_panic`]).
pub fn assert_unwound_with(out: &Outcome, msg: &str) {
    assert_no_crash_or_hang(out);
    assert!(!out.finished, "the child ran past the misuse\n{}", out.output());
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(UNWOUND),
        "expected a panic unwinding back to the test, got {}\n{}",
        status_line(out),
        out.output()
    );
    assert!(out.stderr.contains(msg), "stderr lacks {msg:?}\n{}", out.output());
}

/// Asserts the child aborted (SIGABRT: a panic where nothing can unwind, such as vcore
/// context) after printing a message containing `msg`.
pub fn assert_aborted_with(out: &Outcome, msg: &str) {
    assert_no_crash_or_hang(out);
    assert!(!out.finished, "the child ran past the misuse\n{}", out.output());
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(libc::SIGABRT),
        "expected an abort, got {}\n{}",
        status_line(out),
        out.output()
    );
    assert!(out.stderr.contains(msg), "stderr lacks {msg:?}\n{}", out.output());
}
