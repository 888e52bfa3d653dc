//! x86-64 (System V ABI, Linux): context switch, FS/GS base, raw system calls.
//!
//! # A suspended context
//!
//! A [`Context`] is one word: the stack pointer of the suspended code. Everything else
//! the ABI asks a callee to preserve is pushed on that stack by the switch:
//!
//! ```text
//!             higher addresses
//!   +------------------------------+
//!   | caller's frame ...           |
//!   +------------------------------+
//!   | return address (rip)         |  ctx.rsp + 56   where the context resumes
//!   | rbp                          |  ctx.rsp + 48
//!   | rbx                          |  ctx.rsp + 40
//!   | r12                          |  ctx.rsp + 32
//!   | r13                          |  ctx.rsp + 24
//!   | r14                          |  ctx.rsp + 16
//!   | r15                          |  ctx.rsp + 8
//!   | x87 CW (u16) | MXCSR (u32)   |  ctx.rsp + 0    (MXCSR low, CW at +4)
//!   +------------------------------+ <- ctx.rsp
//!             lower addresses
//! ```
//!
//! The control bits of MXCSR and the x87 control word are callee-saved (SysV ABI
//! §3.2.1), so every switch saves and reloads them. No signal mask is saved and no system call is made: that is why this switch costs
//! about 10 ns where `swapcontext` costs about 260 ns.
//!
//! # A fresh context
//!
//! [`init_context`] lays out the same frame on a new stack so that the first switch to
//! it "returns" into [`start_trampoline`], which calls `entry(arg)`:
//!
//! ```text
//!   +------------------------------+ <- stack top (16-aligned)
//!   | 0  (end of frame chain)      |  top - 8
//!   | 0                            |  top - 16   rsp after the return jump = top - 16 (16-aligned)
//!   | start_trampoline             |  top - 24
//!   | rbp = 0                      |
//!   | rbx = 0                      |
//!   | r12 = arg                    |
//!   | r13 = entry                  |
//!   | r14 = 0                      |
//!   | r15 = 0                      |
//!   | CW 0x037F | MXCSR 0x1F80     |  top - 80 = ctx.rsp
//!   +------------------------------+
//! ```
//!
//! The trampoline runs with `rsp % 16 == 0` and `call`s the entry, so the entry sees
//! `(rsp + 8) % 16 == 0`, exactly what the ABI requires at a function's first
//! instruction. The parlib C code this descends from was 8 bytes off here.
//!
//! # Entering a fresh stack
//!
//! [`save_and_call`] and [`call_on_stack`] move to the top of another stack (a vcore's
//! stack, for vcore context) and `call` a function there:
//!
//! ```text
//!   +------------------------------+ <- stack top (16-aligned); rsp = top at the `call`
//!   | return address (ud2 below)   |  top - 8: the callee sees (rsp + 8) % 16 == 0
//!   | callee's frame ...           |
//! ```
//!
//! They also load the ABI's default MXCSR and x87 control word, so vcore context never
//! inherits a uthread's rounding mode.

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use x86::cpuid::CpuId;

/// A suspended execution context: the stack pointer at which its registers were saved.
///
/// An empty context (`rsp == 0`) has nothing to resume.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    rsp: usize,
}

impl Context {
    /// A context with nothing saved in it.
    pub const EMPTY: Context = Context { rsp: 0 };

    /// Whether nothing has been saved in this context.
    pub fn is_empty(&self) -> bool {
        self.rsp == 0
    }

    /// The saved stack pointer (for diagnostics and fault reports).
    pub fn stack_pointer(&self) -> usize {
        self.rsp
    }
}

/// Size of the frame [`init_context`] builds below the stack top.
const INIT_FRAME: usize = 80;
/// MXCSR at process start: all exceptions masked, round to nearest (SysV ABI §3.2.1).
const MXCSR_DEFAULT: u64 = 0x1F80;
/// x87 control word at process start: extended precision, all exceptions masked.
const FPUCW_DEFAULT: u64 = 0x037F;

// Call frame information (CFI). Every function below carries `.cfi_*` directives, so
// debuggers, profilers and `_Unwind_Backtrace` can walk through them (rustc emits none
// for naked functions; without them an unwinder stops at the first one it meets):
// * `switch` and `load` describe the saved frame of the module docs as they push and
//   pop it: a backtrace taken at any instruction reaches the right caller;
// * `call_trampoline` (a call pushed onto a suspended context) names the suspended frame
//   as its caller, so a function run that way shows the suspended thread's own callers;
// * `interrupt_trampoline` describes the interrupted context register by register and is
//   marked `.cfi_signal_frame`, so a backtrace passes through it into the interrupted
//   function (looked up at its exact PC, not the PC minus one of a return address);
// * a fresh stack has no caller: `start_trampoline`, `save_and_call` and `call_on_stack`
//   mark the return address undefined there, which ends a backtrace cleanly. The
//   context `save_and_call` saves is deliberately not named as a caller: another vcore
//   may resume it (a yielded or interrupted uthread) while this one still runs, so a
//   walk into it could read a stack in use elsewhere.

