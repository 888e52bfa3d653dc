//! Emulated vcores: one pinned Linux task per allowed CPU.
//!
//! # Per-vcore records and how code finds its own
//!
//! `lib_init` allocates one [`Vcore`] record per vcore (128-byte aligned, so two vcores
//! never share a cache line pair; see [`Vcore`]) and starts one task per record. Each
//! task sets its GS base to its record, once. Code finds "its" vcore through the GS
//! base, never through `thread_local!`: TLS follows the uthread, so a uthread that moved
//! from vcore 1 to vcore 0 would otherwise still see vcore 1's record. Reading GS is an
//! `asm!` statement the compiler may not cache, so a value read after a context switch is
//! always the vcore the code runs on now.
//!
//! Linux copies the GS base into tasks cloned from a vcore (a `pthread_create` inside a
//! uthread), so [`this`] also checks that the running TLS is one the vcore is actually
//! using (its own, or its current uthread's); a copied GS base fails that check.
//!
//! # Vcore states
//!
//! | state | meaning | left by |
//! |---|---|---|
//! | `PARKED` | the task sleeps on the futex word `state`; it costs no CPU | `request*` CAS to `RUNNING`, then futex wake |
//! | `RUNNING` | the task runs vcore context or a uthread | [`yield_vcore`] stores `PARKED`, then futex-waits |
//!
//! A request that lands between the yield's store and its futex wait is not lost: the
//! wait returns at once because the word is no longer `PARKED`, and the loop re-checks.
//! A layer above may replace the futex sleep with its own ([`ParkHook`]); its `wake`
//! runs after every request, so the same argument holds.
//!
//! # Moving `main` onto vcore 0
//!
//! The first [`request`] made from outside any vcore moves its caller:
//! 1. the caller's context is saved into `MAIN_CTX` and the task switches to a small
//!    handoff stack (its TLS is now owned by whoever resumes the saved context);
//! 2. on the handoff stack it blocks every signal, so no handler can ever run on the
//!    TLS that now travels with the saved context;
//! 3. it publishes the context (`MAIN_SAVED`) and wakes vcore 0 (or any parked vcore);
//! 4. it sleeps forever on a futex through raw system calls that never touch `errno`.
//!
//! The woken vcore's entry takes the context with [`take_main_context`] (the uthread
//! layer wraps it in the main uthread) or resumes it directly with [`resume_main`].

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::atomic::AtomicCell;
use nix::unistd::Pid;

use crate::arch::{self, Context};
use crate::error::Error;
use crate::futex;
use crate::notif::FaultInfo;
use crate::stack::{Stack, DEFAULT_STACK_SIZE};
use crate::timer::VcoreTimer;

const PARKED: u32 = 0;
const RUNNING: u32 = 1;

/// Environment variable that caps the number of vcores.
pub const VCORE_LIMIT_ENV: &str = "VCORE_LIMIT";

