//! Faults (DESIGN §5): SIGSEGV, SIGBUS, SIGFPE and SIGILL raised by a uthread reach the
//! scheduler's `thread_refl_fault` with the signal, its code, the faulting address and
//! instruction; a fault on a uthread's stack guard page is that uthread's stack
//! overflow; the default policy names the uthread and the fault, then aborts. The vcore
//! that ran the faulting uthread goes on scheduling the others.

use parlib_testsched as common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::probe::load_from;
use parlib_testkit::{child_outcome, isolated, Outcome};
use parlib_uthread::{self as uthread, Fault, State, TlsMode, Uthread};
use parlib_vcore::{self as vcore, spin::SpinLock};

const TIMEOUT: Duration = Duration::from_secs(30);

// `si_code` values from `asm-generic/siginfo.h`.
const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;
const BUS_ADRERR: i32 = 2;
const FPE_INTDIV: i32 = 1;
const ILL_ILLOPN: i32 = 2;

// ---------------------------------------------------------------------------------------
// Faulting instructions, each the first instruction of its function, so the faulting PC
// is the function's address.

/// Stores to `addr`.
// SAFETY (naked): C ABI, one store and a return.
#[unsafe(naked)]
extern "C" fn store_to(addr: usize) {
    core::arch::naked_asm!("mov qword ptr [rdi], rsi", "ret")
}

/// Divides rdx:rax by `divisor` (#DE when it is 0).
// SAFETY (naked): C ABI; `div` changes only rax and rdx, both caller-saved.
#[unsafe(naked)]
extern "C" fn divide_by(_unused: u64, divisor: u64) -> u64 {
    core::arch::naked_asm!("div rsi", "ret")
}

/// An undefined instruction.
// SAFETY (naked): never returns normally: `ud2` raises #UD.
#[unsafe(naked)]
extern "C" fn undefined_instruction() {
    core::arch::naked_asm!("ud2", "ret")
}

// ---------------------------------------------------------------------------------------
// The fault hook: records what the scheduler was told.

#[derive(Clone, Copy, Debug)]
struct Seen {
    id: u64,
    state: State,
    fault: Fault,
}

static SEEN: SpinLock<Vec<Seen>> = SpinLock::new(Vec::new());
static FAULTS: AtomicUsize = AtomicUsize::new(0);

fn record(u: &Uthread, fault: &Fault) {
    SEEN.lock().push(Seen { id: u.id(), state: u.state(), fault: *fault });
    FAULTS.fetch_add(1, Ordering::Release);
}

/// The id of the running uthread.
fn my_id() -> u64 {
    uthread::current_id().expect("on a uthread")
}

/// Runs `body` (which must fault) on a new uthread and returns what the hook saw, checking
/// it is the fault of that uthread.
fn fault_in_uthread(tls: TlsMode, body: fn()) -> Seen {
    static ID: AtomicU64 = AtomicU64::new(0);
    static RAN_PAST_THE_FAULT: AtomicBool = AtomicBool::new(false);
    let before = FAULTS.load(Ordering::Acquire);
    common::spawn(tls, move || {
        ID.store(my_id(), Ordering::Release);
        body();
        RAN_PAST_THE_FAULT.store(true, Ordering::Release);
    });
    common::wait_until(|| FAULTS.load(Ordering::Acquire) > before);
    assert!(!RAN_PAST_THE_FAULT.load(Ordering::Acquire), "a faulting uthread continued after its fault");
    let seen = *SEEN.lock().last().unwrap();
    assert_eq!(seen.id, ID.load(Ordering::Acquire), "the fault was reported for another uthread");
    assert_eq!(seen.state, State::Done, "a faulted uthread is Done when the scheduler hears of it");
    seen
}