/// CFI saying that the frame of the module docs' layout starts at `$reg`: the caller's
/// `rsp` (the CFA) is `$reg + 64`, the return address is just below it (the CIE's rule)
/// and the callee-saved registers are at the offsets `save_frame!` pushed them to.
macro_rules! cfi_saved_frame_at {
    ($reg:literal) => {
        concat!(
            ".cfi_def_cfa ",
            $reg,
            ", 64\n",
            ".cfi_offset rbp, -16\n",
            ".cfi_offset rbx, -24\n",
            ".cfi_offset r12, -32\n",
            ".cfi_offset r13, -40\n",
            ".cfi_offset r14, -48\n",
            ".cfi_offset r15, -56\n",
        )
    };
}

/// CFI for code that runs at the top of a fresh stack: no caller, so unwinders stop here
/// (`.cfi_undefined rip`, as glibc's thread start does).
macro_rules! cfi_outermost {
    () => {
        concat!(
            ".cfi_def_cfa rsp, 0\n",
            ".cfi_undefined rip\n",
            ".cfi_restore rbp\n",
            ".cfi_restore rbx\n",
            ".cfi_restore r12\n",
            ".cfi_restore r13\n",
            ".cfi_restore r14\n",
            ".cfi_restore r15\n",
        )
    };
}

/// `push $reg`, with CFI: the CFA is 8 bytes further from `rsp`, and the caller's `$reg`
/// is saved at `CFA + $off`.
macro_rules! push_cfi {
    ($reg:literal, $off:literal) => {
        concat!("push ", $reg, "\n.cfi_adjust_cfa_offset 8\n.cfi_offset ", $reg, ", ", $off, "\n")
    };
}

/// `pop $reg`, with CFI: the CFA is 8 bytes closer to `rsp`, and `$reg` holds the
/// caller's value again.
macro_rules! pop_cfi {
    ($reg:literal) => {
        concat!("pop ", $reg, "\n.cfi_adjust_cfa_offset -8\n.cfi_restore ", $reg, "\n")
    };
}

/// Pushes the callee-saved registers, MXCSR and the x87 control word, in the layout of
/// the module docs, from a function's entry (CFA = `rsp + 8`). `rsp` ends up 56 bytes
/// lower, at the frame's base.
macro_rules! save_frame {
    () => {
        concat!(
            push_cfi!("rbp", "-16"),
            push_cfi!("rbx", "-24"),
            push_cfi!("r12", "-32"),
            push_cfi!("r13", "-40"),
            push_cfi!("r14", "-48"),
            push_cfi!("r15", "-56"),
            "sub rsp, 8\n",
            ".cfi_adjust_cfa_offset 8\n",
            "stmxcsr [rsp]\n",    // MXCSR -> [rsp]
            "fnstcw [rsp + 4]\n"  // x87 CW -> [rsp + 4]
        )
    };
}

/// Pops the frame `save_frame!` pushed (with `rsp` already pointing at it) and returns
/// into the saved context. Measured on the target machine: `ldmxcsr` of an unchanged
/// value costs about 1 ns, so MXCSR is loaded unconditionally; `fldcw` costs about 6 ns
/// and `fnstcw` about 2, so the x87 control word is compared first (it almost never
/// differs). The scratch word below `rsp` is in the red zone, which the kernel never
/// clobbers.
macro_rules! restore_frame {
    () => {
        concat!(
            cfi_saved_frame_at!("rsp"),
            "ldmxcsr [rsp]\n",
            "fnstcw [rsp - 8]\n",
            "mov ax, [rsp + 4]\n",
            "cmp ax, [rsp - 8]\n",
            "je 2f\n",
            "fldcw [rsp + 4]\n",
            "2:\n",
            "add rsp, 8\n",
            ".cfi_adjust_cfa_offset -8\n",
            pop_cfi!("r15"),
            pop_cfi!("r14"),
            pop_cfi!("r13"),
            pop_cfi!("r12"),
            pop_cfi!("rbx"),
            pop_cfi!("rbp"),
            // Not `ret`: the return stack buffer never holds the resumed context's
            // address (it was pushed on another stack), so `ret` always mispredicts. An
            // indirect jump is predicted from its last target, which for a thread
            // yielding in a loop is the same every time. rcx is free at a return.
            "pop rcx\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_register rip, rcx\n",
            "jmp rcx\n"
        )
    };
}

/// Loads the ABI's default MXCSR and x87 control word, the latter only if it differs
/// (see `restore_frame!`). Uses the 8 bytes below `rsp` (the new stack's top) as scratch.
macro_rules! default_fp_env {
    () => {
        concat!(
            "ldmxcsr [rip + {fpenv}]\n",
            "fnstcw [rsp - 8]\n",
            "cmp word ptr [rsp - 8], 0x037F\n",
            "je 3f\n",
            "fldcw [rip + {fpenv} + 4]\n",
            "3:\n",
        )
    };
}

/// The ABI's default MXCSR (low half) and x87 control word (bytes 4-5), for
/// `default_fp_env!`.
#[used]
static DEFAULT_FP_ENV: u64 = MXCSR_DEFAULT | (FPUCW_DEFAULT << 32);