/// Stack of each vcore task's own (pthread) stack: it only runs the start-up code before
/// moving to the vcore stack. glibc's minimum is 16 KiB; 64 KiB leaves room for the
/// dynamic loader's lazy binding on first calls.
const TASK_STACK_SIZE: usize = 64 * 1024;
/// The handoff stack runs four raw system calls.
const HANDOFF_STACK_SIZE: usize = 16 * 1024;
/// Alternate signal stack per vcore. A signal frame with AVX-512 state is about 3.5 KiB
/// (`AT_MINSIGSTKSZ`); the handlers add a few hundred bytes, and a fault handler may
/// format a message. 64 KiB is glibc's `SIGSTKSZ`-era rule of thumb many times over.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// One vcore's record. The first field is its own address, reachable as `%gs:0`.
///
/// Aligned to 128 bytes: adjacent-line prefetch pulls in pairs of 64-byte lines on
/// Intel and AMD parts, so 128 keeps two vcores' hot fields from false sharing, which
/// is the alignment of crossbeam-utils' `CachePadded` on x86-64 (asserted below). The
/// alignment is spelled out rather than borrowed by wrapping the fields in a
/// `CachePadded`: the record is an ABI shared with `arch`, found by its raw address in
/// the GS base, with its self pointer at offset 0 and every field at a `%gs` offset taken
/// with `offset_of!(Vcore, ..)`; `repr(C)` guarantees that layout, and `CachePadded<T>`
/// (a `repr(Rust)` wrapper) does not promise where it puts its `T`.
#[repr(C, align(128))]
pub struct Vcore {
    self_ptr: *const Vcore,
    id: usize,
    cpu: usize,
    /// `PARKED` or `RUNNING`; the futex word the task sleeps on.
    state: AtomicU32,
    /// Whether the task is in vcore context (scheduler code on the vcore stack).
    pub(crate) vcore_ctx: AtomicBool,
    /// The uthread this vcore runs or last ran, opaque to this layer.
    current: AtomicPtr<()>,
    /// FS base while `current` (or the moved `main`) runs; 0 if none.
    current_tls: AtomicUsize,
    /// FS base of the vcore task itself (vcore context's TLS).
    tls: AtomicUsize,
    tid: AtomicI32,
    pub(crate) stack: Stack,
    /// Set by senders, cleared by the entry (see `notif`).
    pub(crate) notif_pending: AtomicBool,
    /// Disable depth of the running uthread; changed only by `%gs`-relative inc/dec.
    pub(crate) notif_depth: AtomicU32,
    /// Context of the uthread the last notification interrupted (empty if none).
    pub(crate) interrupted: UnsafeCell<Context>,
    /// The fault that sent this vcore into vcore context, if any.
    pub(crate) fault: UnsafeCell<Option<FaultInfo>>,
    /// The one-shot timer that retries a deferred notification, made by the vcore's task.
    pub(crate) retry_timer: OnceLock<VcoreTimer>,
    pub(crate) retry_armed: AtomicBool,
    /// Set by the vcore's own task while its notification handler runs the timer hook:
    /// a notification the hook sends to this vcore needs no signal or futex wake, since
    /// the handler delivers it next.
    pub(crate) in_timer_hook: AtomicBool,
    /// Alternate signal stack: handlers run here, so a full uthread stack can be reported.
    pub(crate) altstack: Stack,
}

const _: () = assert!(
    core::mem::align_of::<Vcore>() == core::mem::align_of::<crossbeam_utils::CachePadded<u8>>()
        && core::mem::offset_of!(Vcore, self_ptr) == 0
);

// SAFETY: every field other than the immutable ones (`self_ptr`, `id`, `cpu`, the stacks)
// is an atomic, except `interrupted` and `fault`, which only the vcore's own task touches
// (its signal handlers and its vcore context, never at the same time).
unsafe impl Sync for Vcore {}
// SAFETY: as above; records are created by lib_init and never freed.
unsafe impl Send for Vcore {}

impl Vcore {
    /// This vcore's id, `0..max_vcores()`.
    #[inline]
    pub fn id(&self) -> usize {
        self.id
    }
    /// The CPU this vcore's task is pinned to.
    #[inline]
    pub fn cpu(&self) -> usize {
        self.cpu
    }
    /// The Linux thread id of this vcore's task.
    #[inline]
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }
    /// FS base of the vcore task's own TLS, which vcore context runs on.
    #[inline]
    pub fn tls(&self) -> usize {
        self.tls.load(Ordering::Relaxed)
    }
    /// Top of the vcore stack, where vcore context always starts.
    #[inline]
    pub fn stack_top(&self) -> usize {
        self.stack.top()
    }
    /// The vcore stack.
    #[inline]
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
    /// Whether the vcore is in vcore context.
    #[inline]
    pub fn in_vcore_context(&self) -> bool {
        self.vcore_ctx.load(Ordering::Relaxed)
    }
    /// Whether the caller runs on this vcore's alternate signal stack: inside a signal
    /// handler installed with `SA_ONSTACK` (parlib's own are) that interrupted this vcore.
    /// Such a handler must not wait for work that the code it interrupted has to finish.
    #[inline]
    pub fn on_signal_stack(&self) -> bool {
        let probe = 0u8;
        self.altstack.contains(core::hint::black_box(&probe) as *const u8 as usize)
    }
    /// Whether the caller runs on this vcore's own stack, that is in its vcore context: no
    /// uthread, plain thread or signal handler runs there. A check that costs two
    /// compares, for callbacks that know which vcore they should be running on.
    #[inline]
    pub fn on_vcore_stack(&self) -> bool {
        let probe = 0u8;
        self.stack.contains(core::hint::black_box(&probe) as *const u8 as usize)
    }
    /// Marks entry into or exit from vcore context. For the uthread layer, on every
    /// switch between vcore context and a uthread.
    ///
    /// # Safety
    /// Must match reality: `true` exactly while the task runs vcore context on this
    /// vcore's stack. The uthread layer and `yield_vcore` rely on it.
    #[inline]
    pub unsafe fn set_vcore_context(&self, on: bool) {
        self.vcore_ctx.store(on, Ordering::Relaxed);
    }
    /// The uthread (opaque to this layer) that the vcore runs.
    #[inline]
    pub fn current(&self) -> *mut () {
        self.current.load(Ordering::Relaxed)
    }
    /// FS base of the current uthread.
    #[inline]
    pub fn current_tls(&self) -> usize {
        self.current_tls.load(Ordering::Relaxed)
    }
    /// Records the uthread the vcore is about to run and the FS base it runs with. For
    /// the uthread layer; [`this`] accepts the running TLS only if it is this one or the
    /// vcore's own.
    ///
    /// # Safety
    /// `uth` must be null or a live uthread of the layer above that this vcore owns, and
    /// `tls` the FS base it runs with (or 0 with a null `uth`).
    #[inline]
    pub unsafe fn set_current(&self, uth: *mut (), tls: usize) {
        self.current.store(uth, Ordering::Relaxed);
        self.current_tls.store(tls, Ordering::Relaxed);
    }
    /// Whether the vcore is parked (racy by nature).
    #[inline]
    pub fn is_parked(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PARKED
    }

    /// Takes a parked vcore to `RUNNING` and wakes its task. False if it was running.
    #[inline]
    pub(crate) fn wake(&self) -> bool {
        self.wake_inner(true)
    }

    /// `wake`, optionally without the futex wake: for the vcore's own task, whose parked
    /// `FUTEX_WAIT` (restarted, or not yet made) sees the new state and returns at once.
    pub(crate) fn wake_inner(&self, futex_wake: bool) -> bool {
        if self.state.compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        if futex_wake {
            futex::wake(&self.state, 1);
        }
        if let Some(h) = park_hook() {
            (h.wake)(self);
        }
        true
    }
}

