//! Stacks for vcore context and uthreads: `mmap`ed, guarded, lazily committed, pooled.
//!
//! ```text
//!   base                base + guard                              base + len = top
//!   | guard (PROT_NONE) | usable, committed page by page on first touch ... |
//!   ^ an overflow faults here, and the fault is reported against the stack's owner
//! ```
//!
//! Freed stacks go back to a small pool instead of to the kernel: `mmap` plus
//! `mprotect` cost two system calls and a fresh stack costs page faults, while a pooled
//! stack is already mapped and warm.

use core::num::NonZeroUsize;
use core::ptr::NonNull;

use nix::sys::mman::{self, MapFlags, ProtFlags};

use crate::error::Error;
use crate::spin::PdrSpinLock;

/// Default usable size of a uthread or vcore stack. Pages are committed only when
/// touched, so a larger reservation costs address space, not memory; 256 KiB leaves room
/// for Rust's panic and formatting machinery (tens of KiB) in debug builds.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Guard below every stack: one page, like glibc's default `guardsize`. Rust code probes
/// frames larger than a page, so it cannot jump over it.
fn guard_size() -> usize {
    page_size()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// How many freed stacks the pool keeps; more go back to the kernel. Enough to absorb
/// the churn of short-lived uthreads on every vcore without pinning much memory.
const POOL_MAX: usize = 64;

/// PDR: uthreads allocate stacks (spawning) while vcore context frees them (cleanup).
static POOL: PdrSpinLock<Vec<(usize, usize)>> = PdrSpinLock::new(Vec::new());

/// A stack: owned (mapped by us, returned to the pool on drop) or borrowed (memory a
/// caller provided, which we never free).
#[derive(Debug)]
pub struct Stack {
    /// Lowest address of the mapping (the guard page, for owned stacks).
    base: usize,
    /// Length of the mapping including the guard.
    len: usize,
    /// Length of the guard at `base` (0 for borrowed stacks).
    guard: usize,
    owned: bool,
    /// Bytes below the top where contexts start (cache colouring; 0 by default).
    start_offset: usize,
}

impl Stack {
    /// A guarded stack with at least `size` usable bytes, from the pool if one fits.
    ///
    /// # Errors
    /// [`Error::StackTooLarge`] (`EINVAL`) or [`Error::Os`] (`ENOMEM`) for a size that
    /// cannot be mapped (see [`Stack::mapping_len`]); [`Error::Os`] if the kernel refuses
    /// the mapping.
    pub fn new(size: usize) -> Result<Stack, Error> {
        let guard = guard_size();
        let len = Stack::mapping_len(size)?;
        let pooled = {
            let mut pool = POOL.lock();
            let i = pool.iter().position(|&(_, l)| l == len);
            i.map(|i| pool.swap_remove(i))
        };
        if let Some((base, len)) = pooled {
            return Ok(Stack { base, len, guard, owned: true, start_offset: 0 });
        }
        let nonzero = NonZeroUsize::new(len).expect("a stack mapping holds at least a guard and a page");
        // SAFETY: a fresh anonymous private mapping where the kernel chooses, so it
        // overlaps nothing; MAP_NORESERVE lets unused pages cost nothing.
        let p = unsafe {
            mman::mmap_anonymous(
                None,
                nonzero,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_STACK,
            )
        }
        .map_err(|e| Error::os("mmap (stack)", e))?;
        // SAFETY: the first `guard` bytes of the mapping we just made, which nobody else knows.
        if let Err(e) = unsafe { mman::mprotect(p, guard, ProtFlags::PROT_NONE) } {
            // SAFETY: as above.
            let _ = unsafe { mman::munmap(p, len) };
            return Err(Error::os("mprotect (stack guard)", e));
        }
        Ok(Stack { base: p.as_ptr() as usize, len, guard, owned: true, start_offset: 0 })
    }

    /// Length of the mapping [`Stack::new`] makes for `size` usable bytes: `size` plus the
    /// guard page, rounded up to whole pages (at least one usable page).
    ///
    /// The checks come in glibc's order (`allocate_stack`, 2.36), so that upthread fails
    /// where `pthread_create` does: a size whose sum with the guard wraps around is
    /// [`Error::StackTooLarge`] (`EINVAL`); a sum that only wraps when rounded up to a page
    /// is a length no mapping can have, `ENOMEM`, as the kernel answers for one.
    pub fn mapping_len(size: usize) -> Result<usize, Error> {
        let page = page_size();
        size.max(page)
            .checked_add(guard_size())
            .ok_or(Error::StackTooLarge { size })?
            .checked_next_multiple_of(page)
            .ok_or(Error::Os { what: "mmap (stack)", errno: libc::ENOMEM })
    }

    /// A stack of the default size.
    pub fn with_default_size() -> Result<Stack, Error> {
        Stack::new(DEFAULT_STACK_SIZE)
    }

    /// Wraps caller-provided memory `[lo, lo + size)` as a stack. It has no guard page
    /// of ours and is never freed by us.
    ///
    /// # Safety
    /// The memory must be writable, unused by anything else, and outlive every context
    /// that runs on it.
    pub unsafe fn from_raw(lo: *mut u8, size: usize) -> Stack {
        Stack { base: lo as usize, len: size, guard: 0, owned: false, start_offset: 0 }
    }

    /// The 16-byte-aligned top, where a context starts: [`set_start_offset`] bytes below
    /// the end of the stack.
    ///
    /// [`set_start_offset`]: Stack::set_start_offset
    #[inline]
    pub fn top(&self) -> usize {
        (self.base + self.len - self.start_offset) & !15
    }

    /// Makes contexts start `offset` bytes below the end of the stack. Schedulers use it
    /// for cache colouring: identical uthreads whose stacks all start at the same page
    /// offset put their hottest frames in the same cache sets.
    ///
    /// # Panics
    /// If `offset` exceeds a quarter of the usable size: that much would be taken from
    /// the uthread's stack for colouring.
    pub fn set_start_offset(&mut self, offset: usize) {
        assert!(
            offset <= self.size() / 4,
            "Stack::set_start_offset: {offset} bytes is more than a quarter of a {}-byte stack",
            self.size()
        );
        self.start_offset = offset;
    }

    /// Lowest usable address.
    #[inline]
    pub fn bottom(&self) -> usize {
        self.base + self.guard
    }

    /// Usable bytes.
    pub fn size(&self) -> usize {
        self.len - self.guard
    }

    /// The guard page's address range (empty for borrowed stacks).
    pub fn guard_range(&self) -> core::ops::Range<usize> {
        self.base..self.base + self.guard
    }

    /// Whether `addr` lies in the usable part of this stack.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        (self.bottom()..self.base + self.len).contains(&addr)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let mut pool = POOL.lock();
        if pool.len() < POOL_MAX {
            pool.push((self.base, self.len));
            return;
        }
        drop(pool);
        let base = NonNull::new(self.base as *mut core::ffi::c_void).expect("an owned stack is mapped");
        // SAFETY: an owned stack is a mapping we made, and dropping it means no context
        // runs on it any more. Unmapping a whole mapping of ours cannot fail.
        let _ = unsafe { mman::munmap(base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_offset_moves_the_top_down_and_keeps_it_aligned() {
        let mut s = Stack::new(64 * 1024).unwrap();
        let end = s.top();
        s.set_start_offset(1000);
        assert_eq!(s.top() % 16, 0);
        assert!(s.top() <= end - 1000 && s.top() > end - 1000 - 16, "top {:#x}, end {end:#x}", s.top());
        assert!(s.contains(s.top() - 8));
    }

    #[test]
    fn a_size_that_wraps_with_the_guard_page_is_einval_not_a_tiny_stack() {
        // Before the checked arithmetic, release builds wrapped these to a stack of zero
        // usable pages (its thread faulted in the guard), and debug builds panicked.
        let page = page_size();
        for size in [usize::MAX, usize::MAX - 1, usize::MAX - page + 1] {
            let e = Stack::new(size).expect_err("a size that wraps around");
            assert_eq!(e, Error::StackTooLarge { size }, "size {size:#x}");
            assert_eq!(e.errno(), libc::EINVAL);
        }
    }

    #[test]
    fn a_size_too_large_to_map_is_enomem_not_a_tiny_stack() {
        let page = page_size();
        // The first two only wrap when rounded up to a page; the others fit in a usize
        // but exceed any user address space (47 or 56 bits).
        for size in
            [usize::MAX - page, usize::MAX - 2 * page + 1, usize::MAX - 2 * page, usize::MAX / 2 + 1, 1 << 60]
        {
            match Stack::new(size) {
                Err(e) => assert_eq!(e.errno(), libc::ENOMEM, "size {size:#x}: {e}"),
                Ok(s) => panic!("size {size:#x} gave a stack of {:#x} usable bytes", s.size()),
            }
        }
    }

    #[test]
    fn every_stack_has_at_least_the_size_asked_for_in_whole_pages_above_one_guard_page() {
        let page = page_size();
        for size in [0, 1, page - 1, page, page + 1, 3 * page + 5, 64 * 1024] {
            let s = Stack::new(size).unwrap();
            assert!(
                s.size() >= size.max(page) && s.size() < size.max(page) + page,
                "size {size}: {}",
                s.size()
            );
            assert_eq!(s.size() % page, 0);
            assert_eq!(s.guard_range().len(), page);
            assert_eq!(Stack::mapping_len(size).unwrap(), s.size() + page);
        }
    }

    #[test]
    #[should_panic(expected = "more than a quarter")]
    fn a_start_offset_beyond_a_quarter_of_the_stack_is_refused() {
        let mut s = Stack::new(16 * 1024).unwrap();
        s.set_start_offset(s.size() / 4 + 16);
    }
}