/// Saves the running context into `*save` and resumes `*load`. Returns when something
/// resumes `*save`.
///
/// # Safety
/// `save` must be valid for a write; `*load` must be a context saved by this module (or
/// built by [`init_context`]) whose stack is still alive and which nothing else is
/// running or about to resume.
#[unsafe(naked)]
pub unsafe extern "C" fn switch(save: *mut Context, load: *const Context) {
    naked_asm!(
        ".cfi_startproc",
        save_frame!(),
        "mov [rdi], rsp", // save->rsp = rsp
        "mov rsp, [rsi]", // rsp = load->rsp: the same layout, so the CFI still holds
        restore_frame!(),
        ".cfi_endproc",
    )
}

/// Resumes `*load`, abandoning the running context.
///
/// # Safety
/// As for [`switch`]'s `load`. Nothing on the abandoned stack is dropped.
#[unsafe(naked)]
pub unsafe extern "C" fn load(load: *const Context) -> ! {
    naked_asm!(
        ".cfi_startproc",
        "mov rsp, [rdi]", // rsp = load->rsp
        restore_frame!(),
        ".cfi_endproc",
    )
}

/// Saves the running context into `*save`, then calls `f(a0, a1)` at `stack_top` with the
/// default floating-point environment. `f` must not return. This call returns when
/// something resumes `*save`.
///
/// # Safety
/// `stack_top` must be the 16-byte-aligned top of a stack that nothing is using; `save`
/// must be valid for a write and stay valid until it is resumed.
#[unsafe(naked)]
pub unsafe extern "C" fn save_and_call(
    save: *mut Context,
    stack_top: usize,
    f: unsafe extern "C" fn(usize, usize) -> !,
    a0: usize,
    a1: usize,
) {
    naked_asm!(
        ".cfi_startproc",
        save_frame!(),
        "mov [rdi], rsp",  // save->rsp = rsp
        "mov rsp, rsi",    // onto the new stack, at its (16-aligned) top
        cfi_outermost!(),
        default_fp_env!(),
        "xor ebp, ebp",    // end of the frame-pointer chain
        "mov rdi, rcx",    // first argument: a0
        "mov rsi, r8",     // second argument: a1
        "call rdx",        // f(a0, a1); rsp % 16 == 0 before the call
        "ud2",             // f returned: impossible by its type
        ".cfi_endproc",
        fpenv = sym DEFAULT_FP_ENV,
    )
}

/// Calls `f(a0, a1)` at `stack_top`, abandoning the running context.
///
/// # Safety
/// `stack_top` must be the 16-byte-aligned top of a stack that nothing else is using. It
/// may be the stack currently running (this is how vcore context is re-entered), in
/// which case everything on it is abandoned without being dropped.
#[unsafe(naked)]
pub unsafe extern "C" fn call_on_stack(
    stack_top: usize,
    f: unsafe extern "C" fn(usize, usize) -> !,
    a0: usize,
    a1: usize,
) -> ! {
    naked_asm!(
        ".cfi_startproc",
        "mov rsp, rdi", // onto the new stack, at its top
        cfi_outermost!(),
        default_fp_env!(),
        "xor ebp, ebp",
        "mov rax, rsi", // f
        "mov rdi, rdx", // first argument: a0
        "mov rsi, rcx", // second argument: a1
        "call rax",
        "ud2",
        ".cfi_endproc",
        fpenv = sym DEFAULT_FP_ENV,
    )
}

/// First code a fresh context runs: `r12` holds the argument and `r13` the entry (see
/// the module docs). `rsp % 16 == 0` here, so `call` leaves the entry ABI-aligned.
#[unsafe(naked)]
unsafe extern "C" fn start_trampoline() -> ! {
    naked_asm!(
        ".cfi_startproc",
        cfi_outermost!(),
        "mov rdi, r12", // entry's argument
        "call r13",     // entry(arg) never returns
        "ud2",
        ".cfi_endproc",
    )
}

/// Builds a context that, when first resumed, calls `entry(arg)` at `stack_top`.
///
/// # Safety
/// `stack_top` must be the 16-byte-aligned top of a writable stack of at least
/// `INIT_FRAME` bytes that nothing else uses.
pub unsafe fn init_context(stack_top: usize, entry: unsafe extern "C" fn(usize) -> !, arg: usize) -> Context {
    assert!(stack_top.is_multiple_of(16), "init_context: stack top {stack_top:#x} is not 16-byte aligned");
    let frame = (stack_top - INIT_FRAME) as *mut u64;
    let slots: [u64; 10] = [
        MXCSR_DEFAULT | (FPUCW_DEFAULT << 32), // +0: MXCSR, x87 CW
        0,                                     // +8: r15
        0,                                     // +16: r14
        entry as usize as u64,                 // +24: r13
        arg as u64,                            // +32: r12
        0,                                     // +40: rbx
        0,                                     // +48: rbp
        start_trampoline as *const () as u64,  // +56: return address
        0,                                     // +64: rsp after `ret` points here
        0,                                     // +72: end of the frame chain
    ];
    // SAFETY: the caller guarantees `INIT_FRAME` writable bytes below `stack_top`, which
    // is 16-aligned, so `frame` is aligned for u64 and the 10 slots fit exactly.
    unsafe { frame.copy_from_nonoverlapping(slots.as_ptr(), slots.len()) };
    Context { rsp: frame as usize }
}

