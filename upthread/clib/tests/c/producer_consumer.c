/* Producer/consumer over a bounded ring guarded by one mutex and two condition
 * variables. Every item is consumed exactly once, and each consumer sees every
 * producer's items in the order they were produced (the ring is FIFO and a consumer
 * takes one item per critical section). Output: totals only, so it does not depend on
 * which consumer took what. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"

#define PRODUCERS 4
#define CONSUMERS 3
#define ITEMS_PER_PRODUCER 2500
#define RING 8
#define STOP (-1)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    int items[RING];
    int head, count;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0};

struct consumed {
    long sum;
    int count;
    int last_seq[PRODUCERS];
};

static void put(int item) {
    CHECK_OK(pthread_mutex_lock(&q.lock));
    while (q.count == RING)
        CHECK_OK(pthread_cond_wait(&q.not_full, &q.lock));
    q.items[(q.head + q.count) % RING] = item;
    q.count++;
    CHECK_OK(pthread_cond_signal(&q.not_empty));
    CHECK_OK(pthread_mutex_unlock(&q.lock));
}

static int take(void) {
    CHECK_OK(pthread_mutex_lock(&q.lock));
    while (q.count == 0)
        CHECK_OK(pthread_cond_wait(&q.not_empty, &q.lock));
    int item = q.items[q.head];
    q.head = (q.head + 1) % RING;
    q.count--;
    CHECK_OK(pthread_cond_signal(&q.not_full));
    CHECK_OK(pthread_mutex_unlock(&q.lock));
    return item;
}

static void *producer(void *arg) {
    int id = (int)(long)arg;
    for (int seq = 0; seq < ITEMS_PER_PRODUCER; seq++)
        put(id * ITEMS_PER_PRODUCER + seq);
    return NULL;
}

static void *consumer(void *arg) {
    struct consumed *c = arg;
    for (int p = 0; p < PRODUCERS; p++)
        c->last_seq[p] = -1;
    for (;;) {
        int item = take();
        if (item == STOP)
            return NULL;
        int p = item / ITEMS_PER_PRODUCER, seq = item % ITEMS_PER_PRODUCER;
        CHECK(seq > c->last_seq[p], "producer %d: item %d after %d", p, seq, c->last_seq[p]);
        c->last_seq[p] = seq;
        c->sum += item;
        c->count++;
    }
}

int main(void) {
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    struct consumed got[CONSUMERS] = {{0}};
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_OK(pthread_create(&cons[i], NULL, consumer, &got[i]));
    for (long i = 0; i < PRODUCERS; i++)
        CHECK_OK(pthread_create(&prod[i], NULL, producer, (void *)i));
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_OK(pthread_join(prod[i], NULL));
    for (int i = 0; i < CONSUMERS; i++)
        put(STOP);
    long sum = 0;
    int count = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        CHECK_OK(pthread_join(cons[i], NULL));
        sum += got[i].sum;
        count += got[i].count;
    }
    long n = (long)PRODUCERS * ITEMS_PER_PRODUCER;
    CHECK(count == n, "consumed %d items, produced %ld", count, n);
    CHECK(sum == n * (n - 1) / 2, "sum of items %ld, expected %ld", sum, n * (n - 1) / 2);
    CHECK(q.count == 0, "%d items left in the ring", q.count);
    CHECK_OK(pthread_mutex_destroy(&q.lock));
    CHECK_OK(pthread_cond_destroy(&q.not_full));
    CHECK_OK(pthread_cond_destroy(&q.not_empty));
    printf("producers %d, consumers %d, ring %d\n", PRODUCERS, CONSUMERS, RING);
    printf("consumed %d items, sum %ld, per-producer order kept\n", count, sum);
    return 0;
}