/// How a parked vcore sleeps, when a layer above wants it to sleep in something other
/// than its futex (the syscall layer parks vcores in `epoll_wait`, so I/O readiness wakes
/// them without a thread hop).
#[derive(Clone, Copy)]
pub struct ParkHook {
    /// Sleeps until woken by `wake` or by something of the hook's own. Returns true if
    /// the hook's own source (for example I/O readiness) woke it: the vcore then
    /// requests itself and enters vcore context to deal with it. Spurious returns are
    /// fine. Runs in vcore context on the parked vcore.
    pub wait: fn(&Vcore) -> bool,
    /// Interrupts a `wait` in progress (or makes the next one return at once). Called
    /// after a request took the vcore to `RUNNING`; may run on any task.
    pub wake: fn(&Vcore),
}

static PARK_HOOK: OnceLock<ParkHook> = OnceLock::new();

/// Installs the park hook. The first one stays; later calls return false.
pub fn set_park_hook(hook: ParkHook) -> bool {
    PARK_HOOK.set(hook).is_ok()
}

#[inline]
fn park_hook() -> Option<&'static ParkHook> {
    PARK_HOOK.get()
}

// ---------------------------------------------------------------------------------------
// Global state, written once by lib_init.

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);
static VCORES: AtomicPtr<Vcore> = AtomicPtr::new(core::ptr::null_mut());
static NR_VCORES: AtomicUsize = AtomicUsize::new(0);
static ENTRY: AtomicCell<Option<fn() -> !>> = AtomicCell::new(None);
// A vcore may start while another task sets the entry; a locked AtomicCell would take a
// lock there (its fallback for types without a native atomic).
const _: () = assert!(AtomicCell::<Option<fn() -> !>>::is_lock_free());
static READY: AtomicU32 = AtomicU32::new(0);
static PROCESS_CPUS: OnceLock<CpuSet> = OnceLock::new();
static HANDOFF_STACK: OnceLock<Stack> = OnceLock::new();

const MAIN_NONE: u8 = 0;
const MAIN_MOVING: u8 = 1;
const MAIN_SAVED: u8 = 2;
const MAIN_TAKEN: u8 = 3;
static MAIN_STATE: AtomicU8 = AtomicU8::new(MAIN_NONE);
static MAIN_TLS: AtomicUsize = AtomicUsize::new(0);
struct MainCtx(UnsafeCell<Context>);
// SAFETY: written once by the moving task before MAIN_SAVED is published (Release), read
// once by the vcore that wins the MAIN_SAVED -> MAIN_TAKEN exchange (Acquire).
unsafe impl Sync for MainCtx {}
static MAIN_CTX: MainCtx = MainCtx(UnsafeCell::new(Context::EMPTY));
/// A futex word nobody ever changes: the original task sleeps on it forever.
static NEVER: AtomicU32 = AtomicU32::new(0);