/// Pushes a call onto a suspended context: when `*ctx` is next resumed, it first calls
/// `f(arg)` on its own stack, then continues where it was suspended. Schedulers use it
/// to run something *as* a switched-out thread (a thread-directed signal's handler).
///
/// ```text
///   +------------------------------+
///   | the suspended frame          |  old ctx.rsp (module docs' layout)
///   +------------------------------+
///   | (0 or 8 bytes of padding)    |
///   | call_trampoline              |  new ctx.rsp + 56
///   | rbp = 0                      |
///   | rbx = old ctx.rsp            |  callee-saved: survives f
///   | r12 = arg                    |
///   | r13 = f                      |
///   | r14 = 0, r15 = 0             |
///   | default MXCSR / x87 CW       |  new ctx.rsp (16-aligned)
///   +------------------------------+
/// ```
///
/// Resuming pops the new frame into `call_trampoline` with `rsp` 16-aligned, which
/// calls `f(arg)`, then restores the old frame exactly as a resume would have.
///
/// # Safety
/// `*ctx` must be a suspended context saved by this module (or built by
/// [`init_context`]) that nothing runs or resumes meanwhile, on a stack with room below
/// it for 80 bytes plus whatever `f` uses.
pub unsafe fn push_call(ctx: &mut Context, f: unsafe extern "C" fn(usize), arg: usize) {
    assert!(!ctx.is_empty(), "push_call: the context is empty");
    let frame = ((ctx.rsp - 64) & !15) as *mut u64;
    let slots: [u64; 8] = [
        MXCSR_DEFAULT | (FPUCW_DEFAULT << 32), // +0: MXCSR, x87 CW
        0,                                     // +8: r15
        0,                                     // +16: r14
        f as usize as u64,                     // +24: r13
        arg as u64,                            // +32: r12
        ctx.rsp as u64,                        // +40: rbx
        0,                                     // +48: rbp
        call_trampoline as *const () as u64,   // +56: return address
    ];
    // SAFETY: the caller guarantees free stack below the suspended frame; `frame` is
    // 16-aligned and its 64 bytes end at or below the old `rsp`.
    unsafe { frame.copy_from_nonoverlapping(slots.as_ptr(), slots.len()) };
    ctx.rsp = frame as usize;
}

/// Where a frame built by [`push_call`] resumes: `r13(r12)`, then the suspended frame
/// whose `rsp` is in `rbx`. `rsp % 16 == 0` here, so the `call` is ABI-aligned.
#[unsafe(naked)]
unsafe extern "C" fn call_trampoline() -> ! {
    naked_asm!(
        ".cfi_startproc",
        cfi_saved_frame_at!("rbx"), // the caller is the suspended frame, at rbx
        "mov rdi, r12",             // f's argument
        "call r13",                 // f(arg)
        "mov rsp, rbx",             // back to the suspended frame
        restore_frame!(),
        ".cfi_endproc",
    )
}

// ---------------------------------------------------------------------------------------
// FS and GS base.
//
// Writes use the `x86` crate's `wrfsbase` / `wrgsbase`. Its `asm!` declares no options,
// so to the compiler it may touch memory and flags; ours had to be a memory clobber
// anyway (the TLS changes under the compiler's feet), and the release build emits the
// same instructions either way: every function of the rlibs and of the uthread and
// upthread test binaries that contains a base instruction compared equal under objdump.
// Reads stay hand-written. The crate's `rdgsbase` and `fs_deref!` / `gs_deref!` lack
// `nomem`/`readonly`, `nostack` and `preserves_flags`, so each read becomes a compiler
// barrier: with them, `vcore::this` and its many inlined callers compiled differently
// (different spills and inlining in 14 rlib functions for `rdgsbase`, 144 for the
// `%fs:0` / `%gs:0` loads). The crate has no `%gs`-relative loads of other widths, nor
// the single-instruction `inc` / `dec` that `gs_inc_u32` / `gs_dec_u32` rely on.

const MODE_UNKNOWN: u8 = 0;
const MODE_FSGSBASE: u8 = 1;
const MODE_SYSCALL: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNKNOWN);

/// `AT_HWCAP2` bit the kernel sets when user space may use the FSGSBASE instructions
/// (Linux 5.9+, `arch/x86/include/uapi/asm/hwcap2.h`).
const HWCAP2_FSGSBASE: u64 = 1 << 1;
/// Environment variable that forces the `arch_prctl` path, so both paths get tested.
pub const FORCE_ARCH_PRCTL_ENV: &str = "PARLIB_FORCE_ARCH_PRCTL";

const ARCH_SET_GS: usize = 0x1001;
const ARCH_SET_FS: usize = 0x1002;
const ARCH_GET_GS: usize = 0x1004;

