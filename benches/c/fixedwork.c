/* fixedwork.c: many threads, each doing the same fixed amount of computation
 * (K. Klues' thesis, section 2.6.3).
 *
 *     fixedwork <threads> <iterations> <yield_every>
 *     fixedwork --calibrate <iterations>
 *
 * Each of <threads> workers waits at a barrier that all of them share, reads the clock,
 * runs work() for <iterations> iterations and reads the clock again. With
 * <yield_every> > 0, a worker calls sched_yield() after every <yield_every> iterations;
 * with 0 it never yields. The common start is the earliest clock reading after the
 * barrier; the program prints
 *
 *     threads=<n> iterations=<i> yield_every=<y> total_ns=<last completion>
 *     <completion of worker 0, ns after the start>
 *     <completion of worker 1, ...>
 *     ...
 *
 * --calibrate runs work() for <iterations> on main alone and prints the thread CPU time
 * it took (CLOCK_THREAD_CPUTIME_ID, so that other load on the machine does not count)
 * as `cpu_ns=<ns>`; the driver sizes <iterations> from it.
 *
 * Every worker computes the same value; a worker whose value differs from main's makes
 * the program fail, which also keeps the compiler from dropping the loop.
 *
 * Plain POSIX: built with `-include upthread_compat.h`, pthread_* and sched_yield
 * become upthread's and nothing else changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
    pthread_t tid;
    uint64_t start_ns, end_ns, value;
};

static pthread_barrier_t start_line;
static uint64_t iterations, yield_every;

static void die(const char *what, int err)
{
    fprintf(stderr, "fixedwork: %s: %s\n", what, strerror(err));
    exit(1);
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One iteration is 16 steps of Marsaglia's xorshift64 (shifts 13, 7, 17): a chain of
 * dependent shifts and xors that no compiler folds, touching no memory, so every
 * thread's work costs the same CPU time wherever it runs. */
static uint64_t work(uint64_t n, uint64_t every)
{
    uint64_t x = 0x9e3779b97f4a7c15u, left = every;
    for (uint64_t i = 0; i < n; i++) {
        for (int k = 0; k < 16; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if (every && --left == 0) {
            sched_yield();
            left = every;
        }
    }
    return x;
}

static void *worker(void *arg)
{
    struct worker *w = arg;
    int r = pthread_barrier_wait(&start_line);
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD)
        die("pthread_barrier_wait", r);
    w->start_ns = clock_ns(CLOCK_MONOTONIC);
    w->value = work(iterations, yield_every);
    w->end_ns = clock_ns(CLOCK_MONOTONIC);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--calibrate") == 0) {
        uint64_t n = strtoull(argv[2], NULL, 10);
        uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t v = work(n, 0);
        uint64_t t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        printf("iterations=%llu cpu_ns=%llu value=%llx\n", (unsigned long long)n,
               (unsigned long long)(t1 - t0), (unsigned long long)v);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s <threads> <iterations> <yield_every>\n"
                        "       %s --calibrate <iterations>\n", argv[0], argv[0]);
        return 2;
    }
    long threads = atol(argv[1]);
    iterations = strtoull(argv[2], NULL, 10);
    yield_every = strtoull(argv[3], NULL, 10);
    if (threads < 1 || iterations < 1) {
        fprintf(stderr, "fixedwork: bad arguments\n");
        return 2;
    }

    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (!ws)
        die("calloc", ENOMEM);
    int err = pthread_barrier_init(&start_line, NULL, (unsigned)threads);
    if (err)
        die("pthread_barrier_init", err);
    for (long i = 0; i < threads; i++) {
        err = pthread_create(&ws[i].tid, NULL, worker, &ws[i]);
        if (err)
            die("pthread_create", err);
    }
    for (long i = 0; i < threads; i++) {
        err = pthread_join(ws[i].tid, NULL);
        if (err)
            die("pthread_join", err);
    }

    uint64_t expect = work(iterations, 0), start = UINT64_MAX, last = 0;
    for (long i = 0; i < threads; i++) {
        if (ws[i].value != expect) {
            fprintf(stderr, "fixedwork: worker %ld computed %llx, not %llx\n", i,
                    (unsigned long long)ws[i].value, (unsigned long long)expect);
            return 1;
        }
        if (ws[i].start_ns < start)
            start = ws[i].start_ns;
        if (ws[i].end_ns > last)
            last = ws[i].end_ns;
    }
    printf("threads=%ld iterations=%llu yield_every=%llu total_ns=%llu\n", threads,
           (unsigned long long)iterations, (unsigned long long)yield_every,
           (unsigned long long)(last - start));
    for (long i = 0; i < threads; i++)
        printf("%llu\n", (unsigned long long)(ws[i].end_ns - start));
    pthread_barrier_destroy(&start_line);
    free(ws);
    return 0;
}