#[test]
fn a_null_dereference_reaches_thread_refl_fault_with_sigsegv_and_the_address() {
    isolated!(TIMEOUT, {
        common::on_fault(record);
        common::init();
        let seen = fault_in_uthread(TlsMode::Backed, || {
            load_from(std::hint::black_box(0));
        });
        let f = seen.fault;
        assert_eq!(f.signal, libc::SIGSEGV);
        assert_eq!(f.code, SEGV_MAPERR);
        assert_eq!(f.addr, 0);
        assert_eq!(f.pc, load_from as *const () as usize);
        assert!(!f.stack_overflow);
        // Every vcore, the one that faulted included, still runs uthreads; main too.
        static RAN_ON: AtomicU64 = AtomicU64::new(0);
        for v in 0..vcore::max_vcores() {
            common::spawn_on(v, TlsMode::Backed, || {
                RAN_ON.fetch_or(1 << vcore::id(), Ordering::Relaxed);
            });
        }
        common::wait_all();
        assert_eq!(RAN_ON.load(Ordering::Relaxed), common::all_vcores_mask());
        assert_eq!(FAULTS.load(Ordering::Relaxed), 1);
    });
}

/// A fault to provoke, and what the scheduler must be told about it.
struct Case {
    body: fn(),
    signal: i32,
    code: i32,
    addr: usize,
    pc: usize,
}

fn drop_u64(x: u64) {
    std::hint::black_box(x);
}

#[test]
fn each_fault_signal_is_reflected_with_its_code_address_and_instruction() {
    static READ_ONLY: AtomicUsize = AtomicUsize::new(0);
    static BEYOND_EOF: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        common::on_fault(record);
        common::init();
        // SAFETY: plain mappings for the test, checked; never unmapped (the process ends).
        unsafe {
            let ro = libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(ro, libc::MAP_FAILED);
            READ_ONLY.store(ro as usize, Ordering::Relaxed);
            // A shared mapping of an empty file: touching it is past the end: SIGBUS.
            let fd = libc::memfd_create(c"parlib-faults".as_ptr(), 0);
            assert!(fd >= 0);
            let p = libc::mmap(core::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            assert_ne!(p, libc::MAP_FAILED);
            BEYOND_EOF.store(p as usize, Ordering::Relaxed);
        }
        let ro = READ_ONLY.load(Ordering::Relaxed);
        let eof = BEYOND_EOF.load(Ordering::Relaxed);
        let load_pc = load_from as *const () as usize;
        let div_pc = divide_by as *const () as usize;
        let ud_pc = undefined_instruction as *const () as usize;
        let cases = [
            Case {
                body: || drop_u64(load_from(std::hint::black_box(0x10))),
                signal: libc::SIGSEGV,
                code: SEGV_MAPERR,
                addr: 0x10,
                pc: load_pc,
            },
            Case {
                body: || store_to(READ_ONLY.load(Ordering::Relaxed)),
                signal: libc::SIGSEGV,
                code: SEGV_ACCERR,
                addr: ro,
                pc: store_to as *const () as usize,
            },
            Case {
                body: || drop_u64(load_from(BEYOND_EOF.load(Ordering::Relaxed))),
                signal: libc::SIGBUS,
                code: BUS_ADRERR,
                addr: eof,
                pc: load_pc,
            },
            Case {
                body: || drop_u64(divide_by(1, std::hint::black_box(0))),
                signal: libc::SIGFPE,
                code: FPE_INTDIV,
                addr: div_pc,
                pc: div_pc,
            },
            Case {
                body: || undefined_instruction(),
                signal: libc::SIGILL,
                code: ILL_ILLOPN,
                addr: ud_pc,
                pc: ud_pc,
            },
        ];
        // Each with both kinds of uthread TLS.
        for tls in [TlsMode::Backed, TlsMode::None] {
            for (i, c) in cases.iter().enumerate() {
                let f = fault_in_uthread(tls, c.body).fault;
                let what = format!("case {i} ({tls:?})");
                assert_eq!((f.signal, f.code), (c.signal, c.code), "{what}: {f:?}");
                assert_eq!(f.addr, c.addr, "{what}: {f:?}");
                assert_eq!(f.pc, c.pc, "{what}: {f:?}");
                assert!(!f.stack_overflow, "{what}: {f:?}");
            }
        }
        assert_eq!(FAULTS.load(Ordering::Relaxed), 2 * cases.len());
        common::wait_all();
    });
}