#[cold]
fn detect_mode() -> u8 {
    let forced = std::env::var_os(FORCE_ARCH_PRCTL_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    let mode = if !forced && hwcap2 & HWCAP2_FSGSBASE != 0 { MODE_FSGSBASE } else { MODE_SYSCALL };
    MODE.store(mode, Ordering::Relaxed);
    mode
}

#[inline(always)]
fn mode() -> u8 {
    match MODE.load(Ordering::Relaxed) {
        MODE_UNKNOWN => detect_mode(),
        m => m,
    }
}

/// Detects once whether `wrfsbase`/`rdfsbase` may be used. Called by `vcore::lib_init`;
/// every accessor below would otherwise detect on first use.
pub fn init() {
    mode();
    detect_xsave();
}

/// Whether FS/GS base accesses use the FSGSBASE instructions (else `arch_prctl`).
pub fn uses_fsgsbase() -> bool {
    mode() == MODE_FSGSBASE
}

/// The FS base (TLS pointer) of the running task.
///
/// The x86-64 TLS ABI stores the thread pointer at `%fs:0` (the TCB points to itself),
/// so one ordinary load reads the base. It is used even where `rdfsbase` is allowed:
/// under nested virtualization `rdfsbase` costs several times a load (perf shows it
/// dominating `vcore::this`, which every uthread query runs).
#[inline(always)]
pub fn fs_base() -> usize {
    let base: usize;
    // SAFETY: every task has a TLS block installed by glibc or by us (parlib only ever
    // loads glibc TCBs into FS), whose first word is its own address.
    unsafe { asm!("mov {}, qword ptr fs:[0]", out(reg) base, options(nostack, preserves_flags, readonly)) };
    base
}

/// Sets the FS base (TLS pointer) of the running task.
///
/// # Safety
/// `base` must be a valid glibc TLS block (thread control block) that no other running
/// task is using as its TLS at the same time, and nothing may hold references into the
/// previous TLS across this call.
#[inline(always)]
pub unsafe fn set_fs_base(base: usize) {
    if mode() == MODE_FSGSBASE {
        // SAFETY: FSGSBASE is enabled (the kernel said so in AT_HWCAP2); the caller
        // vouches for `base`.
        unsafe { x86::bits64::segmentation::wrfsbase(base as u64) };
    } else {
        // SAFETY: arch_prctl(ARCH_SET_FS) only changes this task's FS base.
        let r = unsafe { syscall6(libc::SYS_arch_prctl as usize, ARCH_SET_FS, base, 0, 0, 0, 0) };
        debug_assert_eq!(r, 0, "arch_prctl(ARCH_SET_FS) failed");
    }
}

/// The GS base of the running task (0 unless parlib set it: only vcore tasks have one).
#[inline(always)]
pub fn gs_base() -> usize {
    let mut base: usize = 0;
    if mode() == MODE_FSGSBASE {
        // SAFETY: FSGSBASE is enabled; rdgsbase only reads a register.
        unsafe { asm!("rdgsbase {}", out(reg) base, options(nomem, nostack, preserves_flags)) };
    } else {
        // SAFETY: ARCH_GET_GS writes one word to the address we pass, a local.
        unsafe {
            syscall6(libc::SYS_arch_prctl as usize, ARCH_GET_GS, &mut base as *mut usize as usize, 0, 0, 0, 0)
        };
    }
    base
}

/// The GS base if reading it is one instruction (`rdgsbase` allowed and already
/// detected), else `None`: for fast paths that fall back to [`gs_base`].
#[inline(always)]
pub fn gs_base_if_cheap() -> Option<usize> {
    if MODE.load(Ordering::Relaxed) != MODE_FSGSBASE {
        return None;
    }
    let base: usize;
    // SAFETY: FSGSBASE is enabled; rdgsbase only reads a register.
    unsafe { asm!("rdgsbase {}", out(reg) base, options(nomem, nostack, preserves_flags)) };
    Some(base)
}

/// Sets the GS base of the running task.
///
/// # Safety
/// Nothing else in the process may use GS on this task (glibc does not on x86-64).
pub unsafe fn set_gs_base(base: usize) {
    if mode() == MODE_FSGSBASE {
        // SAFETY: FSGSBASE is enabled; the caller owns GS on this task.
        unsafe { x86::bits64::segmentation::wrgsbase(base as u64) };
    } else {
        // SAFETY: arch_prctl(ARCH_SET_GS) only changes this task's GS base.
        let r = unsafe { syscall6(libc::SYS_arch_prctl as usize, ARCH_SET_GS, base, 0, 0, 0, 0) };
        assert_eq!(r, 0, "arch_prctl(ARCH_SET_GS) failed");
    }
}

/// Reads the word at `%gs:0`: on a vcore task, the address of its own per-vcore record.
///
/// # Safety
/// The running task must have a GS base set by parlib (it must be a vcore task).
#[inline(always)]
pub unsafe fn gs_self() -> usize {
    let p: usize;
    // SAFETY: the caller guarantees GS points at a per-vcore record whose first word is
    // its own address. The asm is not `pure`, so the compiler re-reads it every time and
    // never carries a value across a context switch.
    unsafe { asm!("mov {}, qword ptr gs:[0]", out(reg) p, options(nostack, preserves_flags, readonly)) };
    p
}

/// A raw Linux system call. Returns the kernel's result (`-errno` on failure) and never
/// writes `errno`, which belongs to whatever uthread happens to be running.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction clobbers only rax, rcx and r11 (declared); the
    // caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

// ---------------------------------------------------------------------------------------
// Interrupting a running context (DESIGN §5).
//
// The notification signal handler rewrites the interrupted `ucontext` so that, on
// `sigreturn`, the interrupted code *calls* `interrupt_trampoline`: it moves `rsp` past
// the 128-byte red zone, pushes the interrupted `rip`, and sets `rip` to the trampoline.
// The trampoline saves everything on the interrupted stack and enters vcore context:
//
// ```text
//   +------------------------------+ <- interrupted rsp (R)
//   | red zone, untouched (128 B)  |
//   +------------------------------+ <- R - 128
//   | interrupted rip              |  pushed by the handler: the "return address"
//   | rflags                       |  pushfq
//   | rax rcx rdx rbx rbp rsi rdi  |
//   | r8 .. r15                    |  15 general registers in all
//   +------------------------------+ <- rbp (kept across the call below)
//   | (padding to 64 bytes)        |
//   | XSAVE area: x87, SSE, AVX,   |  size from CPUID leaf 0xD; XSAVEC when available
//   | AVX-512 ... (all enabled)    |
//   +------------------------------+ <- rsp, 64-aligned
//   | return address into the      |  `call {enter}`: `enter` saves a normal Context
//   | trampoline, callee frames    |  here (see `switch`), so resuming an interrupted
//   +------------------------------+  context is an ordinary `load`
// ```
//
// Resumed, the trampoline restores the extended state, the registers and the flags,
// then `ret 128` pops the interrupted `rip` and steps back over the red zone, leaving
// every register, the flags and `rsp` exactly as they were.

/// Bytes the handler skips below the interrupted `rsp` (SysV ABI §3.2.2 red zone).
pub const RED_ZONE: usize = 128;

const XSAVE_FXSAVE: u8 = 0;
const XSAVE_XSAVE: u8 = 1;
const XSAVE_XSAVEC: u8 = 2;
static XSAVE_KIND: AtomicU8 = AtomicU8::new(XSAVE_FXSAVE);
/// Size of the extended-state area, plus 64 for alignment; read by the trampoline.
#[used]
static XSAVE_AREA: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(512 + 64);

/// Sizes the extended-state save area from CPUID (the `x86` crate decodes it): leaf 1
/// ECX bit 27 (OSXSAVE) says the OS enabled XSAVE; leaf 0xD sub-leaf 0 EBX is the area
/// size for the features enabled in XCR0; sub-leaf 1 EAX bit 1 says XSAVEC (compacted,
/// skips unused state) exists.
fn detect_xsave() {
    let cpuid = CpuId::new();
    if !cpuid.get_feature_info().is_some_and(|f| f.has_oxsave()) {
        return; // FXSAVE: 512 bytes, the default above
    }
    // Leaf 0xD exists whenever XSAVE does; `None` would mean a CPU that lies.
    let Some(state) = cpuid.get_extended_state_info() else { return };
    XSAVE_AREA.store(state.xsave_area_size_enabled_features() as usize + 64, Ordering::Relaxed);
    XSAVE_KIND.store(if state.has_xsavec() { XSAVE_XSAVEC } else { XSAVE_XSAVE }, Ordering::Relaxed);
}

/// Bytes an interruption needs on the interrupted stack: red zone, registers, extended
/// state and the frames of the call into vcore context.
pub fn interrupt_frame_size() -> usize {
    RED_ZONE + 17 * 8 + XSAVE_AREA.load(Ordering::Relaxed) + 256
}

/// Which instruction saves extended state: "fxsave", "xsave" or "xsavec".
pub fn xsave_kind() -> &'static str {
    match XSAVE_KIND.load(Ordering::Relaxed) {
        XSAVE_XSAVEC => "xsavec",
        XSAVE_XSAVE => "xsave",
        _ => "fxsave",
    }
}

