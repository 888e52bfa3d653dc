/* Thread-specific data and its destructors.
 *  - each thread sees only its own value, across yields;
 *  - a thread's non-NULL values are destroyed when it returns and when it calls
 *    pthread_exit, with the value it last set; NULL values are not;
 *  - a destructor that sets a value again is called again (POSIX: up to
 *    PTHREAD_DESTRUCTOR_ITERATIONS rounds);
 *  - a deleted key's destructor never runs, and its key can be created again;
 *  - main's values are not destroyed by threads exiting.
 * Destructor calls are counted per key under a mutex; the output is the counts. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>

#include "check.h"

#define THREADS 8

static pthread_key_t k_plain, k_again, k_deleted;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int plain_calls, again_calls, deleted_calls;
static long plain_sum;
/* Main deletes k_deleted between the two waits, while every thread holds a value in it. */
static pthread_barrier_t values_set, key_deleted;

static void wait_at(pthread_barrier_t *b) {
    int rc = pthread_barrier_wait(b);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier wait returned %d", rc);
}

static void plain_dtor(void *v) {
    CHECK(v != NULL, "destructor called with NULL");
    CHECK(pthread_getspecific(k_plain) == NULL, "value still set while its destructor runs");
    CHECK_OK(pthread_mutex_lock(&lock));
    plain_calls++;
    plain_sum += *(int *)v;
    CHECK_OK(pthread_mutex_unlock(&lock));
    free(v);
}

/* Sets itself again on its first call: it must be called a second time. */
static void again_dtor(void *v) {
    long round = (long)v;
    CHECK_OK(pthread_mutex_lock(&lock));
    again_calls++;
    CHECK_OK(pthread_mutex_unlock(&lock));
    if (round == 1)
        CHECK_OK(pthread_setspecific(k_again, (void *)2L));
}

static void deleted_dtor(void *v) {
    (void)v;
    CHECK_OK(pthread_mutex_lock(&lock));
    deleted_calls++;
    CHECK_OK(pthread_mutex_unlock(&lock));
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    CHECK(pthread_getspecific(k_plain) == NULL, "a new thread starts with a value");
    int *mine = malloc(sizeof *mine);
    CHECK(mine != NULL, "out of memory");
    *mine = id;
    CHECK_OK(pthread_setspecific(k_plain, mine));
    for (int i = 0; i < 100; i++) {
        sched_yield();
        CHECK(pthread_getspecific(k_plain) == mine, "thread %d sees another thread's value", id);
    }
    if (id % 2 == 0)
        CHECK_OK(pthread_setspecific(k_again, (void *)1L)); /* odd threads leave it NULL */
    CHECK_OK(pthread_setspecific(k_deleted, (void *)1L));
    wait_at(&values_set);
    wait_at(&key_deleted);
    if (id % 4 == 1)
        pthread_exit(NULL); /* destructors run on pthread_exit as on return */
    return NULL;
}

int main(void) {
    CHECK_OK(pthread_key_create(&k_plain, plain_dtor));
    CHECK_OK(pthread_key_create(&k_again, again_dtor));
    CHECK_OK(pthread_key_create(&k_deleted, deleted_dtor));
    int main_value = 1000;
    CHECK_OK(pthread_setspecific(k_plain, &main_value));

    CHECK_OK(pthread_barrier_init(&values_set, NULL, THREADS + 1));
    CHECK_OK(pthread_barrier_init(&key_deleted, NULL, THREADS + 1));
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, worker, (void *)i));
    /* Deleting a key while threads hold values in it: the values are dropped unseen. */
    wait_at(&values_set);
    CHECK_OK(pthread_key_delete(k_deleted));
    wait_at(&key_deleted);
    for (int i = 0; i < THREADS; i++)
        CHECK_OK(pthread_join(t[i], NULL));

    CHECK(pthread_getspecific(k_plain) == &main_value, "main's value changed");
    CHECK(plain_calls == THREADS, "plain destructor ran %d times, expected %d", plain_calls, THREADS);
    CHECK(plain_sum == THREADS * (THREADS - 1) / 2, "destructors saw values summing to %ld", plain_sum);
    CHECK(again_calls == THREADS, "re-setting destructor ran %d times, expected %d (two rounds for %d threads)",
          again_calls, THREADS, THREADS / 2);
    CHECK(deleted_calls == 0, "a deleted key's destructor ran %d times", deleted_calls);

    CHECK_OK(pthread_barrier_destroy(&values_set));
    CHECK_OK(pthread_barrier_destroy(&key_deleted));
    pthread_key_t k_new;
    CHECK_OK(pthread_key_create(&k_new, NULL));
    CHECK(pthread_getspecific(k_new) == NULL, "a new key starts with a value");
    CHECK_OK(pthread_key_delete(k_new));

    printf("plain destructor: %d calls, values sum %ld\n", plain_calls, plain_sum);
    printf("re-setting destructor: %d calls for %d threads that set it\n", again_calls, THREADS / 2);
    printf("deleted key destructor: %d calls\n", deleted_calls);
    printf("main's value kept\n");
    return 0;
}