/// A set of CPUs: the process's affinity at `lib_init` ([`process_cpus`]), before any
/// pinning.
#[derive(Clone, Copy)]
pub struct CpuSet(nix::sched::CpuSet);

// `as_raw` views nix's set as libc's: nix declares it `#[repr(transparent)]` over
// `libc::cpu_set_t` ("a wrapper around libc::cpu_set_t", nix 0.30 src/sched.rs).
const _: () = assert!(
    core::mem::size_of::<nix::sched::CpuSet>() == core::mem::size_of::<libc::cpu_set_t>()
        && core::mem::align_of::<nix::sched::CpuSet>() == core::mem::align_of::<libc::cpu_set_t>()
);

impl CpuSet {
    /// The affinity of the calling thread.
    fn of_calling_thread() -> Result<CpuSet, Error> {
        nix::sched::sched_getaffinity(Pid::from_raw(0))
            .map(CpuSet)
            .map_err(|e| Error::os("sched_getaffinity", e))
    }

    /// The set holding only `cpu`.
    fn single(cpu: usize) -> Result<CpuSet, Error> {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).map_err(|e| Error::os("CPU_SET", e))?;
        Ok(CpuSet(set))
    }

    /// Restricts the calling thread to the CPUs of this set (`sched_setaffinity`).
    pub fn apply_to_calling_thread(&self) -> Result<(), Error> {
        nix::sched::sched_setaffinity(Pid::from_raw(0), &self.0)
            .map_err(|e| Error::os("sched_setaffinity", e))
    }

    /// The raw set, for callers of libc's `sched_setaffinity`.
    pub fn as_raw(&self) -> &libc::cpu_set_t {
        // SAFETY: the two types have one layout (see the assertion above the impl).
        unsafe { &*(&self.0 as *const nix::sched::CpuSet).cast::<libc::cpu_set_t>() }
    }

    /// The CPUs in the set, ascending.
    pub fn cpus(&self) -> Vec<usize> {
        (0..nix::sched::CpuSet::count()).filter(|&c| self.0.is_set(c).unwrap_or(false)).collect()
    }
}

#[inline]
fn vcores() -> &'static [Vcore] {
    let p = VCORES.load(Ordering::Acquire);
    if p.is_null() {
        return &[];
    }
    // SAFETY: lib_init publishes a leaked, fully built slice of NR_VCORES records before
    // storing the pointer (Release), and never frees it.
    unsafe { core::slice::from_raw_parts(p, NR_VCORES.load(Ordering::Relaxed)) }
}

/// The record of vcore `id`.
#[inline]
pub fn get(id: usize) -> Result<&'static Vcore, Error> {
    let all = vcores();
    all.get(id).ok_or(Error::NoSuchVcore { id, max: all.len() })
}

/// The vcore the caller runs on, or `None` outside vcores (plain threads, backing
/// threads, tasks that inherited a vcore's GS base).
///
/// On a uthread that can be preempted the answer may be stale by the time it is used:
/// the uthread may have moved to another vcore. Use the record only for what does not
/// depend on that (or pin the uthread first with `notif::disable_notifs`), and read the
/// running context's own state with [`current_raw`] and [`in_vcore_context`], which are
/// single `%gs`-relative loads and always see the vcore the code runs on.
#[inline]
pub fn this() -> Option<&'static Vcore> {
    // The common case inline and straight; no FSGSBASE, a refusal or a migration in the
    // middle go out of line.
    match arch::gs_base_if_cheap().map(probe) {
        Some(Probe::Vcore(vc)) => Some(vc),
        Some(Probe::NotAVcore) => None,
        Some(Probe::Retry) | None => this_retry(),
    }
}