/// The body of a trampoline that saves the full interrupted state (the diagram above),
/// runs `$call` with `rsp` 64-aligned, and on its return restores everything and returns
/// to the interrupted instruction. Two trampolines share it: one enters vcore context,
/// the other runs the preemption target a layer above registered.
macro_rules! full_save_trampoline {
    ($call:literal, $($target:tt)*) => {
            naked_asm!(
            ".cfi_startproc",
            ".cfi_signal_frame",                 // the "caller" was interrupted, not calling
            ".cfi_def_cfa rsp, 136",             // CFA = the interrupted rsp (R), 8 + 128 above
            ".cfi_offset rip, -136",             // the interrupted rip, pushed by the handler
            "pushfq",
            ".cfi_adjust_cfa_offset 8",
            ".cfi_offset 49, -144",              // DWARF register 49 is rflags (SysV ABI §3.6.2)
            push_cfi!("rax", "-152"), push_cfi!("rcx", "-160"), push_cfi!("rdx", "-168"),
            push_cfi!("rbx", "-176"), push_cfi!("rbp", "-184"), push_cfi!("rsi", "-192"),
            push_cfi!("rdi", "-200"), push_cfi!("r8", "-208"), push_cfi!("r9", "-216"),
            push_cfi!("r10", "-224"), push_cfi!("r11", "-232"), push_cfi!("r12", "-240"),
            push_cfi!("r13", "-248"), push_cfi!("r14", "-256"), push_cfi!("r15", "-264"),
            "cld",                               // the ABI wants DF clear at calls; popfq restores it
            "mov rbp, rsp",                      // base of the register area, callee-saved
            ".cfi_def_cfa rbp, 264",             // rsp moves below; rbp stays put until the end
            "sub rsp, qword ptr [rip + {area}]", // room for the extended state ...
            "and rsp, -64",                      // ... 64-aligned, as XSAVE requires
            "xor eax, eax",                      // zero the 64-byte XSAVE header: XRSTOR of the
            "mov [rsp + 512], rax",              // standard form faults on stale reserved bytes
            "mov [rsp + 520], rax",
            "mov [rsp + 528], rax",
            "mov [rsp + 536], rax",
            "mov [rsp + 544], rax",
            "mov [rsp + 552], rax",
            "mov [rsp + 560], rax",
            "mov [rsp + 568], rax",
            "mov eax, -1",                       // save every enabled component
            "mov edx, -1",
            "movzx ecx, byte ptr [rip + {kind}]",
            "cmp ecx, 2",
            "je 2f",
            "cmp ecx, 1",
            "je 1f",
            "fxsave64 [rsp]",
            "jmp 3f",
            "1:",
            "xsave64 [rsp]",
            "jmp 3f",
            "2:",
            "xsavec64 [rsp]",
            "3:",
            $call,                               // the target; returns when resumed
            "mov eax, -1",
            "mov edx, -1",
            "movzx ecx, byte ptr [rip + {kind}]",
            "test ecx, ecx",
            "jz 4f",
            "xrstor64 [rsp]",                    // reads the standard or compacted form
            "jmp 5f",
            "4:",
            "fxrstor64 [rsp]",
            "5:",
            "mov rsp, rbp",
            ".cfi_def_cfa rsp, 264",
            pop_cfi!("r15"), pop_cfi!("r14"), pop_cfi!("r13"), pop_cfi!("r12"), pop_cfi!("r11"),
            pop_cfi!("r10"), pop_cfi!("r9"), pop_cfi!("r8"), pop_cfi!("rdi"), pop_cfi!("rsi"),
            pop_cfi!("rbp"), pop_cfi!("rbx"), pop_cfi!("rdx"), pop_cfi!("rcx"), pop_cfi!("rax"),
            "popfq",
            ".cfi_adjust_cfa_offset -8",
            ".cfi_restore 49",
            "ret 128",                           // to the interrupted rip, rsp back over the red zone
            ".cfi_endproc",
            area = sym XSAVE_AREA,
            kind = sym XSAVE_KIND,
            $($target)*
        )
    };
}

