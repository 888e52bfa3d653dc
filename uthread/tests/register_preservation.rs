//! An interrupted uthread gets back every register it had (DESIGN §3, §5): the
//! interrupt trampoline saves the general registers, the flags and the whole extended
//! state (x87, SSE, AVX, AVX-512) on the uthread's stack, and restores them when the
//! uthread is resumed, even after other uthreads (with other values in every register)
//! ran on the vcore in between, and on another vcore.
//!
//! The spinning code is assembly in this test binary (so every instruction of it is a
//! safe point): it loads a distinct pattern into every general register but `rsp`, into
//! the arithmetic flags, into every vector register and (with AVX-512) every opmask
//! register; then, until told to stop, it idles through a long run of `pause`s that
//! change nothing, stores every register to its frame, and compares them with the
//! patterns. Nearly all of its time is spent idling, so nearly every interruption lands
//! there, with all the patterns live.

use parlib_testsched as common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, TlsMode, Uthread};
use parlib_vcore as vcore;

const TIMEOUT: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_micros(100);
/// Interruptions inside the assembly each spinner must see before it stops.
const INTERRUPTS_PER_SPINNER: usize = 1000;

// ---------------------------------------------------------------------------------------
// The register file, as the assembly lays it out.

/// Every register the spinner checks, in the order the assembly stores them. 280 words.
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Regs {
    /// rax rbx rcx rdx rsi rdi rbp r8 r9 r10 r11 r12 r13 r14 r15 (offsets 0..120).
    gpr: [u64; 15],
    /// rflags (offset 120); only the arithmetic flags and DF are compared.
    flags: u64,
    /// k0..k7 (offset 128).
    k: [u64; 8],
    /// zmm0..zmm31, 64 bytes each (offset 192); the SSE and AVX variants use the low 16
    /// or 32 bytes of the first 16.
    vec: [[u64; 8]; 32],
}
const WORDS: usize = 280;
const GPR_NAMES: [&str; 15] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// CF, PF, AF, ZF, SF, DF, OF: the flags user code sets and the compare looks at.
const FLAGS_CHECKED: u64 = 0xCD5;
/// Always-set bits of rflags: IF and the reserved bit 1.
const FLAGS_FIXED: u64 = 0x202;

