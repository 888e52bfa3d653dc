/* parlib_timed.h: preemptible timed calls for C (parlib-timed's C API).
 *
 * A timed call runs a function synchronously on the calling thread, on a stack of its
 * own, for at most a budget of microseconds. If the budget runs out first, the launch
 * returns anyway and the caller holds a suspended call that it may resume (for another
 * budget) or cancel. Preemption happens only at safe points: never inside libc or the
 * dynamic loader, never inside a no-preempt section.
 *
 *     parlib_timed_call_t *c;
 *     int rc = parlib_timed_launch(&c, fn, arg, 200);
 *     while (rc == 0 && !parlib_timed_is_complete(c))
 *         rc = parlib_timed_resume(c, 200);
 *     void *value;
 *     if (rc == 0)
 *         parlib_timed_result(c, &value);
 *     parlib_timed_cancel(c, NULL);      (frees the handle; NULL is EINVAL, harmless)
 *
 * Conventions:
 * - Functions return 0 or an error number (never errno), unless they say otherwise.
 *   Bad input (null pointers, a null fn, a budget of 0 or over
 *   PARLIB_TIMED_MAX_BUDGET_US) is EINVAL. Launching where no call can run (in vcore
 *   context, in a signal handler, on a uthread without TLS of its own) is EPERM.
 * - A handle belongs to the thread (or uthread) that launched it: resuming or
 *   cancelling a suspended call on another thread is EPERM.
 * - fn must return normally: it must not longjmp out of the call or throw through it.
 * - A cancel cannot unwind C frames. It resumes the call, for a grace period, until it
 *   reaches a cancellation point: there parlib_timed_pause and parlib_timed_no_preempt_end
 *   return PARLIB_TIMED_CANCELLING and parlib_timed_cancelling returns 1, and fn should
 *   return. A call that does not return within the grace period is abandoned: its stack
 *   is reclaimed, whatever it allocated is leaked.
 * - The library catches its own panics at every entry point and returns EIO.
 *
 * Link with libupthread (pkg-config upthread or upthread-static). The handle states
 * and the Rust side are described in parlib-timed's crate docs (timed/src/lib.rs and
 * timed/src/capi.rs); the test timed_header_declares_exactly_what_the_library_exports
 * (upthread/clib/tests/c_programs.rs) checks this list against the library's exports.
 */
#ifndef PARLIB_TIMED_H
#define PARLIB_TIMED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A launched call: opaque, from parlib_timed_launch, freed by parlib_timed_cancel. */
typedef struct parlib_timed_call parlib_timed_call_t;

/* The longest budget accepted: a day (anything longer is a unit mistake). */
#define PARLIB_TIMED_MAX_BUDGET_US UINT64_C(86400000000)

/* What parlib_timed_status says of a handle. */
#define PARLIB_TIMED_COMPLETED 1 /* fn returned: parlib_timed_result has its value */
#define PARLIB_TIMED_TIMED_OUT 2 /* the budget ran out first: resume or cancel it */
#define PARLIB_TIMED_PAUSED 3    /* fn called parlib_timed_pause: resume or cancel it */
#define PARLIB_TIMED_RUNNING 4   /* a resume or cancel of it is running it (seen from inside) */
#define PARLIB_TIMED_FAILED 5    /* a resume failed after taking the call, which cancelled it */

/* What parlib_timed_cancel did (its *how). */
#define PARLIB_TIMED_CANCEL_NONE 0      /* nothing to cancel: COMPLETED or FAILED */
#define PARLIB_TIMED_CANCEL_UNWOUND 1   /* unwound at a cancellation point (Rust code only) */
#define PARLIB_TIMED_CANCEL_RETURNED 2  /* fn returned within the grace period; value dropped */
#define PARLIB_TIMED_CANCEL_PANICKED 3  /* the call panicked while cancelled (Rust code only) */
#define PARLIB_TIMED_CANCEL_ABANDONED 4 /* it did not return in time: stack reclaimed, heap leaked */

