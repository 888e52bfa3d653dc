/* 10 000 short-lived threads, created in waves of 100 and joined, each returning a value
 * computed from its argument; a thread's record and stack are reused for later waves.
 * The sum of the results proves every thread ran exactly once with its own argument. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"

#define TOTAL 10000
#define WAVE 100

static void *square(void *arg) {
    long i = (long)arg;
    return (void *)(i * i % 1000003);
}

int main(void) {
    pthread_t wave[WAVE];
    long sum = 0, expected = 0;
    for (long base = 0; base < TOTAL; base += WAVE) {
        for (long i = 0; i < WAVE; i++)
            CHECK_OK(pthread_create(&wave[i], NULL, square, (void *)(base + i)));
        for (long i = 0; i < WAVE; i++) {
            void *r;
            CHECK_OK(pthread_join(wave[i], &r));
            sum += (long)r;
            expected += (base + i) * (base + i) % 1000003;
        }
    }
    CHECK(sum == expected, "results sum to %ld, expected %ld", sum, expected);
    printf("%d threads in waves of %d: results sum %ld\n", TOTAL, WAVE, sum);
    return 0;
}