/// A spinner's state, shared with its assembly loop through a pointer.
#[repr(C)]
struct Spin {
    /// The patterns (offset 0).
    expected: Regs,
    /// The registers as stored in the iteration that found a mismatch (offset 2240).
    seen: Regs,
    /// Nonzero: leave the loop at the next check (offset 4480).
    stop: AtomicU64,
    /// Loop iterations completed (offset 4488).
    iterations: u64,
    /// 0, or 1 + the iteration that found a mismatch (offset 4496).
    failed: u64,
}
const _: () = {
    assert!(core::mem::size_of::<Regs>() == WORDS * 8);
    assert!(core::mem::offset_of!(Spin, seen) == 2240);
    assert!(core::mem::offset_of!(Spin, stop) == 4480);
    assert!(core::mem::offset_of!(Spin, iterations) == 4488);
    assert!(core::mem::offset_of!(Spin, failed) == 4496);
};

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Spin {
    /// Distinct patterns for spinner `n`: no two registers, and no two spinners, share
    /// a value; flags alternate between two complementary sets.
    fn new(n: u64) -> Box<Spin> {
        let mut r = Regs { gpr: [0; 15], flags: 0, k: [0; 8], vec: [[0; 8]; 32] };
        let mut seed = n << 32;
        let mut next = || {
            seed += 1;
            splitmix(seed)
        };
        for g in &mut r.gpr {
            *g = next();
        }
        // CF AF SF OF set, PF ZF clear; or the other way round.
        let arith = if n.is_multiple_of(2) { 0x891 } else { 0x044 };
        r.flags = FLAGS_FIXED | arith;
        for k in &mut r.k {
            *k = next();
        }
        for v in r.vec.iter_mut().flatten() {
            *v = next();
        }
        Box::new(Spin { expected: r, seen: r, stop: AtomicU64::new(0), iterations: 0, failed: 0 })
    }

    /// Which registers differ between `expected` and `seen`, for the failure message.
    fn diff(&self, kind: Kind) -> String {
        let (e, s) = (&self.expected, &self.seen);
        let mut out = Vec::new();
        for (i, name) in GPR_NAMES.iter().enumerate() {
            if e.gpr[i] != s.gpr[i] {
                out.push(format!("{name}: expected {:#018x}, found {:#018x}", e.gpr[i], s.gpr[i]));
            }
        }
        if (e.flags ^ s.flags) & FLAGS_CHECKED != 0 {
            out.push(format!("rflags: expected {:#x}, found {:#x}", e.flags, s.flags));
        }
        for i in 0..8 {
            if e.k[i] != s.k[i] {
                out.push(format!("k{i}: expected {:#018x}, found {:#018x}", e.k[i], s.k[i]));
            }
        }
        let (name, regs, words) = match kind {
            Kind::Sse => ("xmm", 16, 2),
            Kind::Avx => ("ymm", 16, 4),
            Kind::Avx512 => ("zmm", 32, 8),
        };
        for i in 0..regs {
            if e.vec[i][..words] != s.vec[i][..words] {
                out.push(format!(
                    "{name}{i}: expected {:x?}, found {:x?}",
                    &e.vec[i][..words],
                    &s.vec[i][..words]
                ));
            }
        }
        out.join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// The spinning loops: one per register set. Frame: [rsp] = the Spin pointer, [rsp + 64]
// = the register dump (a Regs). Scratch registers in the compare: rax, rcx, rsi, rdi and
// the flags, all reloaded from the patterns before idling again.

/// Bytes below the callee-saved pushes: pointer slot, dump, and 8 to keep 16-alignment.
macro_rules! frame {
    () => {
        "2312"
    };
}

/// Saves the callee-saved registers, makes the frame, keeps the Spin pointer (rdi) at
/// [rsp] and copies the patterns into the dump area (so words a variant does not store
/// compare equal).
macro_rules! prologue {
    () => {
        concat!(
            "push rbx\n push rbp\n push r12\n push r13\n push r14\n push r15\n",
            "sub rsp, ",
            frame!(),
            "\n",
            "mov [rsp], rdi\n",
            "xor ecx, ecx\n",
            "7: mov rax, [rdi + rcx*8]\n mov [rsp + 64 + rcx*8], rax\n inc ecx\n cmp ecx, 280\n jb 7b\n",
        )
    };
}

/// Loads the general registers (rdi last: it holds the Spin pointer) and the flags.
macro_rules! load_gprs_and_flags {
    () => {
        concat!(
            "push qword ptr [rdi + 120]\n",
            "mov rax, [rdi + 0]\n mov rbx, [rdi + 8]\n mov rcx, [rdi + 16]\n mov rdx, [rdi + 24]\n",
            "mov rsi, [rdi + 32]\n mov rbp, [rdi + 48]\n mov r8, [rdi + 56]\n mov r9, [rdi + 64]\n",
            "mov r10, [rdi + 72]\n mov r11, [rdi + 80]\n mov r12, [rdi + 88]\n mov r13, [rdi + 96]\n",
            "mov r14, [rdi + 104]\n mov r15, [rdi + 112]\n mov rdi, [rdi + 40]\n",
            "popfq\n",
        )
    };
}

/// The idle run: 256 `pause`s, which change no register and no flag.
macro_rules! idle {
    () => {
        ".rept 256\n pause\n .endr\n"
    };
}

/// Stores the general registers and the flags into the dump (`pop` to memory changes
/// no flag; its address is computed after `rsp` moves back).
macro_rules! store_gprs_and_flags {
    () => {
        concat!(
            "mov [rsp + 64 + 0], rax\n mov [rsp + 64 + 8], rbx\n mov [rsp + 64 + 16], rcx\n",
            "mov [rsp + 64 + 24], rdx\n mov [rsp + 64 + 32], rsi\n mov [rsp + 64 + 40], rdi\n",
            "mov [rsp + 64 + 48], rbp\n mov [rsp + 64 + 56], r8\n mov [rsp + 64 + 64], r9\n",
            "mov [rsp + 64 + 72], r10\n mov [rsp + 64 + 80], r11\n mov [rsp + 64 + 88], r12\n",
            "mov [rsp + 64 + 96], r13\n mov [rsp + 64 + 104], r14\n mov [rsp + 64 + 112], r15\n",
            "pushfq\n pop qword ptr [rsp + 64 + 120]\n",
        )
    };
}

/// Compares the dump with the patterns; on a mismatch copies the dump into `seen` and
/// records the iteration. Then counts the iteration, leaves if told to stop, else
/// reloads the scratch registers and the flags and idles again (label 1).
macro_rules! check_and_loop {
    () => {
        concat!(
            "mov rdi, [rsp]\n",
            "lea rsi, [rsp + 64]\n",
            "mov rax, [rsi + 120]\n xor rax, [rdi + 120]\n test rax, 0xCD5\n jnz 8f\n",
            "xor ecx, ecx\n",
            "3: cmp ecx, 15\n je 4f\n",
            "mov rax, [rsi + rcx*8]\n cmp rax, [rdi + rcx*8]\n jne 8f\n",
            "4: inc ecx\n cmp ecx, 280\n jb 3b\n",
            "inc qword ptr [rdi + 4488]\n",
            "cmp qword ptr [rdi + 4480], 0\n jne 9f\n",
            "push qword ptr [rdi + 120]\n",
            "mov rax, [rdi + 0]\n mov rcx, [rdi + 16]\n mov rsi, [rdi + 32]\n mov rdi, [rdi + 40]\n",
            "popfq\n",
            "jmp 1b\n",
            // A mismatch: keep what was seen.
            "8: xor ecx, ecx\n",
            "5: mov rax, [rsi + rcx*8]\n mov [rdi + 2240 + rcx*8], rax\n inc ecx\n cmp ecx, 280\n jb 5b\n",
            "mov rax, [rdi + 4488]\n inc rax\n mov [rdi + 4496], rax\n",
            "9:\n",
            "cld\n",
            "add rsp, ",
            frame!(),
            "\n",
            "pop r15\n pop r14\n pop r13\n pop r12\n pop rbp\n pop rbx\n",
        )
    };
}

/// Spins with patterns in the general registers, the flags and xmm0-15.
// SAFETY (naked): follows the C ABI: restores every callee-saved register and rsp, and
// leaves MXCSR, the x87 control word and DF as it found them; it clobbers only
// caller-saved registers. It reads and writes only `*spin` and its own frame.
#[unsafe(naked)]
unsafe extern "C" fn spin_sse(spin: *mut Spin) {
    core::arch::naked_asm!(
        prologue!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu xmm\\i, [rdi + 192 + 64*\\i]\n .endr",
        load_gprs_and_flags!(),
        "1:",
        idle!(),
        store_gprs_and_flags!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu [rsp + 64 + 192 + 64*\\i], xmm\\i\n .endr",
        check_and_loop!(),
        "ret",
    )
}

/// Spins with patterns in the general registers, the flags and ymm0-15.
// SAFETY (naked): as for `spin_sse`; `vzeroupper` before returning.
#[unsafe(naked)]
unsafe extern "C" fn spin_avx(spin: *mut Spin) {
    core::arch::naked_asm!(
        prologue!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu ymm\\i, [rdi + 192 + 64*\\i]\n .endr",
        load_gprs_and_flags!(),
        "1:",
        idle!(),
        store_gprs_and_flags!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu [rsp + 64 + 192 + 64*\\i], ymm\\i\n .endr",
        check_and_loop!(),
        "vzeroupper",
        "ret",
    )
}

/// Spins with patterns in the general registers, the flags, zmm0-31 and k0-7.
// SAFETY (naked): as for `spin_sse`; the opmask registers are caller-saved too.
#[unsafe(naked)]
unsafe extern "C" fn spin_avx512(spin: *mut Spin) {
    core::arch::naked_asm!(
        prologue!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n vmovdqu64 zmm\\i, [rdi + 192 + 64*\\i]\n .endr",
        ".irp i, 0,1,2,3,4,5,6,7\n kmovq k\\i, [rdi + 128 + 8*\\i]\n .endr",
        load_gprs_and_flags!(),
        "1:",
        idle!(),
        store_gprs_and_flags!(),
        ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n vmovdqu64 [rsp + 64 + 192 + 64*\\i], zmm\\i\n .endr",
        ".irp i, 0,1,2,3,4,5,6,7\n kmovq [rsp + 64 + 128 + 8*\\i], k\\i\n .endr",
        check_and_loop!(),
        "vzeroupper",
        "ret",
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sse,
    Avx,
    Avx512,
}

fn widest_kind() -> Kind {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        Kind::Avx512
    } else if is_x86_feature_detected!("avx") {
        Kind::Avx
    } else {
        Kind::Sse
    }
}

fn run_spin(kind: Kind, spin: *mut Spin) {
    // SAFETY: `spin` is a live Spin that only this uthread's loop and the tick handler
    // (through `stop`, an atomic) touch; the CPU supports the variant chosen.
    unsafe {
        match kind {
            Kind::Sse => spin_sse(spin),
            Kind::Avx => spin_avx(spin),
            Kind::Avx512 => spin_avx512(spin),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scenario.

const MAX_SPINNERS: usize = 4;

/// One spinner as the tick handler sees it.
struct Slot {
    uth: AtomicPtr<Uthread>,
    spin: AtomicPtr<Spin>,
    /// Set by the spinner around its assembly loop.
    in_asm: AtomicBool,
    /// Interruptions that found it inside the loop.
    interrupts: AtomicUsize,
    /// Vcores on which it was interrupted inside the loop.
    vcores: AtomicU64,
}

static SLOTS: [Slot; MAX_SPINNERS] = [const {
    Slot {
        uth: AtomicPtr::new(core::ptr::null_mut()),
        spin: AtomicPtr::new(core::ptr::null_mut()),
        in_asm: AtomicBool::new(false),
        interrupts: AtomicUsize::new(0),
        vcores: AtomicU64::new(0),
    }
}; MAX_SPINNERS];

/// The tick handler: counts interruptions that landed in a spinner's loop, tells a
/// spinner to stop once it has enough, and preempts whatever was interrupted, so that
/// another spinner (with other values in every register) runs before it resumes.
fn on_tick(_: &EventMsg, _: EventType) {
    let Some(u) = uthread::take_interrupted() else { return };
    for s in &SLOTS {
        if s.uth.load(Ordering::Acquire) == u.as_ptr().as_ptr() && s.in_asm.load(Ordering::Acquire) {
            let n = s.interrupts.fetch_add(1, Ordering::Relaxed) + 1;
            s.vcores.fetch_or(1 << vcore::id(), Ordering::Relaxed);
            if n >= INTERRUPTS_PER_SPINNER {
                // SAFETY: the Spin lives until its uthread has exited, and `stop` is atomic.
                unsafe { (*s.spin.load(Ordering::Acquire)).stop.store(1, Ordering::Relaxed) };
            }
        }
    }
    uthread::paused(u);
}

/// Runs `spinners` spinning uthreads of `kind` under a ticker to `tick_vcores`; returns
/// their final states (and the slots say how they were interrupted).
fn interrupt_spinners(kind: Kind, spinners: usize, tick_vcores: &[usize]) -> Vec<Box<Spin>> {
    assert!(spinners <= MAX_SPINNERS);
    events::register_handler(EV_USER_IPI, on_tick).unwrap();
    let ticker = common::Ticker::start(TICK, tick_vcores);
    let mut states: Vec<Box<Spin>> = (0..spinners).map(|n| Spin::new(n as u64 + 1)).collect();
    for (n, st) in states.iter_mut().enumerate() {
        let p: *mut Spin = &mut **st;
        SLOTS[n].spin.store(p, Ordering::Release);
        let addr = p as usize;
        let uth: NonNull<Uthread> = common::spawn(TlsMode::Backed, move || {
            let slot = &SLOTS[n];
            // Wait until main has published our record.
            while slot.uth.load(Ordering::Acquire).is_null() {
                common::yield_now();
            }
            slot.in_asm.store(true, Ordering::Release);
            run_spin(kind, addr as *mut Spin);
            slot.in_asm.store(false, Ordering::Release);
        });
        SLOTS[n].uth.store(uth.as_ptr(), Ordering::Release);
    }
    common::wait_all();
    ticker.stop();
    states
}

fn check(kind: Kind, states: &[Box<Spin>]) {
    for (n, st) in states.iter().enumerate() {
        let slot = &SLOTS[n];
        assert_eq!(
            st.failed,
            0,
            "spinner {n} ({kind:?}): registers changed in iteration {}:\n{}",
            st.failed - 1,
            st.diff(kind)
        );
        assert!(
            slot.interrupts.load(Ordering::Relaxed) >= INTERRUPTS_PER_SPINNER,
            "spinner {n} was interrupted inside its loop only {} times",
            slot.interrupts.load(Ordering::Relaxed)
        );
        assert!(st.iterations > 0);
        println!(
            "spinner {n} ({kind:?}): {} iterations, {} interruptions inside the loop, on vcores {:#b}",
            st.iterations,
            slot.interrupts.load(Ordering::Relaxed),
            slot.vcores.load(Ordering::Relaxed)
        );
    }
}

/// The control: the loop does notice registers that change under it. A plain thread (no
/// runtime) runs it while another sends it SIGUSR2, whose handler flips one bit each of
/// r12, xmm5 and CF in the interrupted context, but only when the thread was
/// interrupted at a `pause` of the idle run; the kernel restores the altered context.
#[test]
fn the_check_detects_registers_changed_behind_its_back() {
    static FLIPPED: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn flip(_: libc::c_int, _: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
        if FLIPPED.load(Ordering::Relaxed) > 0 {
            return;
        }
        // SAFETY: the kernel passes this thread's interrupted context; its fpregs pointer
        // addresses the saved FXSAVE area in the signal frame.
        unsafe {
            let uc = &mut *(uctx as *mut libc::ucontext_t);
            let g = &mut uc.uc_mcontext.gregs;
            let pc = g[libc::REG_RIP as usize] as usize;
            let f = [
                spin_sse as *const () as usize,
                spin_avx as *const () as usize,
                spin_avx512 as *const () as usize,
            ];
            if !f.iter().any(|&f| (f..f + 0x4000).contains(&pc))
                || (pc as *const [u8; 2]).read() != [0xF3, 0x90]
            {
                return; // not at a `pause` of the idle run
            }
            g[libc::REG_R12 as usize] ^= 1 << 7;
            g[libc::REG_EFL as usize] ^= 1; // CF
            (*uc.uc_mcontext.fpregs)._xmm[5].element[0] ^= 1 << 3;
        }
        FLIPPED.fetch_add(1, Ordering::Relaxed);
    }
    isolated!(TIMEOUT, {
        // SAFETY: installs a handler for SIGUSR2, which nothing else in this child uses.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = flip as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
        }
        for kind in [Kind::Sse, Kind::Avx, Kind::Avx512] {
            if kind == Kind::Avx && widest_kind() == Kind::Sse
                || kind == Kind::Avx512 && widest_kind() != Kind::Avx512
            {
                continue;
            }
            FLIPPED.store(0, Ordering::Relaxed);
            let mut st = Spin::new(9);
            let addr = &mut *st as *mut Spin as usize;
            let tid = std::sync::Arc::new(AtomicU64::new(0));
            let t2 = tid.clone();
            let runner = std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                t2.store(unsafe { libc::gettid() } as u64, Ordering::Release);
                run_spin(kind, addr as *mut Spin);
            });
            // Signal until the loop has noticed (it then returns), giving up after a while.
            for _ in 0..20_000 {
                if runner.is_finished() {
                    break;
                }
                let t = tid.load(Ordering::Acquire);
                if t != 0 {
                    // SAFETY: tgkill to a live thread of this process.
                    unsafe {
                        libc::syscall(libc::SYS_tgkill, libc::getpid(), t as libc::pid_t, libc::SIGUSR2)
                    };
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            // SAFETY: the runner reads `stop` atomically.
            unsafe { (*(addr as *const Spin)).stop.store(1, Ordering::Relaxed) };
            runner.join().unwrap();
            assert_eq!(
                FLIPPED.load(Ordering::Relaxed),
                1,
                "{kind:?}: the handler never found the loop idling"
            );
            assert_ne!(st.failed, 0, "{kind:?}: the loop did not notice the changed registers");
            let diff = st.diff(kind);
            for reg in ["r12", "rflags", "mm5:"] {
                assert!(diff.contains(reg), "{kind:?}: {reg} not reported as changed:\n{diff}");
            }
            assert_eq!(diff.lines().count(), 3, "{kind:?}: only the three flipped registers differ:\n{diff}");
        }
    });
}

#[test]
fn registers_survive_thousands_of_interruptions_on_one_vcore() {
    isolated!(TIMEOUT, env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        common::init();
        let kind = widest_kind();
        println!("checking {kind:?} registers; extended state saved with {}", vcore::arch::xsave_kind());
        let states = interrupt_spinners(kind, 2, &[0]);
        check(kind, &states);
    });
}

#[test]
fn sse_registers_survive_interruptions() {
    // The narrower variants too: their loops leave the upper halves of the vector
    // registers in whatever state the last context left them, another path through
    // XSAVE's init optimisation.
    isolated!(TIMEOUT, env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        common::init();
        let states = interrupt_spinners(Kind::Sse, 2, &[0]);
        check(Kind::Sse, &states);
    });
}

#[test]
fn avx_registers_survive_interruptions() {
    isolated!(TIMEOUT, env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        common::init();
        if widest_kind() == Kind::Sse {
            println!("no AVX on this machine; nothing to check");
            return;
        }
        let states = interrupt_spinners(Kind::Avx, 2, &[0]);
        check(Kind::Avx, &states);
    });
}

#[test]
fn registers_survive_interruptions_that_move_uthreads_between_vcores() {
    isolated!(TIMEOUT, {
        common::init();
        let kind = widest_kind();
        let n = vcore::max_vcores();
        // More spinners than vcores, all unpinned: a preempted spinner resumes on
        // whichever vcore takes it from the global queue.
        let spinners = (n + 1).min(MAX_SPINNERS);
        let states = interrupt_spinners(kind, spinners, &common::all_vcores());
        check(kind, &states);
        if n > 1 {
            let moved = SLOTS[..spinners].iter().any(|s| s.vcores.load(Ordering::Relaxed).count_ones() > 1);
            assert!(moved, "no spinner was interrupted on more than one vcore");
        }
    });
}

// ---------------------------------------------------------------------------------------
// The direction flag.

/// DF (bit 10 of rflags).
const DF: u64 = 1 << 10;

fn rflags_now() -> u64 {
    let f: u64;
    // SAFETY: pushes and pops one word on our own stack.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) f, options(preserves_flags)) };
    f
}

/// Sets DF, idles until `*stop` is nonzero, stores rflags (as they are after every
/// interruption) into `*flags`, clears DF and returns.
// SAFETY (naked): C ABI; touches only rax and memory at `stop` and `flags`, and returns
// with DF clear as the ABI requires.
#[unsafe(naked)]
unsafe extern "C" fn spin_with_df_set(stop: *const AtomicU64, flags: *mut u64) {
    core::arch::naked_asm!(
        "std",
        "1:",
        ".rept 64\n pause\n .endr",
        "cmp qword ptr [rdi], 0",
        "je 1b",
        "pushfq",
        "pop rax",
        "mov [rsi], rax",
        "cld",
        "ret",
    )
}

#[test]
fn vcore_context_runs_with_the_direction_flag_clear_when_the_interrupted_uthread_had_it_set() {
    // SysV ABI §3.2.1: DF must be clear on function entry and return. A uthread may set
    // it in its own code (a backwards `rep movs`), and may be interrupted there; the
    // trampoline must not call vcore context (the entry, event handlers, the scheduler,
    // whose memcpy may use `rep movsb`) with DF set. DF is restored when it resumes.
    static STOP: AtomicU64 = AtomicU64::new(0);
    static IN_ASM: AtomicBool = AtomicBool::new(false);
    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
    static DF_IN_VCORE_CONTEXT: AtomicUsize = AtomicUsize::new(0);
    static FLAGS_AFTER: AtomicU64 = AtomicU64::new(0);
    fn on_tick(_: &EventMsg, _: EventType) {
        if rflags_now() & DF != 0 {
            DF_IN_VCORE_CONTEXT.fetch_add(1, Ordering::Relaxed);
        }
        let Some(u) = uthread::take_interrupted() else { return };
        let spinner = Some(u.as_ptr()) != uthread::main_uthread();
        if spinner && IN_ASM.load(Ordering::Acquire) && INTERRUPTS.fetch_add(1, Ordering::Relaxed) + 1 >= 200
        {
            STOP.store(1, Ordering::Relaxed);
        }
        uthread::paused(u);
    }
    parlib_testkit::isolated!(TIMEOUT, env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        common::init();
        events::register_handler(EV_USER_IPI, on_tick).unwrap();
        let ticker = common::Ticker::start(TICK, &[0]);
        common::spawn(TlsMode::Backed, || {
            let mut flags = 0u64;
            IN_ASM.store(true, Ordering::Release);
            // SAFETY: both pointers are valid for the call; the function restores DF.
            unsafe { spin_with_df_set(&STOP, &mut flags) };
            IN_ASM.store(false, Ordering::Release);
            FLAGS_AFTER.store(flags, Ordering::Relaxed);
        });
        common::wait_all();
        ticker.stop();
        assert!(INTERRUPTS.load(Ordering::Relaxed) >= 200);
        assert_ne!(FLAGS_AFTER.load(Ordering::Relaxed) & DF, 0, "the uthread got its DF back");
        assert_eq!(
            DF_IN_VCORE_CONTEXT.load(Ordering::Relaxed),
            0,
            "event handlers ran in vcore context with DF set, inherited from the interrupted uthread"
        );
    });
}