/// Where an interrupted context continues after `sigreturn` (see the diagram above).
/// It calls `enter_from_interrupt`, which must save a [`Context`] and switch away; it
/// returns here when that context is loaded.
///
/// # Safety
/// Never called directly: only a signal handler of a vcore task may redirect an
/// interrupted context here (with [`redirect_to`]).
#[unsafe(naked)]
pub unsafe extern "C" fn interrupt_trampoline() -> ! {
    full_save_trampoline!("call {enter}", enter = sym crate::notif::enter_from_interrupt)
}

/// Where a signal handler of a plain thread sends an interrupted context that a layer
/// above wants to preempt (parlib-timed's calls). It calls the function given to
/// [`set_preempt_target`] with every register saved on the interrupted stack; that
/// function may switch away (saving a [`Context`]) and returns when that context is
/// loaded; then the interrupted code continues exactly where it was.
///
/// # Safety
/// Never called directly: only a signal handler may redirect an interrupted context here
/// (with [`redirect_to`]), on a stack with [`interrupt_frame_size`] bytes free.
#[unsafe(naked)]
pub unsafe extern "C" fn preempt_trampoline() -> ! {
    full_save_trampoline!("call qword ptr [rip + {target}]", target = sym PREEMPT_TARGET)
}

/// What [`preempt_trampoline`] calls; a no-op until [`set_preempt_target`].
static PREEMPT_TARGET: AtomicPtr<()> = AtomicPtr::new(no_preempt_target as *mut ());

extern "C" fn no_preempt_target() {}

/// Sets the function [`preempt_trampoline`] calls. One per process: the layer that
/// preempts plain threads (parlib-timed) sets it once, before its first redirect.
pub fn set_preempt_target(f: unsafe extern "C" fn()) {
    PREEMPT_TARGET.store(f as *mut (), Ordering::Release);
}

