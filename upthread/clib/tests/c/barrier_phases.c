/* Threads step through phases separated by a barrier. In each phase every thread writes
 * its own cell of the phase's row, waits at the barrier, then checks the whole row: a
 * thread that got past the barrier before everyone had written would see a stale cell.
 * Exactly one waiter per phase gets PTHREAD_BARRIER_SERIAL_THREAD; it records the row's
 * sum. A second barrier closes each phase so no thread starts writing the next row while
 * another is still reading this one. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"

#define THREADS 6
#define PHASES 50

static pthread_barrier_t written, read_done;
static int cell[PHASES][THREADS];
static long row_sum[PHASES];
static int serial[PHASES];
static pthread_mutex_t serial_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    int id = (int)(long)arg;
    for (int phase = 0; phase < PHASES; phase++) {
        cell[phase][id] = (phase + 1) * 100 + id;
        int rc = pthread_barrier_wait(&written);
        CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
        long sum = 0;
        for (int t = 0; t < THREADS; t++) {
            CHECK(cell[phase][t] == (phase + 1) * 100 + t,
                  "phase %d: thread %d sees cell %d = %d before it was written", phase, id, t,
                  cell[phase][t]);
            sum += cell[phase][t];
        }
        if (rc == PTHREAD_BARRIER_SERIAL_THREAD) {
            CHECK_OK(pthread_mutex_lock(&serial_lock));
            serial[phase]++;
            row_sum[phase] = sum;
            CHECK_OK(pthread_mutex_unlock(&serial_lock));
        }
        rc = pthread_barrier_wait(&read_done);
        CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    CHECK_OK(pthread_barrier_init(&written, NULL, THREADS));
    CHECK_OK(pthread_barrier_init(&read_done, NULL, THREADS));
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, worker, (void *)i));
    for (int i = 0; i < THREADS; i++)
        CHECK_OK(pthread_join(t[i], NULL));
    long total = 0;
    for (int phase = 0; phase < PHASES; phase++) {
        CHECK(serial[phase] == 1, "phase %d had %d serial threads", phase, serial[phase]);
        total += row_sum[phase];
        if (phase < 3 || phase == PHASES - 1)
            printf("phase %d: row sum %ld, one serial thread\n", phase, row_sum[phase]);
    }
    CHECK_OK(pthread_barrier_destroy(&written));
    CHECK_OK(pthread_barrier_destroy(&read_done));
    printf("%d threads, %d phases, total %ld\n", THREADS, PHASES, total);
    return 0;
}
