/* pthread_once: threads race to run three once-routines; each runs exactly once, and no
 * caller returns from pthread_once before the routine has finished (each routine
 * yields in the middle to give a racing caller the chance to get past it). */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>

#include "check.h"

#define THREADS 16
#define ONCES 3

static pthread_once_t once[ONCES] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};
static volatile int started[ONCES], finished[ONCES];
static pthread_barrier_t go;

#define ROUTINE(i)                                                                   \
    static void routine##i(void) {                                                   \
        started[i]++;                                                                \
        for (int y = 0; y < 20; y++)                                                 \
            sched_yield();                                                           \
        finished[i]++;                                                               \
    }
ROUTINE(0)
ROUTINE(1)
ROUTINE(2)
static void (*const routines[ONCES])(void) = {routine0, routine1, routine2};

static void *worker(void *arg) {
    int id = (int)(long)arg;
    int rc = pthread_barrier_wait(&go);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
    for (int k = 0; k < ONCES; k++) {
        int i = (id + k) % ONCES;
        CHECK_OK(pthread_once(&once[i], routines[i]));
        CHECK(finished[i] == 1, "pthread_once(%d) returned before its routine finished", i);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    CHECK_OK(pthread_barrier_init(&go, NULL, THREADS));
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, worker, (void *)i));
    for (int i = 0; i < THREADS; i++)
        CHECK_OK(pthread_join(t[i], NULL));
    for (int i = 0; i < ONCES; i++) {
        CHECK(started[i] == 1 && finished[i] == 1, "routine %d started %d times, finished %d times", i,
              started[i], finished[i]);
        CHECK_OK(pthread_once(&once[i], routines[i])); /* a later call does nothing */
        CHECK(started[i] == 1, "routine %d ran again", i);
        printf("once %d: ran once for %d callers\n", i, THREADS + 1);
    }
    CHECK_OK(pthread_barrier_destroy(&go));
    return 0;
}
