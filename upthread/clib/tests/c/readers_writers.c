/* A reader/writer lock guarding a pair that writers keep equal. Readers never see the
 * pair torn and writers never lose an update. Deterministic checks of the lock's rules:
 * two readers may hold it at once, a held read lock refuses a writer, a held write lock
 * refuses readers and writers. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>

#include "check.h"

#define READERS 6
#define WRITERS 3
#define WRITES 2000
#define READS 2000

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long a, b;

static void *writer(void *arg) {
    (void)arg;
    for (int i = 0; i < WRITES; i++) {
        CHECK_OK(pthread_rwlock_wrlock(&rw));
        a++;
        if (i % 16 == 0)
            sched_yield(); /* let others find the lock held for writing */
        b++;
        CHECK_OK(pthread_rwlock_unlock(&rw));
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    for (int i = 0; i < READS; i++) {
        CHECK_OK(pthread_rwlock_rdlock(&rw));
        long x = a;
        if (i % 16 == 0)
            sched_yield();
        long y = b;
        CHECK(x == y, "reader saw a torn pair %ld/%ld", x, y);
        CHECK_OK(pthread_rwlock_unlock(&rw));
    }
    return NULL;
}

/* Runs on its own thread while main holds the lock in the mode given by arg. */
static void *probe(void *arg) {
    int main_mode = (int)(long)arg; /* 'r' or 'w' */
    int rd = pthread_rwlock_tryrdlock(&rw);
    if (main_mode == 'r') {
        CHECK(rd == 0, "a second reader was refused (%d)", rd);
        CHECK_OK(pthread_rwlock_unlock(&rw));
    } else {
        CHECK(rd == EBUSY, "a reader got in while a writer held the lock (%d)", rd);
    }
    int wr = pthread_rwlock_trywrlock(&rw);
    CHECK(wr == EBUSY, "a writer got in while main held the lock for '%c' (%d)", main_mode, wr);
    return NULL;
}

static void probe_while_held(int mode) {
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, probe, (void *)(long)mode));
    CHECK_OK(pthread_join(t, NULL));
}

int main(void) {
    CHECK_OK(pthread_rwlock_rdlock(&rw));
    probe_while_held('r');
    CHECK_OK(pthread_rwlock_unlock(&rw));
    CHECK_OK(pthread_rwlock_wrlock(&rw));
    probe_while_held('w');
    CHECK_OK(pthread_rwlock_unlock(&rw));
    printf("shared read lock, exclusive write lock: ok\n");

    pthread_t r[READERS], w[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        CHECK_OK(pthread_create(&w[i], NULL, writer, NULL));
    for (int i = 0; i < READERS; i++)
        CHECK_OK(pthread_create(&r[i], NULL, reader, NULL));
    for (int i = 0; i < WRITERS; i++)
        CHECK_OK(pthread_join(w[i], NULL));
    for (int i = 0; i < READERS; i++)
        CHECK_OK(pthread_join(r[i], NULL));
    CHECK(a == (long)WRITERS * WRITES && b == a, "pair is %ld/%ld, expected %ld", a, b, (long)WRITERS * WRITES);
    CHECK_OK(pthread_rwlock_destroy(&rw));
    printf("%d writers x %d writes, %d readers x %d reads: pair %ld/%ld, never torn\n", WRITERS, WRITES,
           READERS, READS, a, b);
    return 0;
}