/// Recurses until the stack runs out (the condition is never true, but the compiler
/// cannot know).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    std::hint::black_box(&mut frame);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + std::hint::black_box(frame[1]) as u64
}

#[test]
fn unbounded_recursion_is_reported_as_a_stack_overflow_of_that_uthread() {
    isolated!(TIMEOUT, {
        common::on_fault(record);
        common::init();
        for tls in [TlsMode::Backed, TlsMode::None] {
            let seen = fault_in_uthread(tls, || {
                recurse(0);
            });
            let f = seen.fault;
            assert_eq!(f.signal, libc::SIGSEGV, "{tls:?}: {f:?}");
            assert!(f.stack_overflow, "{tls:?}: not reported as a stack overflow: {f:?}");
        }
        // The vcores survive: their alternate signal stacks took the overflow.
        static DONE: AtomicUsize = AtomicUsize::new(0);
        for v in 0..vcore::max_vcores() {
            common::spawn_on(v, TlsMode::Backed, || {
                DONE.fetch_add(1, Ordering::Relaxed);
            });
        }
        common::wait_all();
        assert_eq!(DONE.load(Ordering::Relaxed), vcore::max_vcores());
    });
}

// ---------------------------------------------------------------------------------------
// The default policy, which aborts: judged from outside the child.

const FAULTING: &str = "FAULTING UTHREAD";

/// In a child: starts a uthread that says who it is, then runs `body`; main waits.
fn fault_with_default_policy(body: fn()) -> ! {
    common::init();
    common::spawn(TlsMode::Backed, move || {
        println!("{FAULTING} {}", my_id());
        body();
    });
    common::wait_until(|| false);
    unreachable!()
}

/// The id the child printed.
fn faulting_id(out: &Outcome) -> u64 {
    // (libtest may have printed "test NAME ... " on the same line.)
    let line = out.stdout.lines().find_map(|l| l.find(FAULTING).map(|i| &l[i + FAULTING.len()..]));
    line.and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| panic!("no {FAULTING} line\n{}", out.output()))
}

fn assert_aborted(out: &Outcome) {
    assert!(!out.finished, "the child ran on after the fault\n{}", out.output());
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(libc::SIGABRT),
        "expected an abort ({:?})\n{}",
        out.status,
        out.output()
    );
}

#[test]
fn the_default_policy_names_the_uthread_and_the_fault_then_aborts() {
    let out = child_outcome!(TIMEOUT, {
        fault_with_default_policy(|| {
            load_from(std::hint::black_box(0));
        });
    });
    assert_aborted(&out);
    let id = faulting_id(&out);
    // (The pc is the child's, at an address of its own: the binary is position-independent.)
    let expected = format!(
        "parlib: uthread {id} faulted: SIGSEGV (SEGV_MAPERR: address not mapped) at address 0x0, pc 0x"
    );
    assert!(out.stderr.contains(&expected), "stderr lacks {expected:?}\n{}", out.output());
    assert!(out.stderr.contains("; aborting"), "stderr lacks \"; aborting\"\n{}", out.output());
}

#[test]
fn the_default_policy_reports_a_stack_overflow_then_aborts() {
    let out = child_outcome!(TIMEOUT, {
        fault_with_default_policy(|| {
            recurse(0);
        });
    });
    assert_aborted(&out);
    let id = faulting_id(&out);
    let expected =
        format!("parlib: uthread {id} faulted: stack overflow (hit its stack guard page) at address 0x");
    assert!(out.stderr.contains(&expected), "stderr lacks {expected:?}\n{}", out.output());
}
