/* pthread_ctxswitch.c: yield-to-yield switch cost of an ordinary pthread program.
 *
 *     pthread_ctxswitch <threads> <warmup_ms> <window_ms> [--pin]
 *
 * <threads> workers call sched_yield() in a loop. main waits until all of them have
 * arrived, lets them run an untimed warm-up of <warmup_ms>, then opens the measured
 * window for <window_ms> (it sleeps in nanosleep meanwhile), closes it and joins them.
 * Every worker counts the yields it made while the window was open. The program prints
 *
 *     threads=<n> elapsed_ns=<window length> switches=<yields in the window>
 *
 * and nothing else on standard output; the bench driver (benches/pthread_ctxswitch.rs)
 * turns that into ns per switch.
 *
 * --pin: worker i pins itself with sched_setaffinity to the (i mod n)-th CPU the
 * process may use, so that each CPU runs the same number of workers. Only the driver's
 * glibc runs pass it: under upthread the call would pin the vcore's backing thread.
 *
 * The program is plain POSIX + glibc. Built with `-include upthread_compat.h`,
 * pthread_* and sched_yield become upthread's and nothing else changes.
 *
 * Why sched_yield and not pthread_yield: glibc 2.34 made pthread_yield a deprecated
 * alias of sched_yield (<pthread.h> redirects it), so they are the same call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the workers do now. main moves it forward; workers only read it. */
enum phase { ARRIVING, WARMUP, MEASURE, STOP };

static _Atomic int phase = ARRIVING;
static atomic_int arrived;
static atomic_uint_fast64_t total_switches;
static int pin;
static cpu_set_t allowed;

static void die(const char *what, int err)
{
    fprintf(stderr, "pthread_ctxswitch: %s: %s\n", what, strerror(err));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Pins the calling thread to the (index mod n)-th CPU of `allowed`. */
static void pin_self(long index)
{
    int n = CPU_COUNT(&allowed), want = (int)(index % n), seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            if (sched_setaffinity(0, sizeof one, &one) != 0)
                die("sched_setaffinity", errno);
            return;
        }
    }
}

static void *worker(void *arg)
{
    uint64_t switches = 0;
    if (pin)
        pin_self((long)(intptr_t)arg);
    atomic_fetch_add(&arrived, 1);
    for (;;) {
        int p = atomic_load_explicit(&phase, memory_order_relaxed);
        if (p == STOP)
            break;
        sched_yield();
        if (p == MEASURE)
            switches++;
    }
    atomic_fetch_add(&total_switches, switches);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s <threads> <warmup_ms> <window_ms> [--pin]\n", argv[0]);
        return 2;
    }
    long threads = atol(argv[1]), warmup_ms = atol(argv[2]), window_ms = atol(argv[3]);
    pin = argc > 4 && strcmp(argv[4], "--pin") == 0;
    if (threads < 1 || warmup_ms < 0 || window_ms < 1) {
        fprintf(stderr, "pthread_ctxswitch: bad arguments\n");
        return 2;
    }
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        die("sched_getaffinity", errno);

    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!tids)
        die("calloc", ENOMEM);
    for (long i = 0; i < threads; i++) {
        int err = pthread_create(&tids[i], NULL, worker, (void *)(intptr_t)i);
        if (err)
            die("pthread_create", err);
    }
    while (atomic_load(&arrived) < threads)
        sched_yield();

    atomic_store(&phase, WARMUP);
    sleep_ms(warmup_ms);
    uint64_t start = now_ns();
    atomic_store(&phase, MEASURE);
    sleep_ms(window_ms);
    atomic_store(&phase, STOP);
    uint64_t elapsed = now_ns() - start;

    for (long i = 0; i < threads; i++) {
        int err = pthread_join(tids[i], NULL);
        if (err)
            die("pthread_join", err);
    }
    uint64_t switches = atomic_load(&total_switches);
    if (switches == 0) {
        fprintf(stderr, "pthread_ctxswitch: no yield counted in the window\n");
        return 1;
    }
    printf("threads=%ld elapsed_ns=%llu switches=%llu\n", threads, (unsigned long long)elapsed,
           (unsigned long long)switches);
    free(tids);
    return 0;
}