/// What one look at the GS base says.
enum Probe {
    Vcore(&'static Vcore),
    NotAVcore,
    /// GS moved during the look, or the FS check failed: look again before believing it.
    Retry,
}

#[inline(always)]
fn probe(gs: usize) -> Probe {
    if gs == 0 {
        return Probe::NotAVcore;
    }
    let base = VCORES.load(Ordering::Relaxed) as usize;
    let size = core::mem::size_of::<Vcore>();
    let off = gs.wrapping_sub(base);
    if off >= NR_VCORES.load(Ordering::Relaxed) * size || !off.is_multiple_of(size) {
        return Probe::NotAVcore; // GS belongs to something else
    }
    // SAFETY: `gs` points at one of our records, which live forever.
    let vc = unsafe { &*(gs as *const Vcore) };
    let fs = arch::fs_base();
    let ok = fs == vc.tls() || fs == vc.current_tls();
    // GS is known to point at a vcore record, so re-read it through the record's self
    // pointer (a load) rather than `rdgsbase`: a migration in between moves GS to
    // another record, whose self pointer differs.
    // SAFETY: GS points at one of our records (checked above), or, if we migrated, at
    // another: every record's first word is its own address.
    if unsafe { arch::gs_self() } == gs && ok {
        Probe::Vcore(vc)
    } else {
        Probe::Retry
    }
}

/// The rest of [`this`]. A preemption between reading GS and checking FS against that
/// vcore's fields could move us: then GS changes, and we look again. A task that only
/// inherited a GS base fails the check every time; a uthread would have to be moved
/// away and back between two reads, three times over, to be refused.
#[cold]
#[inline(never)]
fn this_retry() -> Option<&'static Vcore> {
    for _ in 0..3 {
        match probe(arch::gs_base()) {
            Probe::Vcore(vc) => return Some(vc),
            Probe::NotAVcore => return None,
            Probe::Retry => continue,
        }
    }
    None
}

const VCTX_OFF: usize = core::mem::offset_of!(Vcore, vcore_ctx);
const CURRENT_OFF: usize = core::mem::offset_of!(Vcore, current);

/// The opaque current-uthread pointer of the vcore the caller runs on, read with one
/// `%gs`-relative load (so it is right even if the caller migrates around it), or null
/// outside vcores.
#[inline]
pub fn current_raw() -> *mut () {
    if this().is_none() {
        return core::ptr::null_mut();
    }
    // SAFETY: on a vcore task, %gs:CURRENT_OFF is the `current` field of its record.
    unsafe { arch::gs_load_usize::<CURRENT_OFF>() as *mut () }
}

/// The vcore the caller runs on, without checks.
///
/// # Safety
/// The caller must be running on a vcore task (in vcore context or on a uthread).
#[inline(always)]
pub unsafe fn this_unchecked() -> &'static Vcore {
    // SAFETY: on a vcore task %gs:0 holds the address of its record (set in task_main).
    unsafe { &*(arch::gs_self() as *const Vcore) }
}

/// Whether `lib_init` has completed.
#[inline]
pub fn is_initialized() -> bool {
    INIT.load(Ordering::Acquire) == INIT_DONE
}

/// How many vcores the process has (0 before `lib_init`).
#[inline]
pub fn max_vcores() -> usize {
    vcores().len()
}

/// How many vcores are running now. Racy by nature: a snapshot.
pub fn num_vcores() -> usize {
    vcores().iter().filter(|v| !v.is_parked()).count()
}

/// The id of the vcore the caller runs on.
///
/// # Panics
/// Outside vcores (see [`try_id`]).
#[inline]
pub fn id() -> usize {
    match this() {
        Some(vc) => vc.id,
        None => panic!("vcore::id() called outside a vcore (from a plain Linux thread)"),
    }
}

/// The id of the vcore the caller runs on, or `None` outside vcores.
#[inline]
pub fn try_id() -> Option<usize> {
    this().map(|v| v.id)
}

/// Whether the caller is in vcore context (a `%gs`-relative load: right even for a
/// uthread that migrates around the call).
#[inline]
pub fn in_vcore_context() -> bool {
    // SAFETY: on a vcore task, %gs:VCTX_OFF is the `vcore_ctx` flag of its record.
    this().is_some() && unsafe { arch::gs_load_u8::<VCTX_OFF>() } != 0
}

/// Whether the caller is a uthread: on a vcore, outside vcore context. One [`this`]
/// check (the costly part of these queries) and one `%gs`-relative load.
#[inline]
pub fn on_uthread() -> bool {
    // SAFETY: on a vcore task, %gs:VCTX_OFF is the `vcore_ctx` flag of its record.
    this().is_some() && unsafe { arch::gs_load_u8::<VCTX_OFF>() } == 0
}

/// [`current_raw`] if the caller is a uthread (see [`on_uthread`]), else null: the
/// running uthread, with one [`this`] check.
#[inline]
pub fn running_uthread_raw() -> *mut () {
    if !on_uthread() {
        return core::ptr::null_mut();
    }
    // SAFETY: on a vcore task, %gs:CURRENT_OFF is the `current` field of its record.
    unsafe { arch::gs_load_usize::<CURRENT_OFF>() as *mut () }
}

/// The CPU vcore `id` is pinned to.
pub fn cpu_of(id: usize) -> Result<usize, Error> {
    get(id).map(|v| v.cpu)
}

