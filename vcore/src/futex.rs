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
