//! Deferred cancellation (in progress).

/// A cancellation point: blocking calls of the C API call this before they block and
/// after they wake. (Filled in by the cancellation work; until then it does nothing.)
pub(crate) fn cancellation_point() {}
