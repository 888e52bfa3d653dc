//! The Rust face: [`spawn`], [`Builder`], [`scope`] and [`yield_now`], shaped like
//! `std::thread` but running closures as upthread threads (uthreads with their own TLS,
//! so `thread_local!` works).
//!
//! A closure's result (or its panic) travels to the joiner through a shared packet;
//! [`JoinHandle::join`] returns `Err` with the panic payload, like std. Dropping a
//! handle without joining detaches the thread. A thread cancelled through the C API
//! (`upthread_cancel`) leaves its packet empty: its join returns `Err` with a `&str`
//! payload saying so. Cancellation abandons the thread's stack without unwinding, so
//! values it owned are leaked, not dropped.
//!
//! As everywhere on uthreads: do not block in `std::sync` locks, `std::thread::sleep` or
//! blocking system calls inside these closures (use `parlib_sync`, `parlib_alarms`,
//! `parlib_syscalls`).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parlib_sync::Mutex;

use crate::record::{Identity, Start, Thread};
use crate::thread::{self, SpawnOpts, StackSpec};

/// What a thread left for its joiner.
struct Packet<T> {
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    /// Set if the closure panicked (for [`scope`]'s report).
    panicked: AtomicBool,
}

// SAFETY: `result` is written once by the thread before it exits and read by the joiner
// only after the join, which orders the two (the lifecycle word's Release/Acquire).
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    fn new() -> Arc<Packet<T>> {
        Arc::new(Packet { result: UnsafeCell::new(None), panicked: AtomicBool::new(false) })
    }
}

/// A thread's body as the record stores it, for a lifetime.
type Body<'a> = Box<dyn FnOnce() -> *mut libc::c_void + Send + 'a>;

/// Runs `f` on the new thread and fills `packet`.
fn body<T, F: FnOnce() -> T>(f: F, packet: Arc<Packet<T>>) -> *mut libc::c_void {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    packet.panicked.store(r.is_err(), Ordering::Release);
    // SAFETY: only this thread writes the packet, once, before it exits (see Packet).
    unsafe { *packet.result.get() = Some(r) };
    core::ptr::null_mut()
}

/// Options for a new thread: stack size and name.
#[derive(Debug, Default)]
pub struct Builder {
    stack_size: Option<usize>,
    name: Option<String>,
}

impl Builder {
    /// Default options: a [`DEFAULT_STACK_SIZE`](crate::attr::DEFAULT_STACK_SIZE) stack,
    /// no name.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The usable stack size in bytes (at least [`PTHREAD_STACK_MIN`](crate::attr::PTHREAD_STACK_MIN); smaller
    /// sizes are raised to it).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// The thread's name, readable on it with [`current_name`].
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    fn opts(self) -> SpawnOpts {
        let size =
            self.stack_size.unwrap_or(crate::attr::DEFAULT_STACK_SIZE).max(crate::attr::PTHREAD_STACK_MIN);
        SpawnOpts { detached: false, stack: StackSpec::Size(size), name: self.name }
    }

    /// Starts `f` on a new thread.
    ///
    /// # Errors
    /// `InvalidInput` (`EINVAL`) for a stack size that overflows with its guard page;
    /// `WouldBlock` (`EAGAIN`) if upthread cannot start or no stack or backing thread is
    /// available.
    pub fn spawn<F, T>(self, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let packet = Packet::new();
        let p2 = packet.clone();
        let start = Start::Rust(Box::new(move || body(f, p2)));
        let t = thread::prepare(start, self.opts()).map_err(std::io::Error::from_raw_os_error)?;
        let handle = t.handle();
        thread::launch(t);
        Ok(JoinHandle { handle, packet, joined: false })
    }

    /// Starts `f` on a new thread of `scope` (see [`scope`]).
    ///
    /// # Errors
    /// As for [`Builder::spawn`].
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> std::io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet = Packet::new();
        let p2 = packet.clone();
        let run: Body<'scope> = Box::new(move || body(f, p2));
        // SAFETY: `scope` joins every thread it started before it returns (even when its
        // closure panics), so nothing the closure borrows for 'scope is used after 'scope.
        let run = unsafe { core::mem::transmute::<Body<'scope>, Body<'static>>(run) };
        let t = thread::prepare(Start::Rust(run), self.opts()).map_err(std::io::Error::from_raw_os_error)?;
        let handle = t.handle();
        let flag: Arc<dyn Panicked + 'scope> = packet.clone();
        // SAFETY: as above; the scope outlives every entry of its list.
        let flag: Arc<dyn Panicked> = unsafe { core::mem::transmute(flag) };
        scope.threads.lock().push((handle, flag));
        thread::launch(t);
        Ok(ScopedJoinHandle { scope: scope.threads_ref(), handle, packet })
    }
}

