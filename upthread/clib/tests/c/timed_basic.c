/* parlib-timed's C API through libupthread: a call that completes, a spinning call
 * preempted and resumed to the exact value of an unpreempted run, pause, cancel (of a
 * call that ignores it, one that polls for it, and one that is paused), no-preempt
 * sections, nesting, the handle's own checks, and misuse. Prints one line per group of
 * checks; a failed check names itself on stderr and exits 1. There is no glibc build
 * of it: the API is parlib's own. */
#include <parlib_timed.h>
#include <pthread.h>
#include <stdint.h>

#include "check.h"

/* A budget small enough that a computation of tens of milliseconds is preempted many
 * times. */
#define SLICE_US 200
/* A budget no call here comes near: a second. */
#define AMPLE_US 1000000
/* Enough steps for tens of milliseconds of hashing at -O2, so that a SLICE_US budget
 * always runs out first. */
#define STEPS 40000000u

/* Each step depends on the one before, so the chain cannot be shortened or
 * parallelised, and its value shows that no step was lost or repeated when the
 * computation was preempted and resumed. */
static uint64_t hash_chain(uint64_t steps) {
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15);
    for (uint64_t i = 0; i < steps; i++) {
        h = (h ^ i) * UINT64_C(0x100000001b3);
        h = (h << 7) | (h >> 57);
    }
    return h;
}

struct chain {
    uint64_t steps;
    uint64_t value;
};

static void *chain_fn(void *arg) {
    struct chain *c = arg;
    c->value = hash_chain(c->steps);
    return c;
}

static int in_call_inside;

static void *add_one(void *arg) {
    in_call_inside = parlib_timed_in_call();
    return (char *)arg + 1;
}

/* Resumes c with SLICE_US budgets until it completes; returns how many resumes it took. */
static unsigned long drive(parlib_timed_call_t *c) {
    unsigned long resumes = 0;
    while (!parlib_timed_is_complete(c)) {
        int st = parlib_timed_status(c);
        CHECK(st == PARLIB_TIMED_TIMED_OUT, "a suspended call's status is %d", st);
        CHECK_OK(parlib_timed_resume(c, SLICE_US));
        resumes++;
    }
    return resumes;
}

static void completes(void) {
    static char base[2];
    parlib_timed_call_t *c = NULL;
    CHECK_OK(parlib_timed_launch(&c, add_one, base, AMPLE_US));
    CHECK(c != NULL, "no handle");
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_COMPLETED, "status %d", parlib_timed_status(c));
    CHECK(parlib_timed_is_complete(c) == 1, "not complete");
    void *v = NULL;
    CHECK_OK(parlib_timed_result(c, &v));
    CHECK(v == base + 1, "result %p, expected %p", v, (void *)(base + 1));
    CHECK(in_call_inside == 1, "parlib_timed_in_call() inside the call is %d", in_call_inside);
    CHECK(parlib_timed_in_call() == 0, "parlib_timed_in_call() outside calls is 1");
    int how = -1;
    CHECK_OK(parlib_timed_cancel(c, &how));
    CHECK(how == PARLIB_TIMED_CANCEL_NONE, "freeing a completed call says %d", how);
    printf("a call that completes returns its value\n");
}

