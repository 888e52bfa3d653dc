/* Deferred cancellation and cleanup handlers. Each case records what its handlers did in
 * a log, and main prints the log, so the output is the order in which things happened.
 *   A  cancelled at pthread_testcancel: nested handlers run innermost first.
 *   B  cancelled in pthread_cond_wait: the mutex is re-acquired before the handler
 *      runs, and the handler's unlock leaves it free. Main also signals the condition
 *      after cancelling, so an implementation that acts on the request only when the
 *      wait ends passes too; cancel_blocked.c checks that a request ends a wait that
 *      nothing else would end.
 *   C  a request made while cancellation is disabled waits until it is enabled again.
 *   D  usleep is a cancellation point.
 *   E  read is a cancellation point (acted upon on entry: the data stays unread).
 *   F  pthread_cleanup_pop(1) runs the handler, pop(0) does not, and no cancellation
 *      means the thread's own return value.
 *   G  pthread_exit runs the handlers too. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[256];

static void note(const char *what) {
    CHECK_OK(pthread_mutex_lock(&log_lock));
    if (log_buf[0])
        strcat(log_buf, " ");
    strcat(log_buf, what);
    CHECK_OK(pthread_mutex_unlock(&log_lock));
}

static void note_handler(void *tag) { note(tag); }

static pthread_barrier_t ready, cancelled;

static void wait_at(pthread_barrier_t *b) {
    int rc = pthread_barrier_wait(b);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
}

static void *case_a(void *arg) {
    (void)arg;
    pthread_cleanup_push(note_handler, "outer");
    pthread_cleanup_push(note_handler, "inner");
    wait_at(&ready);
    for (;;) {
        pthread_testcancel();
        sched_yield();
    }
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;
}

static pthread_mutex_t b_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t b_cv = PTHREAD_COND_INITIALIZER;
static int b_waiting;

static void b_unlock(void *m) {
    /* A waiter cancelled in pthread_cond_wait owns the mutex again when this runs. */
    note("unlock");
    CHECK_OK(pthread_mutex_unlock(m));
}

static void *case_b(void *arg) {
    (void)arg;
    CHECK_OK(pthread_mutex_lock(&b_lock));
    pthread_cleanup_push(b_unlock, &b_lock);
    b_waiting = 1;
    for (;;)
        CHECK_OK(pthread_cond_wait(&b_cv, &b_lock));
    pthread_cleanup_pop(1);
    return NULL;
}

static void *case_c(void *arg) {
    (void)arg;
    int old;
    CHECK_OK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old));
    CHECK(old == PTHREAD_CANCEL_ENABLE, "cancellation is not enabled in a new thread");
    pthread_cleanup_push(note_handler, "handler");
    wait_at(&ready);
    wait_at(&cancelled);
    pthread_testcancel(); /* disabled: not acted upon */
    note("still-running");
    CHECK_OK(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old));
    CHECK(old == PTHREAD_CANCEL_DISABLE, "setcancelstate did not report the disabled state");
    note("enabled");
    pthread_testcancel();
    note("not-cancelled");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *case_d(void *arg) {
    (void)arg;
    pthread_cleanup_push(note_handler, "handler");
    wait_at(&ready);
    for (;;)
        usleep(1000);
    pthread_cleanup_pop(0);
    return NULL;
}

static int e_pipe[2];

static void *case_e(void *arg) {
    (void)arg;
    int old;
    CHECK_OK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old));
    pthread_cleanup_push(note_handler, "handler");
    wait_at(&ready);
    wait_at(&cancelled);
    CHECK_OK(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old));
    char c;
    ssize_t n = read(e_pipe[0], &c, 1); /* data is there, but the request comes first */
    note(n == 1 ? "read-returned" : "read-failed");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *case_f(void *arg) {
    (void)arg;
    int type;
    CHECK_OK(pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &type));
    CHECK(type == PTHREAD_CANCEL_DEFERRED, "cancellation is not deferred in a new thread");
    pthread_cleanup_push(note_handler, "popped-and-run");
    pthread_cleanup_push(note_handler, "popped-not-run");
    note("body");
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(1);
    return (void *)7L;
}

static void *case_g(void *arg) {
    (void)arg;
    pthread_cleanup_push(note_handler, "handler");
    note("exiting");
    pthread_exit((void *)42L);
    pthread_cleanup_pop(0);
    return NULL;
}

static const char *result_name(void *r) {
    static char buf[32];
    if (r == PTHREAD_CANCELED)
        return "PTHREAD_CANCELED";
    snprintf(buf, sizeof buf, "%ld", (long)r);
    return buf;
}

/* Runs one case: start it, let it reach its ready point if it has one, cancel it (or
 * not), join, and print what it logged. */
static void run(const char *name, void *(*fn)(void *), int has_ready, int has_cancelled, int cancel,
                const char *expected_log, void *expected_result) {
    pthread_t t;
    log_buf[0] = 0;
    CHECK_OK(pthread_create(&t, NULL, fn, NULL));
    if (has_ready)
        wait_at(&ready);
    if (fn == case_b) {
        /* Once main holds the mutex with b_waiting set, the thread is inside cond_wait. */
        for (;;) {
            CHECK_OK(pthread_mutex_lock(&b_lock));
            if (b_waiting)
                break;
            CHECK_OK(pthread_mutex_unlock(&b_lock));
            sched_yield();
        }
    }
    if (cancel)
        CHECK_OK(pthread_cancel(t));
    if (fn == case_b) {
        CHECK_OK(pthread_cond_signal(&b_cv));
        CHECK_OK(pthread_mutex_unlock(&b_lock));
    }
    if (has_cancelled)
        wait_at(&cancelled);
    void *result;
    CHECK_OK(pthread_join(t, &result));
    CHECK(strcmp(log_buf, expected_log) == 0, "case %s logged \"%s\", expected \"%s\"", name, log_buf,
          expected_log);
    CHECK(result == expected_result, "case %s returned %s", name, result_name(result));
    printf("case %s: %s -> %s\n", name, log_buf, result_name(result));
}

int main(void) {
    CHECK_OK(pthread_barrier_init(&ready, NULL, 2));
    CHECK_OK(pthread_barrier_init(&cancelled, NULL, 2));
    CHECK(pipe(e_pipe) == 0, "pipe: %s", strerror(errno));
    CHECK(write(e_pipe[1], "x", 1) == 1, "write to pipe: %s", strerror(errno));

    run("A", case_a, 1, 0, 1, "inner outer", PTHREAD_CANCELED);
    run("B", case_b, 0, 0, 1, "unlock", PTHREAD_CANCELED);
    CHECK(pthread_mutex_trylock(&b_lock) == 0, "case B left the mutex locked");
    CHECK_OK(pthread_mutex_unlock(&b_lock));
    run("C", case_c, 1, 1, 1, "still-running enabled handler", PTHREAD_CANCELED);
    run("D", case_d, 1, 0, 1, "handler", PTHREAD_CANCELED);
    run("E", case_e, 1, 1, 1, "handler", PTHREAD_CANCELED);
    char c;
    CHECK(read(e_pipe[0], &c, 1) == 1 && c == 'x', "case E consumed the pipe's byte");
    run("F", case_f, 0, 0, 0, "body popped-and-run", (void *)7L);
    run("G", case_g, 0, 0, 0, "exiting handler", (void *)42L);

    CHECK_OK(pthread_barrier_destroy(&ready));
    CHECK_OK(pthread_barrier_destroy(&cancelled));
    return 0;
}
