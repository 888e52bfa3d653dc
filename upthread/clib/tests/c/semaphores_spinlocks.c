/* Semaphores and spinlocks.
 *  - A bounded buffer with two counting semaphores (free slots, full slots): every item
 *    arrives once.
 *  - sem_trywait on zero fails with EAGAIN; sem_timedwait with a deadline in the past
 *    fails with ETIMEDOUT; sem_getvalue reports the count.
 *  - Threads add to a counter under a spinlock (yielding while holding it would deadlock
 *    a one-vcore cooperative scheduler, so the critical section is short); no update is
 *    lost, and trylock of a held spinlock is EBUSY. */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <time.h>

#include "check.h"

#define SLOTS 4
#define ITEMS 3000
#define ADDERS 4
#define ADDS 5000

static sem_t free_slots, full_slots;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static int ring[SLOTS], ring_in, ring_out;

static void *producer(void *arg) {
    (void)arg;
    for (int i = 1; i <= ITEMS; i++) {
        CHECK(sem_wait(&free_slots) == 0, "sem_wait: %s", strerror(errno));
        CHECK_OK(pthread_mutex_lock(&ring_lock));
        ring[ring_in++ % SLOTS] = i;
        CHECK_OK(pthread_mutex_unlock(&ring_lock));
        CHECK(sem_post(&full_slots) == 0, "sem_post: %s", strerror(errno));
    }
    return NULL;
}

static void *consumer(void *arg) {
    long sum = 0;
    (void)arg;
    for (int i = 1; i <= ITEMS; i++) {
        CHECK(sem_wait(&full_slots) == 0, "sem_wait: %s", strerror(errno));
        CHECK_OK(pthread_mutex_lock(&ring_lock));
        int item = ring[ring_out++ % SLOTS];
        CHECK_OK(pthread_mutex_unlock(&ring_lock));
        CHECK(item == i, "got item %d, expected %d", item, i);
        sum += item;
        CHECK(sem_post(&free_slots) == 0, "sem_post: %s", strerror(errno));
    }
    return (void *)sum;
}

static pthread_spinlock_t spin;
static long counter;

static void *adder(void *arg) {
    (void)arg;
    for (int i = 0; i < ADDS; i++) {
        CHECK_OK(pthread_spin_lock(&spin));
        counter++;
        CHECK_OK(pthread_spin_unlock(&spin));
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

int main(void) {
    /* The rules, on one thread. */
    sem_t s;
    int v;
    CHECK(sem_init(&s, 0, 2) == 0, "sem_init: %s", strerror(errno));
    CHECK(sem_getvalue(&s, &v) == 0 && v == 2, "sem_getvalue: %d", v);
    CHECK(sem_trywait(&s) == 0 && sem_trywait(&s) == 0, "sem_trywait on a positive count failed");
    CHECK(sem_trywait(&s) == -1 && errno == EAGAIN, "sem_trywait on zero: %s", strerror(errno));
    struct timespec past;
    CHECK(clock_gettime(CLOCK_REALTIME, &past) == 0, "clock_gettime");
    past.tv_sec -= 1;
    CHECK(sem_timedwait(&s, &past) == -1 && errno == ETIMEDOUT, "sem_timedwait in the past: %s", strerror(errno));
    CHECK(sem_post(&s) == 0 && sem_getvalue(&s, &v) == 0 && v == 1, "sem_post then getvalue: %d", v);
    CHECK(sem_destroy(&s) == 0, "sem_destroy: %s", strerror(errno));
    printf("sem_trywait EAGAIN, sem_timedwait ETIMEDOUT, sem_getvalue: ok\n");

    CHECK(sem_init(&free_slots, 0, SLOTS) == 0, "sem_init: %s", strerror(errno));
    CHECK(sem_init(&full_slots, 0, 0) == 0, "sem_init: %s", strerror(errno));
    pthread_t p, c;
    CHECK_OK(pthread_create(&c, NULL, consumer, NULL));
    CHECK_OK(pthread_create(&p, NULL, producer, NULL));
    void *sum;
    CHECK_OK(pthread_join(p, NULL));
    CHECK_OK(pthread_join(c, &sum));
    CHECK((long)sum == (long)ITEMS * (ITEMS + 1) / 2, "items sum to %ld", (long)sum);
    CHECK(sem_getvalue(&free_slots, &v) == 0 && v == SLOTS, "free slots at the end: %d", v);
    printf("%d items through %d slots in order, sum %ld\n", ITEMS, SLOTS, (long)sum);

    CHECK_OK(pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE));
    CHECK_OK(pthread_spin_lock(&spin));
    CHECK(pthread_spin_trylock(&spin) == EBUSY, "trylock of a held spinlock succeeded");
    CHECK_OK(pthread_spin_unlock(&spin));
    pthread_t a[ADDERS];
    for (int i = 0; i < ADDERS; i++)
        CHECK_OK(pthread_create(&a[i], NULL, adder, NULL));
    for (int i = 0; i < ADDERS; i++)
        CHECK_OK(pthread_join(a[i], NULL));
    CHECK(counter == (long)ADDERS * ADDS, "counter is %ld, expected %ld", counter, (long)ADDERS * ADDS);
    CHECK_OK(pthread_spin_destroy(&spin));
    printf("%d threads x %d spinlocked adds: %ld\n", ADDERS, ADDS, counter);
    return 0;
}
