//! The cancellation check that the wrappers under the libc names (`interpose`) call at
//! each POSIX cancellation point. It lives apart from them so that a layer above can
//! install its check whether or not the `interpose` feature is on (off, nothing calls it).

use crossbeam_utils::atomic::AtomicCell;

/// The cancellation check of the layer above, if one installed it.
static CANCELLATION_POINT: AtomicCell<Option<fn()>> = AtomicCell::new(None);
const _: () = assert!(AtomicCell::<Option<fn()>>::is_lock_free());

/// Installs `check` as what every cancellation point of these wrappers calls (module
/// docs): it acts on a pending cancellation request of the calling thread, if any (never
/// returning then). The first call wins; returns whether this one did.
pub fn set_cancellation_point(check: fn()) -> bool {
    CANCELLATION_POINT.compare_exchange(None, Some(check)).is_ok()
}

/// Acts on a pending cancellation request of the calling thread, through the installed
/// check; nothing if none is installed.
#[inline]
#[cfg_attr(not(feature = "interpose"), allow(dead_code))]
pub(crate) fn cancellation_point() {
    if let Some(check) = CANCELLATION_POINT.load() {
        check();
    }
}
