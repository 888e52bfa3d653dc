/* errno belongs to the thread: each thread makes a system call fail with its own errno
 * value, yields many times (so others run, maybe on its vcore, and set theirs), and
 * must still read its own value. Main's errno is untouched by all of it. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define THREADS 12
#define ROUNDS 200

/* Three ways to fail, three errno values. */
static int fail_with(int how) {
    char c;
    switch (how) {
    case 0:
        CHECK(read(-1, &c, 1) == -1, "read(-1) succeeded");
        return EBADF;
    case 1:
        CHECK(open("/nonexistent/upthread-test", O_RDONLY) == -1, "open of a missing file succeeded");
        return ENOENT;
    default:
        CHECK(socket(-1, SOCK_STREAM, 0) == -1, "socket(-1) succeeded");
        return EAFNOSUPPORT;
    }
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    for (int r = 0; r < ROUNDS; r++) {
        int expected = fail_with((id + r) % 3);
        for (int y = 0; y < 3; y++) {
            sched_yield();
            CHECK(errno == expected, "thread %d round %d: errno %d (%s), expected %d", id, r, errno,
                  strerror(errno), expected);
        }
        errno = 1000 + id; /* a value only this thread uses */
        sched_yield();
        CHECK(errno == 1000 + id, "thread %d: errno %d, expected its own %d", id, errno, 1000 + id);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    errno = 0;
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, worker, (void *)i));
    errno = 999;
    for (int y = 0; y < 100; y++) {
        sched_yield();
        CHECK(errno == 999, "main's errno is %d while the threads run", errno);
    }
    for (int i = 0; i < THREADS; i++)
        CHECK_OK(pthread_join(t[i], NULL));
    printf("%d threads x %d rounds: every thread kept its own errno\n", THREADS, ROUNDS);
    return 0;
}