static void times_out_and_resumes(void) {
    uint64_t expect = hash_chain(STEPS);
    struct chain job = {STEPS, 0};
    parlib_timed_call_t *c = NULL;
    CHECK_OK(parlib_timed_launch(&c, chain_fn, &job, SLICE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_TIMED_OUT, "a %u-step chain with a %d us budget: status %d",
          STEPS, SLICE_US, parlib_timed_status(c));
    void *v = NULL;
    CHECK(parlib_timed_result(c, &v) == EAGAIN, "result of a suspended call is not EAGAIN");
    unsigned long resumes = drive(c);
    CHECK(resumes >= 1, "no resume was needed");
    CHECK_OK(parlib_timed_result(c, &v));
    CHECK(v == &job, "result %p, expected %p", v, (void *)&job);
    CHECK(job.value == expect, "preempted chain gives %llx, unpreempted %llx", (unsigned long long)job.value,
          (unsigned long long)expect);
    CHECK_OK(parlib_timed_cancel(c, NULL));
    printf("a spinning call times out, and resumed to completion gives the unpreempted value\n");
}

static int pause_rc = 99;
static int pause_stage;

static void *pausing(void *arg) {
    pause_stage = 1;
    pause_rc = parlib_timed_pause();
    pause_stage = 2;
    return arg;
}

static void pauses(void) {
    static char token;
    CHECK(parlib_timed_pause() == 0, "pause outside a call did not return 0");
    parlib_timed_call_t *c = NULL;
    pause_rc = 99;
    pause_stage = 0;
    CHECK_OK(parlib_timed_launch(&c, pausing, &token, AMPLE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_PAUSED, "status after a pause: %d", parlib_timed_status(c));
    CHECK(pause_stage == 1, "stage %d at the pause", pause_stage);
    CHECK_OK(parlib_timed_resume(c, AMPLE_US));
    CHECK(parlib_timed_is_complete(c), "not complete after the resume");
    CHECK(pause_rc == 1, "pause returned %d after the resume", pause_rc);
    CHECK(pause_stage == 2, "stage %d at the end", pause_stage);
    void *v = NULL;
    CHECK_OK(parlib_timed_result(c, &v));
    CHECK(v == &token, "result %p", v);
    CHECK_OK(parlib_timed_cancel(c, NULL));
    printf("a call pauses and is resumed\n");
}

static volatile int never;
static unsigned long spins;

static void *spin_forever(void *arg) {
    while (!never)
        spins++;
    return arg;
}

static int cancel_seen;

static void *spin_until_cancelled(void *arg) {
    while (!parlib_timed_cancelling())
        spins++;
    cancel_seen = 1;
    return arg;
}

static void cancels(void) {
    parlib_timed_call_t *c = NULL;
    int how = -1;

    /* A call that never reaches a cancellation point is abandoned, and the cancel
     * returns. */
    CHECK_OK(parlib_timed_launch(&c, spin_forever, NULL, SLICE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_TIMED_OUT, "status %d", parlib_timed_status(c));
    CHECK_OK(parlib_timed_cancel(c, &how));
    CHECK(how == PARLIB_TIMED_CANCEL_ABANDONED, "cancel of a spinning call says %d", how);

    /* One that polls parlib_timed_cancelling returns. */
    c = NULL;
    how = -1;
    CHECK_OK(parlib_timed_launch(&c, spin_until_cancelled, NULL, SLICE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_TIMED_OUT, "status %d", parlib_timed_status(c));
    CHECK(cancel_seen == 0, "the call saw a cancel before one was made");
    CHECK_OK(parlib_timed_cancel_within(c, AMPLE_US, &how));
    CHECK(how == PARLIB_TIMED_CANCEL_RETURNED, "cancel of a polling call says %d", how);
    CHECK(cancel_seen == 1, "the call did not see the cancel");

    /* A paused one is told by its pause, and returns. */
    c = NULL;
    how = -1;
    pause_rc = 99;
    CHECK_OK(parlib_timed_launch(&c, pausing, NULL, AMPLE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_PAUSED, "status %d", parlib_timed_status(c));
    CHECK_OK(parlib_timed_cancel_within(c, AMPLE_US, &how));
    CHECK(how == PARLIB_TIMED_CANCEL_RETURNED, "cancel of a paused call says %d", how);
    CHECK(pause_rc == PARLIB_TIMED_CANCELLING, "pause returned %d to a cancelled call", pause_rc);
    printf("cancels return and free: abandoned, returned when polled, returned when paused\n");
}

static volatile int section_done;
static int section_end_rc = 99;
static int nested_end_rc = 99;
static int unbalanced_end_rc = 99;

static void *guarded(void *arg) {
    struct chain *j = arg;
    if (parlib_timed_no_preempt_begin() != 0 || parlib_timed_no_preempt_begin() != 0)
        return NULL;
    j->value = hash_chain(j->steps);
    nested_end_rc = parlib_timed_no_preempt_end();
    section_done = 1;
    section_end_rc = parlib_timed_no_preempt_end();
    unbalanced_end_rc = parlib_timed_no_preempt_end();
    j->value ^= hash_chain(j->steps);
    return j;
}

static void no_preempt_sections(void) {
    CHECK(parlib_timed_no_preempt_begin() == 0, "begin outside a call");
    CHECK(parlib_timed_no_preempt_end() == 0, "end outside a call");
    struct chain job = {STEPS, 0};
    parlib_timed_call_t *c = NULL;
    section_done = 0;
    CHECK_OK(parlib_timed_launch(&c, guarded, &job, SLICE_US));
    /* A preemption due inside the section waits for its end. */
    CHECK(parlib_timed_is_complete(c) || section_done, "the call was preempted inside its no-preempt section");
    drive(c);
    void *v = NULL;
    CHECK_OK(parlib_timed_result(c, &v));
    CHECK(v == &job, "the call could not begin its sections (result %p)", v);
    CHECK(job.value == 0, "the value is not the chain xor itself");
    CHECK(nested_end_rc == 0, "the inner section's end returned %d", nested_end_rc);
    CHECK(section_end_rc == 0, "the outer section's end returned %d", section_end_rc);
    CHECK(unbalanced_end_rc == EPERM, "an end without a section returned %d", unbalanced_end_rc);
    CHECK_OK(parlib_timed_cancel(c, NULL));
    printf("no preemption inside a no-preempt section; an unbalanced end is EPERM\n");
}

static void *launch_inner(void *arg) {
    parlib_timed_call_t *inner = NULL;
    void *v = NULL;
    if (parlib_timed_launch(&inner, add_one, arg, AMPLE_US) != 0 || parlib_timed_result(inner, &v) != 0)
        v = NULL;
    parlib_timed_cancel(inner, NULL);
    return v;
}

static void nests(void) {
    static char base[2];
    parlib_timed_call_t *c = NULL;
    CHECK_OK(parlib_timed_launch(&c, launch_inner, base, AMPLE_US));
    void *v = NULL;
    CHECK_OK(parlib_timed_result(c, &v));
    CHECK(v == base + 1, "a call launched in a call gave %p", v);
    CHECK_OK(parlib_timed_cancel(c, NULL));
    printf("a call launches a call\n");
}

static parlib_timed_call_t *self_handle;
static int self_status, self_resume, self_cancel;

static void *inspect_self(void *arg) {
    parlib_timed_pause();
    self_status = parlib_timed_status(self_handle);
    self_resume = parlib_timed_resume(self_handle, AMPLE_US);
    self_cancel = parlib_timed_cancel(self_handle, NULL);
    return arg;
}

static void *resume_elsewhere(void *arg) {
    static int rcs[2];
    rcs[0] = parlib_timed_resume(arg, AMPLE_US);
    rcs[1] = parlib_timed_cancel(arg, NULL);
    return rcs;
}

static void handle_checks(void) {
    parlib_timed_call_t *c = NULL;
    CHECK_OK(parlib_timed_launch(&c, inspect_self, NULL, AMPLE_US));
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_PAUSED, "status %d", parlib_timed_status(c));

    /* Another thread may not touch it. */
    pthread_t t;
    void *rv = NULL;
    CHECK_OK(pthread_create(&t, NULL, resume_elsewhere, c));
    CHECK_OK(pthread_join(t, &rv));
    int *rcs = rv;
    CHECK(rcs[0] == EPERM, "resume on another thread returned %d", rcs[0]);
    CHECK(rcs[1] == EPERM, "cancel on another thread returned %d", rcs[1]);
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_PAUSED, "status %d after the other thread", parlib_timed_status(c));

    /* Nor the call itself, while it runs. */
    self_handle = c;
    CHECK_OK(parlib_timed_resume(c, AMPLE_US));
    CHECK(parlib_timed_is_complete(c), "not complete");
    CHECK(self_status == PARLIB_TIMED_RUNNING, "status from inside: %d", self_status);
    CHECK(self_resume == EBUSY, "resume from inside returned %d", self_resume);
    CHECK(self_cancel == EBUSY, "cancel from inside returned %d", self_cancel);
    CHECK_OK(parlib_timed_cancel(c, NULL));
    printf("a handle is refused to other threads and to its own call\n");
}

static void misuse(void) {
    static char base[2];
    parlib_timed_call_t *c = (parlib_timed_call_t *)base;
    CHECK(parlib_timed_launch(NULL, add_one, base, AMPLE_US) == EINVAL, "null out");
    CHECK(parlib_timed_launch(&c, NULL, base, AMPLE_US) == EINVAL, "null fn");
    CHECK(c == NULL, "a failed launch left *out set");
    CHECK(parlib_timed_launch(&c, add_one, base, 0) == EINVAL, "zero budget");
    CHECK(parlib_timed_launch(&c, add_one, base, PARLIB_TIMED_MAX_BUDGET_US + 1) == EINVAL, "budget over the maximum");

    CHECK_OK(parlib_timed_launch(&c, add_one, base, PARLIB_TIMED_MAX_BUDGET_US));
    CHECK(parlib_timed_resume(c, AMPLE_US) == EINVAL, "resume of a completed call");
    CHECK(parlib_timed_result(c, NULL) == EINVAL, "null value pointer");
    CHECK_OK(parlib_timed_cancel(c, NULL));

    /* A suspended call survives a resume with a bad budget. */
    CHECK_OK(parlib_timed_launch(&c, pausing, NULL, AMPLE_US));
    CHECK(parlib_timed_resume(c, 0) == EINVAL, "resume with a zero budget");
    CHECK(parlib_timed_resume(c, PARLIB_TIMED_MAX_BUDGET_US + 1) == EINVAL, "resume with a budget over the maximum");
    CHECK(parlib_timed_status(c) == PARLIB_TIMED_PAUSED, "status %d after refused resumes", parlib_timed_status(c));
    CHECK_OK(parlib_timed_resume(c, AMPLE_US));
    CHECK(parlib_timed_is_complete(c), "not complete");
    CHECK_OK(parlib_timed_cancel(c, NULL));

    void *v;
    CHECK(parlib_timed_resume(NULL, AMPLE_US) == EINVAL, "resume of NULL");
    CHECK(parlib_timed_result(NULL, &v) == EINVAL, "result of NULL");
    CHECK(parlib_timed_cancel(NULL, NULL) == EINVAL, "cancel of NULL");
    CHECK(parlib_timed_status(NULL) == 0, "status of NULL");
    CHECK(parlib_timed_is_complete(NULL) == 0, "is_complete of NULL");
    printf("misuse is EINVAL: null pointers, bad budgets, resuming a completed call\n");
}

int main(void) {
    completes();
    times_out_and_resumes();
    pauses();
    cancels();
    no_preempt_sections();
    nests();
    handle_checks();
    misuse();
    return 0;
}
