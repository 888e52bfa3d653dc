//! `libupthread.so` / `libupthread.a` (in progress).
