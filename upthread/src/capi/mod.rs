//! The pthread-shaped C functions over `parlib-sync` (in progress).