/// The process's CPU affinity as it was at `lib_init`.
pub fn process_cpus() -> Option<&'static CpuSet> {
    PROCESS_CPUS.get()
}

/// The CPU the calling task is on, asked of the kernel with `getcpu` (glibc's
/// `sched_getcpu` reads the rseq area of the *current TLS*, which on a uthread belongs
/// to its backing thread).
pub fn current_cpu() -> usize {
    let mut cpu: u32 = 0;
    // SAFETY: getcpu writes one u32 to `cpu`; null node and cache pointers are allowed.
    unsafe { arch::syscall6(libc::SYS_getcpu as usize, &mut cpu as *mut u32 as usize, 0, 0, 0, 0, 0) };
    cpu as usize
}

/// Sets the function every vcore runs on entering vcore context (parlib's
/// `vcore_entry`). The uthread layer installs its own; set one before requesting vcores
/// when using this layer alone.
pub fn set_entry(entry: fn() -> !) {
    ENTRY.store(Some(entry));
}

fn missing_entry() -> ! {
    panic!("a vcore started but no entry function is set: call vcore::set_entry before vcore::request");
}

// ---------------------------------------------------------------------------------------
// Initialisation and the vcore tasks.

/// Starts one parked, pinned task per allowed CPU (capped by `VCORE_LIMIT`).
///
/// # Errors
/// [`Error::AlreadyInitialized`] on a second call; [`Error::BadVcoreLimit`] for a
/// malformed `VCORE_LIMIT`; [`Error::Os`] if the kernel refuses a task or a stack.
pub fn lib_init() -> Result<(), Error> {
    if INIT.compare_exchange(INIT_NONE, INIT_RUNNING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(Error::AlreadyInitialized);
    }
    match init_inner() {
        Ok(()) => {
            INIT.store(INIT_DONE, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            // Nothing was started if the vcore table was never published: allow a retry.
            if VCORES.load(Ordering::Acquire).is_null() {
                INIT.store(INIT_NONE, Ordering::Release);
            }
            Err(e)
        }
    }
}

fn vcore_limit() -> Result<usize, Error> {
    match std::env::var(VCORE_LIMIT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(usize::MAX),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::BadVcoreLimit(v.to_string_lossy().into_owned())),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::BadVcoreLimit(v)),
        },
    }
}

fn init_inner() -> Result<(), Error> {
    arch::init();
    let limit = vcore_limit()?;
    let set = CpuSet::of_calling_thread()?;
    let cpus = set.cpus();
    let n = cpus.len().min(limit);
    let _ = PROCESS_CPUS.set(set);
    let _ = HANDOFF_STACK.set(Stack::new(HANDOFF_STACK_SIZE)?);

    let mut records = Vec::with_capacity(n);
    for (id, &cpu) in cpus.iter().take(n).enumerate() {
        records.push(Vcore {
            self_ptr: core::ptr::null(),
            id,
            cpu,
            state: AtomicU32::new(PARKED),
            vcore_ctx: AtomicBool::new(true),
            current: AtomicPtr::new(core::ptr::null_mut()),
            current_tls: AtomicUsize::new(0),
            tls: AtomicUsize::new(0),
            tid: AtomicI32::new(0),
            stack: Stack::new(DEFAULT_STACK_SIZE)?,
            notif_pending: AtomicBool::new(false),
            notif_depth: AtomicU32::new(0),
            interrupted: UnsafeCell::new(Context::EMPTY),
            fault: UnsafeCell::new(None),
            retry_timer: OnceLock::new(),
            retry_armed: AtomicBool::new(false),
            in_timer_hook: AtomicBool::new(false),
            altstack: Stack::new(ALTSTACK_SIZE)?,
        });
    }
    let records: &'static mut [Vcore] = Box::leak(records.into_boxed_slice());
    for vc in records.iter_mut() {
        vc.self_ptr = vc as *const Vcore;
    }
    NR_VCORES.store(n, Ordering::Relaxed);
    VCORES.store(records.as_mut_ptr(), Ordering::Release);

    // SAFETY: registering a handler that only clears the GS base in the child.
    unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    crate::notif::install()?;

    for vc in vcores() {
        spawn_task(vc)?;
    }
    loop {
        let ready = READY.load(Ordering::Acquire);
        if ready as usize == n {
            return Ok(());
        }
        futex::wait(&READY, ready);
    }
}

/// A forked child has one task, a copy of the forking one; if that was a vcore, its GS
/// base points at a record whose vcore does not exist in the child.
extern "C" fn atfork_child() {
    if arch::gs_base() != 0 {
        // SAFETY: the child's only task stops claiming to be a vcore.
        unsafe { arch::set_gs_base(0) };
    }
}

