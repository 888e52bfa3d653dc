/* Signals directed at one thread with pthread_kill. Each target thread waits for its own
 * flag; the handler checks that it runs on the thread the signal was sent to (by
 * comparing pthread_self() with the target main recorded) and sets that thread's flag.
 * A thread that blocks the signal with pthread_sigmask must not see it until it unblocks
 * it. SIGUSR2 is used because upthread reserves SIGUSR1. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>

#include "check.h"

#define THREADS 6

static pthread_t target[THREADS];
static volatile sig_atomic_t delivered[THREADS];
static volatile sig_atomic_t wrong_thread;
static volatile sig_atomic_t sent_to_masked;

static void on_sigusr2(int sig) {
    (void)sig;
    pthread_t self = pthread_self();
    for (int i = 0; i < THREADS; i++) {
        if (pthread_equal(self, target[i])) {
            delivered[i]++;
            return;
        }
    }
    /* Not one of the targets: either main (never sent to) or a mix-up. */
    wrong_thread++;
}

static pthread_barrier_t started;

static void wait_at(pthread_barrier_t *b) {
    int rc = pthread_barrier_wait(b);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
}

static void *waiter(void *arg) {
    int id = (int)(long)arg;
    wait_at(&started);
    while (!delivered[id])
        sched_yield();
    return NULL;
}

/* The last thread blocks SIGUSR2 before main sends it, checks that it is not delivered
 * while blocked (yielding so that a delivery would have the chance to happen), then
 * unblocks it and waits for it. */
static void *masked_waiter(void *arg) {
    int id = (int)(long)arg;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK_OK(pthread_sigmask(SIG_BLOCK, &set, &old));
    CHECK(!sigismember(&old, SIGUSR2), "SIGUSR2 blocked in a new thread");
    wait_at(&started);
    while (!sent_to_masked)
        sched_yield();
    for (int y = 0; y < 100; y++)
        sched_yield();
    CHECK(delivered[id] == 0, "a blocked signal was delivered");
    CHECK_OK(pthread_sigmask(SIG_UNBLOCK, &set, NULL));
    while (!delivered[id])
        sched_yield();
    return NULL;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr2;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction: %s", strerror(errno));

    CHECK_OK(pthread_barrier_init(&started, NULL, THREADS + 1));
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&target[i], NULL, i == THREADS - 1 ? masked_waiter : waiter, (void *)i));
    wait_at(&started);
    /* Send in an order unlike creation order, so a handler that ran on "the next
     * thread to run" would be caught. */
    for (int k = 0; k < THREADS; k++) {
        int i = (k * 5 + 3) % THREADS;
        CHECK_OK(pthread_kill(target[i], SIGUSR2));
        if (i == THREADS - 1)
            sent_to_masked = 1;
    }
    for (int i = 0; i < THREADS; i++)
        CHECK_OK(pthread_join(target[i], NULL));
    CHECK(wrong_thread == 0, "%d signals ran their handler on a thread they were not sent to",
          (int)wrong_thread);
    for (int i = 0; i < THREADS; i++)
        CHECK(delivered[i] == 1, "thread %d got its signal %d times", i, (int)delivered[i]);
    CHECK_OK(pthread_kill(pthread_self(), 0)); /* signal 0: only checks the target exists */
    CHECK_OK(pthread_barrier_destroy(&started));
    printf("%d threads: each got its own SIGUSR2 once, on itself\n", THREADS);
    printf("blocked SIGUSR2 stayed pending until unblocked\n");
    return 0;
}
