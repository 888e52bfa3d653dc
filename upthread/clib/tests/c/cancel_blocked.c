/* A cancellation request ends a wait that nothing else would end. Each thread blocks
 * where POSIX puts a cancellation point (a condition wait, a semaphore wait, a read from
 * an empty pipe, a join of a thread that never exits) and nobody ever wakes it: only
 * acting on pthread_cancel lets pthread_join return, with PTHREAD_CANCELED, after the
 * thread's cleanup handler ran. (Main cannot tell "about to block" from "blocked", so
 * the request may also be acted upon on entry; either way the wait must end.) */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"

static pthread_barrier_t ready;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_signalled = PTHREAD_COND_INITIALIZER;
static sem_t never_posted;
static int empty_pipe[2];
static pthread_t sleeper;
static int handler_ran;

static void wait_at(pthread_barrier_t *b) {
    int rc = pthread_barrier_wait(b);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
}

static void mark(void *arg) {
    (void)arg;
    handler_ran = 1;
}

static void unlock_and_mark(void *m) {
    CHECK_OK(pthread_mutex_unlock(m));
    handler_ran = 1;
}

static void *in_cond_wait(void *arg) {
    (void)arg;
    CHECK_OK(pthread_mutex_lock(&lock));
    pthread_cleanup_push(unlock_and_mark, &lock);
    wait_at(&ready);
    for (;;)
        CHECK_OK(pthread_cond_wait(&never_signalled, &lock));
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_sem_wait(void *arg) {
    (void)arg;
    pthread_cleanup_push(mark, NULL);
    wait_at(&ready);
    for (;;)
        CHECK(sem_wait(&never_posted) == 0, "sem_wait: %s", strerror(errno));
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_read(void *arg) {
    (void)arg;
    pthread_cleanup_push(mark, NULL);
    wait_at(&ready);
    char c;
    ssize_t n = read(empty_pipe[0], &c, 1);
    CHECK(0, "read from a pipe nobody writes returned %zd", n);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *sleep_forever(void *arg) {
    (void)arg;
    for (;;)
        sleep(3600);
    return NULL;
}

static void *in_join(void *arg) {
    (void)arg;
    pthread_cleanup_push(mark, NULL);
    wait_at(&ready);
    CHECK_OK(pthread_join(sleeper, NULL));
    CHECK(0, "joined a thread that never exits");
    pthread_cleanup_pop(0);
    return NULL;
}

static void cancel_while_blocked(const char *where, void *(*fn)(void *)) {
    pthread_t t;
    handler_ran = 0;
    CHECK_OK(pthread_create(&t, NULL, fn, NULL));
    wait_at(&ready);
    CHECK_OK(pthread_cancel(t));
    void *result;
    CHECK_OK(pthread_join(t, &result));
    CHECK(result == PTHREAD_CANCELED, "%s: the thread was not cancelled", where);
    CHECK(handler_ran, "%s: the cleanup handler did not run", where);
    printf("blocked in %s: cancelled, cleanup handler ran\n", where);
}

int main(void) {
    CHECK_OK(pthread_barrier_init(&ready, NULL, 2));
    CHECK(sem_init(&never_posted, 0, 0) == 0, "sem_init: %s", strerror(errno));
    CHECK(pipe(empty_pipe) == 0, "pipe: %s", strerror(errno));
    CHECK_OK(pthread_create(&sleeper, NULL, sleep_forever, NULL));

    cancel_while_blocked("pthread_cond_wait", in_cond_wait);
    CHECK(pthread_mutex_trylock(&lock) == 0, "the cancelled waiter left the mutex locked");
    CHECK_OK(pthread_mutex_unlock(&lock));
    cancel_while_blocked("sem_wait", in_sem_wait);
    cancel_while_blocked("read", in_read);
    cancel_while_blocked("pthread_join", in_join);
    return 0; /* the sleeper dies with the process */
}
