//! Futex wait and wake on a 32-bit word, without touching `errno`.
//!
//! parlib code runs on uthreads whose `errno` belongs to the application, so every
//! futex call goes through [`crate::arch::syscall6`] and reports failure by value.

use core::sync::atomic::AtomicU32;

use crate::arch::syscall6;

const FUTEX_WAIT_PRIVATE: usize = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize;
const FUTEX_WAKE_PRIVATE: usize = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as usize;

/// Blocks the calling *task* while `*word == expected`. Returns on a wake, a signal, a
/// spurious wake-up or if the value already differs: callers re-check in a loop.
pub fn wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; a null timeout means no timeout.
    unsafe {
        syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            FUTEX_WAIT_PRIVATE,
            expected as usize,
            0,
            0,
            0,
        )
    };
}

/// Wakes up to `n` tasks blocked in [`wait`] on `word`; returns how many woke.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    // SAFETY: `word` is a live, aligned 32-bit atomic.
    let r = unsafe {
        syscall6(libc::SYS_futex as usize, word.as_ptr() as usize, FUTEX_WAKE_PRIVATE, n as usize, 0, 0, 0)
    };
    r.max(0) as usize
}

/// Wakes up to `n` tasks blocked in [`wait`] on the 32-bit word at `addr`. The word may
/// be gone by now (a waiter that returned): the kernel only uses the address as a key,
/// so a stale address at worst wakes a spurious waiter, which futex users tolerate.
pub fn wake_addr(addr: usize, n: u32) -> usize {
    // SAFETY: FUTEX_WAKE never dereferences the address.
    let r = unsafe { syscall6(libc::SYS_futex as usize, addr, FUTEX_WAKE_PRIVATE, n as usize, 0, 0, 0) };
    r.max(0) as usize
}

/// Like [`wait`], but gives up at `deadline_ns` on `CLOCK_MONOTONIC` (absolute). Returns
/// whether the deadline has passed.
pub fn wait_until(word: &AtomicU32, expected: u32, deadline_ns: u64) -> bool {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as i64,
        tv_nsec: (deadline_ns % 1_000_000_000) as i64,
    };
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout (plain FUTEX_WAIT's is
    // relative); a full bitset matches every waker.
    const OP: usize = (libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG) as usize;
    // SAFETY: `word` is a live aligned atomic; `ts` is a valid timespec; bitset all ones.
    let r = unsafe {
        syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            OP,
            expected as usize,
            &ts as *const libc::timespec as usize,
            0,
            u32::MAX as usize,
        )
    };
    r == -(libc::ETIMEDOUT as isize)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and timespec; through the vDSO, no errno on success.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
