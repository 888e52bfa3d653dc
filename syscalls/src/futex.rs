//! `futex(2)` for code that reaches the kernel through libc's `syscall`, as Rust's std
//! does for every blocking primitive (`Mutex`, `Condvar`, `RwLock`, `Once`, thread
//! parking, and so the lock behind `println!`).
//!
//! | call | on a uthread | elsewhere (plain thread, vcore context) |
//! |---|---|---|
//! | `FUTEX_WAIT`, `FUTEX_WAIT_BITSET` with `FUTEX_BITSET_MATCH_ANY` | `parlib_sync::futex_wait_until`: only the uthread blocks, until a wake or the timeout (relative for `WAIT`, absolute on the monotonic or, with `FUTEX_CLOCK_REALTIME`, the real-time clock for `WAIT_BITSET`) | the kernel's |
//! | `FUTEX_WAKE`, `FUTEX_WAKE_BITSET` with `FUTEX_BITSET_MATCH_ANY` | wakes uthread waiters (`parlib_sync::futex_wake`), then the kernel's for the rest of the count | the same |
//! | any other operation (requeue, PI, other bitsets) | the kernel's: it blocks the vcore | the kernel's |
//!
//! A word may have waiters of both kinds at once (a uthread and a plain thread contend
//! for one `std::sync::Mutex`), so every wake goes to both. A uthread's wait checks the
//! word under the `parlib_sync` bucket lock that the wake takes after the word changed,
//! and the kernel checks a plain thread's atomically: neither kind of wake-up is lost.

use core::sync::atomic::AtomicU32;

use parlib_sync::{futex_wait_until, futex_wake, Deadline};

use crate::raw::{on_uthread, sys};

/// `FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME`: what `op` may carry besides the command.
const OP_FLAGS: i32 = libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME;
/// `FUTEX_BITSET_MATCH_ANY`: a bitset wait or wake that behaves as the plain one.
const MATCH_ANY: u32 = u32::MAX;

/// `futex(uaddr, op, val, timeout, uaddr2, val3)`: see the module docs.
///
/// # Safety
/// futex(2)'s contract for the operation: for a wait or a wake, `uaddr` is the address of
/// a live, aligned 32-bit word (checked: null is `EFAULT`, misaligned `EINVAL`) and
/// `timeout` is null or a valid `timespec`.
pub(crate) unsafe fn futex(
    uaddr: usize,
    op: i32,
    val: u32,
    timeout: usize,
    uaddr2: usize,
    val3: u32,
) -> Result<usize, i32> {
    let plain = || sys(libc::SYS_futex, [uaddr, op as usize, val as usize, timeout, uaddr2, val3 as usize]);
    let cmd = op & !OP_FLAGS;
    let any = cmd == libc::FUTEX_WAIT || cmd == libc::FUTEX_WAKE || val3 == MATCH_ANY;
    let wait = matches!(cmd, libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET);
    let wake = matches!(cmd, libc::FUTEX_WAKE | libc::FUTEX_WAKE_BITSET);
    if !any || !(wake || (wait && on_uthread())) {
        return plain();
    }
    if uaddr == 0 {
        return Err(libc::EFAULT);
    }
    if !uaddr.is_multiple_of(4) {
        return Err(libc::EINVAL);
    }
    // SAFETY: a non-null, aligned word, live by the caller's contract.
    let word = unsafe { &*(uaddr as *const AtomicU32) };
    if wake {
        let woken = futex_wake(word, val);
        let rest = val.saturating_sub(woken);
        let kernel = if rest > 0 {
            sys(libc::SYS_futex, [uaddr, op as usize, rest as usize, timeout, uaddr2, val3 as usize])?
        } else {
            0
        };
        return Ok(woken as usize + kernel);
    }
    let deadline = match timeout {
        0 => None,
        // SAFETY: a non-null timeout is a valid timespec (the caller's contract).
        t => Some(deadline(unsafe { &*(t as *const libc::timespec) }, cmd, op)?),
    };
    futex_wait_until(word, val, deadline).map(|()| 0).map_err(|e| e.0)
}

/// The deadline of a wait: `ts` from now for `FUTEX_WAIT`, the absolute time `ts` on the
/// monotonic (or, with `FUTEX_CLOCK_REALTIME`, real-time) clock for `FUTEX_WAIT_BITSET`.
fn deadline(ts: &libc::timespec, cmd: i32, op: i32) -> Result<Deadline, i32> {
    if !(0..1_000_000_000).contains(&ts.tv_nsec) || ts.tv_sec < 0 {
        return Err(libc::EINVAL);
    }
    let d = if cmd == libc::FUTEX_WAIT {
        Ok(Deadline::after(core::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)))
    } else if op & libc::FUTEX_CLOCK_REALTIME != 0 {
        Deadline::from_realtime(ts)
    } else {
        Deadline::from_monotonic(ts)
    };
    d.map_err(|e| e.0)
}