/// Rewrites an interrupted signal context so that `sigreturn` *calls* `trampoline`:
/// steps below the red zone, pushes the interrupted `rip` there as the return address and
/// sets `rip` to the trampoline (the diagram above).
///
/// # Safety
/// `uc` is the context the kernel passed to the running handler; the interrupted stack
/// has [`interrupt_frame_size`] bytes free below its `rsp` (a fault there is that
/// stack's overflow).
pub unsafe fn redirect_to(uc: &mut libc::ucontext_t, trampoline: unsafe extern "C" fn() -> !) {
    let g = &mut uc.uc_mcontext.gregs;
    let new_sp = g[libc::REG_RSP as usize] as usize - RED_ZONE - 8;
    // SAFETY: below the red zone of the interrupted stack lies free stack (the caller's
    // contract).
    unsafe { *(new_sp as *mut i64) = g[libc::REG_RIP as usize] };
    g[libc::REG_RSP as usize] = new_sp as i64;
    g[libc::REG_RIP as usize] = trampoline as usize as i64;
}

/// Loads the word at `%gs:OFF` in one instruction: the field of whichever vcore the code
/// runs on at that instant.
///
/// # Safety
/// The running task must be a vcore and `OFF` the offset of a `usize` in its record.
#[inline(always)]
pub unsafe fn gs_load_usize<const OFF: usize>() -> usize {
    let v: usize;
    // SAFETY: the caller guarantees %gs:OFF is a usize of this vcore's record.
    unsafe {
        asm!("mov {}, qword ptr gs:[{off}]", out(reg) v, off = const OFF, options(nostack, readonly, preserves_flags))
    };
    v
}

/// Loads the `u32` at `%gs:OFF` in one instruction (see [`gs_load_usize`]).
///
/// # Safety
/// The running task must be a vcore and `OFF` the offset of a `u32` in its record.
#[inline(always)]
pub unsafe fn gs_load_u32<const OFF: usize>() -> u32 {
    let v: u32;
    // SAFETY: the caller guarantees %gs:OFF is a u32 of this vcore's record.
    unsafe {
        asm!("mov {:e}, dword ptr gs:[{off}]", out(reg) v, off = const OFF, options(nostack, readonly, preserves_flags))
    };
    v
}

/// Loads the byte at `%gs:OFF` in one instruction (see [`gs_load_usize`]).
///
/// # Safety
/// The running task must be a vcore and `OFF` the offset of a `u8`/`bool` in its record.
#[inline(always)]
pub unsafe fn gs_load_u8<const OFF: usize>() -> u8 {
    let v: u8;
    // SAFETY: the caller guarantees %gs:OFF is a byte of this vcore's record.
    unsafe {
        asm!("mov {}, byte ptr gs:[{off}]", out(reg_byte) v, off = const OFF, options(nostack, readonly, preserves_flags))
    };
    v
}

/// Adds 1 to the `u32` at `%gs:OFF`: one instruction, so a preemption cannot split the
/// read from the write and land the update on another vcore's record.
///
/// # Safety
/// The running task must be a vcore and `OFF` the offset of a `u32` in its record.
#[inline(always)]
pub unsafe fn gs_inc_u32<const OFF: usize>() {
    // SAFETY: the caller guarantees %gs:OFF is a u32 of this vcore's record.
    unsafe { asm!("inc dword ptr gs:[{off}]", off = const OFF, options(nostack)) };
}

/// Subtracts 1 from the `u32` at `%gs:OFF` in one instruction (see [`gs_inc_u32`]);
/// returns the new value.
///
/// # Safety
/// As for [`gs_inc_u32`].
#[inline(always)]
pub unsafe fn gs_dec_u32<const OFF: usize>() -> u32 {
    let v: u32;
    // The read after the decrement may run on another vcore if we were preempted in
    // between, which is why callers only compare it with 0 and u32::MAX: once the value
    // was 0, no preemption can happen before the read.
    // SAFETY: the caller guarantees %gs:OFF is a u32 of this vcore's record.
    unsafe {
        asm!(
            "dec dword ptr gs:[{off}]",
            "mov {v:e}, dword ptr gs:[{off}]",
            off = const OFF, v = out(reg) v, options(nostack),
        )
    };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsave_detection_matches_the_raw_cpuid_leaves() {
        detect_xsave();
        let leaf1 = core::arch::x86_64::__cpuid(1);
        if leaf1.ecx & (1 << 27) == 0 {
            assert_eq!((xsave_kind(), XSAVE_AREA.load(Ordering::Relaxed)), ("fxsave", 512 + 64));
            return;
        }
        // Leaf 0xD exists when OSXSAVE is set.
        let (d0, d1) = (core::arch::x86_64::__cpuid_count(0xD, 0), core::arch::x86_64::__cpuid_count(0xD, 1));
        assert_eq!(XSAVE_AREA.load(Ordering::Relaxed), d0.ebx as usize + 64);
        assert_eq!(xsave_kind(), if d1.eax & (1 << 1) != 0 { "xsavec" } else { "xsave" });
    }
}
