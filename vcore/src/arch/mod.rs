//! Machine-dependent code: context switch, FS/GS base, raw system calls.
//!
//! This module is the only place in parlib-rs that contains assembly. Each supported
//! target has one file, selected by the single `cfg` dispatch below; every file exports
//! the same names:
//!
//! | name | what it does |
//! |---|---|
//! | [`Context`] | a suspended context: a saved stack pointer; the registers live on its stack |
//! | [`switch`] | save the running context, resume another |
//! | [`save_and_call`] | save the running context, call a function on a fresh stack |
//! | [`load`] | resume a context, discarding the running one |
//! | [`call_on_stack`] | discard the running context, call a function on a fresh stack |
//! | [`init_context`] | build a context that starts a function on a new stack |
//! | [`fs_base`], [`set_fs_base`] | read / write the TLS base of the running task |
//! | [`gs_base`], [`gs_base_if_cheap`], [`set_gs_base`] | read / write the per-vcore pointer base |
//! | [`syscall6`] | a system call that never touches `errno` |
//! | [`interrupt_trampoline`], [`preempt_trampoline`], [`redirect_to`] | where an interrupted context saves its full state, then enters vcore context or a layer's preemption target |
//! | [`push_call`] | make a suspended context call a function first when resumed |
//! | [`gs_inc_u32`], [`gs_dec_u32`] | per-vcore counters that preemption cannot split |

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("parlib-vcore supports only x86-64 Linux; add a file under vcore/src/arch/ for this target");