fn spawn_task(vc: &'static Vcore) -> Result<(), Error> {
    // SAFETY: standard pthread attribute use; every call's result is checked, and the
    // record passed as argument lives forever.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, TASK_STACK_SIZE);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut t: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut t, &attr, task_main, vc as *const Vcore as *mut libc::c_void);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            return Err(Error::Os { what: "pthread_create (vcore task)", errno: r });
        }
        let name = format!("vcore{}\0", vc.id);
        libc::pthread_setname_np(t, name.as_ptr().cast());
    }
    Ok(())
}

/// Start of a vcore task, on its pthread stack.
extern "C" fn task_main(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: lib_init passes a pointer to a record that lives forever.
    let vc = unsafe { &*(arg as *const Vcore) };
    // SAFETY: this task is a vcore task; GS is ours to set (glibc does not use it).
    unsafe { arch::set_gs_base(vc as *const Vcore as usize) };
    if let Err(e) = CpuSet::single(vc.cpu).and_then(|one| one.apply_to_calling_thread()) {
        panic!("vcore {}: cannot pin to CPU {}: {e}", vc.id, vc.cpu);
    }
    vc.tid.store(nix::unistd::gettid().as_raw(), Ordering::Relaxed);
    vc.tls.store(arch::fs_base(), Ordering::Relaxed);
    crate::notif::init_task(vc);
    READY.fetch_add(1, Ordering::Release);
    futex::wake(&READY, 1);
    // SAFETY: the vcore stack belongs to this vcore alone and nothing runs on it yet.
    unsafe { arch::call_on_stack(vc.stack_top(), park_then_enter, 0, 0) }
}

