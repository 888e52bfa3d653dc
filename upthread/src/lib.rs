//! # parlib-upthread: the canonical scheduler and a pthread-compatible API
//!
//! The top layer of parlib-rs (`DESIGN.md` §9). (Crate docs: to be written as the map of
//! this crate once its modules land.)

#![warn(missing_docs)]

pub mod attr;
pub mod cancel;
pub mod capi;
pub mod env;
pub mod keys;
pub mod sched;
pub mod signal;
pub mod spawn;
pub mod thread;
