/* Detached threads, made detached both ways (an attribute, and pthread_detach after
 * creation), each report in under a mutex and signal a condition variable; main waits
 * for all of them. A detached thread's resources are reclaimed without a join, so
 * making many more of them than fit at once must work too. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"

#define BY_ATTR 200
#define BY_CALL 200

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int done;
static long id_sum;

static void *worker(void *arg) {
    CHECK_OK(pthread_mutex_lock(&lock));
    done++;
    id_sum += (long)arg;
    CHECK_OK(pthread_cond_signal(&done_cv));
    CHECK_OK(pthread_mutex_unlock(&lock));
    return NULL;
}

int main(void) {
    pthread_attr_t attr;
    int state;
    CHECK_OK(pthread_attr_init(&attr));
    CHECK_OK(pthread_attr_getdetachstate(&attr, &state));
    CHECK(state == PTHREAD_CREATE_JOINABLE, "threads are not joinable by default");
    CHECK_OK(pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED));
    CHECK_OK(pthread_attr_getdetachstate(&attr, &state));
    CHECK(state == PTHREAD_CREATE_DETACHED, "detach state not kept in the attribute");

    for (long i = 0; i < BY_ATTR; i++) {
        pthread_t t;
        CHECK_OK(pthread_create(&t, &attr, worker, (void *)i));
    }
    CHECK_OK(pthread_attr_destroy(&attr));
    for (long i = BY_ATTR; i < BY_ATTR + BY_CALL; i++) {
        pthread_t t;
        CHECK_OK(pthread_create(&t, NULL, worker, (void *)i));
        CHECK_OK(pthread_detach(t));
    }

    CHECK_OK(pthread_mutex_lock(&lock));
    while (done < BY_ATTR + BY_CALL)
        CHECK_OK(pthread_cond_wait(&done_cv, &lock));
    CHECK_OK(pthread_mutex_unlock(&lock));
    long n = BY_ATTR + BY_CALL;
    CHECK(id_sum == n * (n - 1) / 2, "threads reported ids summing to %ld", id_sum);
    printf("%d detached by attribute, %d by pthread_detach: all %d ran, ids sum %ld\n", BY_ATTR, BY_CALL,
           done, id_sum);
    return 0;
}