/// Vcore context: sleep until requested, then run the entry function.
unsafe extern "C" fn park_then_enter(_: usize, _: usize) -> ! {
    // SAFETY: only vcore tasks run on a vcore stack.
    let vc = unsafe { this_unchecked() };
    while vc.state.load(Ordering::Acquire) != RUNNING {
        match park_hook() {
            Some(h) => {
                if (h.wait)(vc) {
                    // Woken by the hook's own source: request ourselves.
                    let _ = vc.state.compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
            None => futex::wait(&vc.state, PARKED),
        }
    }
    enter(vc)
}

pub(crate) fn enter(vc: &Vcore) -> ! {
    // SAFETY: we are in vcore context, at the top of the vcore stack.
    unsafe { vc.set_vcore_context(true) };
    match ENTRY.load() {
        Some(f) => f(),
        None => missing_entry(),
    }
}

// ---------------------------------------------------------------------------------------
// Requests and yields.

/// Asks for `n` more vcores; returns how many were granted (fewer if fewer are parked).
/// The first request made from outside any vcore moves its caller onto vcore 0 (see the
/// module docs) and counts vcore 0 as granted; the call returns once a vcore resumes it.
///
/// # Errors
/// [`Error::NotInitialized`] before `lib_init`; [`Error::TooManyVcores`] if `n` exceeds
/// `max_vcores()`.
pub fn request(n: usize) -> Result<usize, Error> {
    if !is_initialized() {
        return Err(Error::NotInitialized);
    }
    let all = vcores();
    if n > all.len() {
        return Err(Error::TooManyVcores { requested: n, max: all.len() });
    }
    let mut granted = 0;
    if n > 0
        && this().is_none()
        && MAIN_STATE.compare_exchange(MAIN_NONE, MAIN_MOVING, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        move_caller_to_vcore0();
        granted = 1;
    }
    for vc in all {
        if granted == n {
            break;
        }
        if vc.wake() {
            granted += 1;
        }
    }
    Ok(granted)
}

/// Asks for vcore `id` in particular. `Ok(false)` if it was already running.
pub fn request_specific(id: usize) -> Result<bool, Error> {
    if !is_initialized() {
        return Err(Error::NotInitialized);
    }
    Ok(get(id)?.wake())
}

/// Gives the calling vcore back: it parks, costing no CPU, until requested again, when
/// it starts afresh in the entry function.
///
/// # Panics
/// Outside vcore context, or if the vcore still has a current uthread (hand it back to
/// the scheduler first).
pub fn yield_vcore() -> ! {
    let vc = match this() {
        Some(vc) if vc.in_vcore_context() => vc,
        _ => panic!("vcore::yield_vcore called outside vcore context"),
    };
    assert!(
        vc.current().is_null(),
        "vcore::yield_vcore: vcore {} still has a current uthread; hand it to the scheduler first",
        vc.id
    );
    vc.state.store(PARKED, Ordering::SeqCst);
    if vc.notif_pending() {
        // A notification raced with the yield (see `notif`): stay up and handle it.
        let _ = vc.state.compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed);
    }
    // SAFETY: in vcore context the vcore stack is ours; everything on it is abandoned.
    unsafe { arch::call_on_stack(vc.stack_top(), park_then_enter, 0, 0) }
}

/// Restarts vcore context at the top of the vcore stack and runs `f` there.
///
/// # Panics
/// Outside vcore context.
pub fn reenter(f: fn() -> !) -> ! {
    let vc = match this() {
        Some(vc) if vc.in_vcore_context() => vc,
        _ => panic!("vcore::reenter called outside vcore context"),
    };
    unsafe extern "C" fn call(f: usize, _: usize) -> ! {
        // SAFETY: `reenter` passes a `fn() -> !`.
        let f: fn() -> ! = unsafe { core::mem::transmute::<usize, fn() -> !>(f) };
        f()
    }
    // SAFETY: in vcore context the vcore stack is ours; everything on it is abandoned.
    unsafe { arch::call_on_stack(vc.stack_top(), call, f as usize, 0) }
}

// ---------------------------------------------------------------------------------------
// Moving the first requester onto vcore 0.

fn move_caller_to_vcore0() {
    MAIN_TLS.store(arch::fs_base(), Ordering::Relaxed);
    let top = HANDOFF_STACK.get().expect("lib_init allocates the handoff stack").top();
    // SAFETY: MAIN_CTX is written only here (MAIN_MOVING is ours) and the handoff stack
    // is used only by this one move.
    unsafe { arch::save_and_call(MAIN_CTX.0.get(), top, handoff, 0, 0) };
    // Resumed by some vcore: we now run there, on the same TLS as before.
}

/// Steps 2-4 of the move (module docs). Runs on the handoff stack and must not touch TLS.
unsafe extern "C" fn handoff(_: usize, _: usize) -> ! {
    let all: u64 = !0;
    // SAFETY: rt_sigprocmask with a valid 8-byte set; raw, so errno is untouched.
    unsafe {
        arch::syscall6(
            libc::SYS_rt_sigprocmask as usize,
            libc::SIG_BLOCK as usize,
            &all as *const u64 as usize,
            0,
            8,
            0,
            0,
        )
    };
    MAIN_STATE.store(MAIN_SAVED, Ordering::Release);
    let vcs = vcores();
    if !vcs[0].wake() {
        // Vcore 0 was already running: whichever vcore enters its entry next takes main.
        let _ = vcs.iter().any(Vcore::wake);
    }
    loop {
        futex::wait(&NEVER, 0);
    }
}

/// Takes the context that the first [`request`] saved, if it is waiting to be resumed.
/// Exactly one caller ever gets it.
#[inline]
pub fn take_main_context() -> Option<Context> {
    if MAIN_STATE.load(Ordering::Acquire) != MAIN_SAVED {
        return None;
    }
    MAIN_STATE
        .compare_exchange(MAIN_SAVED, MAIN_TAKEN, Ordering::AcqRel, Ordering::Relaxed)
        .ok()
        // SAFETY: the exchange above makes us the one reader of a context published with
        // Release before MAIN_SAVED.
        .map(|_| unsafe { *MAIN_CTX.0.get() })
}

/// FS base of the moved caller (its TLS travels with its context).
#[inline]
pub fn main_tls() -> usize {
    MAIN_TLS.load(Ordering::Relaxed)
}

/// Resumes the moved caller on this vcore, leaving vcore context. For programs that use
/// this layer without uthreads; the caller then runs on the vcore as ordinary code.
///
/// # Panics
/// Outside vcore context, or if there is no moved caller to resume.
pub fn resume_main() -> ! {
    let vc = match this() {
        Some(vc) if vc.in_vcore_context() => vc,
        _ => panic!("vcore::resume_main called outside vcore context"),
    };
    let ctx = take_main_context().expect("vcore::resume_main: no moved caller is waiting to be resumed");
    // SAFETY: the saved context's TLS is the moved caller's, which no other task uses
    // (its original task blocks forever with every signal blocked).
    // The moved caller is no uthread: `current` stays null, its TLS is accepted by `this`.
    unsafe {
        vc.set_current(core::ptr::null_mut(), main_tls());
        vc.set_vcore_context(false);
        arch::set_fs_base(main_tls());
        arch::load(&ctx)
    }
}