/* How long parlib_timed_cancel lets a suspended call run to reach a cancellation point
 * and return before abandoning it. */
#define PARLIB_TIMED_CANCEL_GRACE_US 5000

/* Returned instead of unwinding a call that is being cancelled: return from fn soon. */
#define PARLIB_TIMED_CANCELLING (-1)

/* Runs fn(arg) as a timed call with a budget of budget_us microseconds and stores a
 * handle in *out, whether fn completed or not. Returns 0, EINVAL, EPERM, EIO or the
 * errno of a resource that could not be had (a stack, a timer); on error *out is NULL.
 * Calls nest: fn may launch calls; an inner call stops when its own budget or an
 * enclosing one runs out. */
int parlib_timed_launch(parlib_timed_call_t **out, void *(*fn)(void *), void *arg, uint64_t budget_us);

/* Continues a TIMED_OUT or PAUSED call for at most budget_us more microseconds.
 * Returns 0 (parlib_timed_status says how it stopped); EINVAL for a null c, a bad
 * budget, or a call that is not suspended (COMPLETED, FAILED); EBUSY from inside the
 * call itself; EPERM on another thread or where no call can run. Those leave the call
 * as it was. A resource's errno or EIO: the call was cancelled (FAILED). */
int parlib_timed_resume(parlib_timed_call_t *c, uint64_t budget_us);

/* One of PARLIB_TIMED_COMPLETED ... PARLIB_TIMED_FAILED; 0 for a null c. */
int parlib_timed_status(const parlib_timed_call_t *c);

/* 1 if fn returned, else 0 (also for a null c). */
int parlib_timed_is_complete(const parlib_timed_call_t *c);

/* Stores fn's return value in *value. Returns 0; EINVAL for a null c or value; EAGAIN
 * if the call has not completed. */
int parlib_timed_result(const parlib_timed_call_t *c, void **value);

/* Cancels the call if it is suspended, then frees the handle; *how (if how is not NULL)
 * gets a PARLIB_TIMED_CANCEL_* value; the grace period is PARLIB_TIMED_CANCEL_GRACE_US.
 * Returns 0 (freed); EINVAL for a null c; EBUSY from inside the call itself; EPERM for a
 * suspended call on another thread (these free nothing); EIO after a caught panic
 * (freed, *how is ABANDONED). Also the way to free a completed or failed handle. */
int parlib_timed_cancel(parlib_timed_call_t *c, int *how);

/* parlib_timed_cancel with a grace period of grace_us microseconds (0 abandons a call
 * that was preempted at once; capped at PARLIB_TIMED_MAX_BUDGET_US). */
int parlib_timed_cancel_within(parlib_timed_call_t *c, uint64_t grace_us, int *how);

/* Inside a call: gives up the rest of its budget (its launcher sees PAUSED) and returns
 * 1 once resumed. Returns 0 outside a call (nothing happens), PARLIB_TIMED_CANCELLING if
 * the call is being cancelled (then without pausing), EIO after a caught panic. */
int parlib_timed_pause(void);

/* 1 if the current call, or one enclosing it, is being cancelled: a long loop in fn
 * should test it now and then and return when it is 1. Else 0. */
int parlib_timed_cancelling(void);

/* 1 inside a timed call, else 0. */
int parlib_timed_in_call(void);

/* Starts a section in which the current call is not preempted; sections nest, and each
 * begin needs its end in the same call. Outside a call both do nothing and return 0.
 * begin returns 0, or EOVERFLOW past 2^31 - 1 nested sections. */
int parlib_timed_no_preempt_begin(void);

/* Ends the innermost section. At the end of the outermost one, a preemption that came
 * due meanwhile happens here, and it is a cancellation point. Returns 0;
 * PARLIB_TIMED_CANCELLING if the call is being cancelled (the section is ended anyway);
 * EPERM in a call with no section open; EIO after a caught panic. */
int parlib_timed_no_preempt_end(void);

#ifdef __cplusplus
}
#endif

#endif /* PARLIB_TIMED_H */