/// Starts `f` on a new thread, like `std::thread::spawn`.
///
/// # Panics
/// If the thread cannot be created ([`Builder::spawn`] returns the error instead).
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).expect("parlib_upthread::spawn: cannot create a thread")
}

/// Owns a thread: join it to get its result. Dropping it detaches the thread.
pub struct JoinHandle<T> {
    handle: usize,
    packet: Arc<Packet<T>>,
    joined: bool,
}

impl<T> core::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &format_args!("{:#x}", self.handle))
            .finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    /// Waits for the thread and returns its result, or `Err` with its panic payload.
    pub fn join(mut self) -> std::thread::Result<T> {
        self.joined = true;
        collect(self.handle, &self.packet)
    }

    /// Whether the thread has finished running.
    pub fn is_finished(&self) -> bool {
        thread::has_exited(self.handle)
    }

    /// The thread's `upthread_t`, for the C API (`upthread_kill`, `upthread_cancel`...).
    pub fn as_raw(&self) -> crate::upthread_t {
        self.handle as crate::upthread_t
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.joined {
            let _ = thread::detach(self.handle);
        }
    }
}

/// Joins `handle` and takes its result out of `packet`.
fn collect<T>(handle: usize, packet: &Packet<T>) -> std::thread::Result<T> {
    if let Err(e) = thread::join(handle) {
        return Err(Box::new(format!("upthread join failed: {}", std::io::Error::from_raw_os_error(e))));
    }
    // SAFETY: the thread has exited (joined), so it no longer touches the packet.
    let r = unsafe { (*packet.result.get()).take() };
    r.unwrap_or_else(|| Err(Box::new("the thread was cancelled")))
}

/// Gives the vcore to the next thread in line.
pub fn yield_now() {
    thread::yield_now();
}

/// The calling thread's name, as given to [`Builder::name`].
pub fn current_name() -> Option<String> {
    let t = Thread::current()?;
    // SAFETY: only the thread itself reads its name once it runs.
    unsafe { (*t.name.get()).clone() }
}

// ---------------------------------------------------------------------------------------
// Scoped threads.

/// Whether a scoped thread's closure panicked, without knowing its result type.
trait Panicked: Send + Sync {
    fn panicked(&self) -> bool;
}

impl<T: Send> Panicked for Packet<T> {
    fn panicked(&self) -> bool {
        self.panicked.load(Ordering::Acquire)
    }
}

type ThreadList = Mutex<Vec<(usize, Arc<dyn Panicked>)>>;

/// A scope for threads that may borrow from the enclosing function (see [`scope`]).
pub struct Scope<'scope, 'env: 'scope> {
    /// Threads started and not yet joined by hand.
    threads: ThreadList,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Starts `f` on a new thread that may borrow anything that outlives the scope.
    ///
    /// # Panics
    /// If the thread cannot be created.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        Builder::new().spawn_scoped(self, f).expect("parlib_upthread::Scope::spawn: cannot create a thread")
    }

    fn threads_ref(&'scope self) -> &'scope ThreadList {
        &self.threads
    }
}

/// Owns a scoped thread: join it to get its result before the scope ends (the scope
/// joins it otherwise).
pub struct ScopedJoinHandle<'scope, T> {
    scope: &'scope ThreadList,
    handle: usize,
    packet: Arc<Packet<T>>,
}

impl<T> core::fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("thread", &format_args!("{:#x}", self.handle))
            .finish_non_exhaustive()
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the thread and returns its result, or `Err` with its panic payload.
    pub fn join(self) -> std::thread::Result<T> {
        self.scope.lock().retain(|(h, _)| *h != self.handle);
        collect(self.handle, &self.packet)
    }

    /// Whether the thread has finished running.
    pub fn is_finished(&self) -> bool {
        thread::has_exited(self.handle)
    }
}

/// Runs `f` with a [`Scope`] whose threads may borrow from the caller; every thread it
/// started is joined before `scope` returns, like `std::thread::scope`.
///
/// # Panics
/// If `f` panics (after joining every thread), or if a thread that was not joined by
/// hand panicked.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let s = Scope { threads: Mutex::new(Vec::new()), _scope: PhantomData, _env: PhantomData };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&s)));
    let mut a_thread_panicked = false;
    loop {
        let Some((h, flag)) = s.threads.lock().pop() else { break };
        let _ = thread::join(h);
        a_thread_panicked |= flag.panicked();
    }
    match r {
        Err(e) => std::panic::resume_unwind(e),
        Ok(_) if a_thread_panicked => panic!("a scoped thread panicked"),
        Ok(v) => v,
    }
}
