/* Regular-file I/O from several threads: open and openat with O_CREAT and a mode (the
 * variadic third argument must arrive), pwrite/pread at offsets, writev/readv, close.
 * Each thread owns one file in a fresh temporary directory and checks every byte it
 * reads back and the file's permission bits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define THREADS 6
#define BLOCKS 64
#define BLOCK 512

static char dir[64];
static int dirfd_;

static void *worker(void *arg) {
    int id = (int)(long)arg;
    char name[32];
    snprintf(name, sizeof name, "file-%d", id);
    mode_t mode = id % 2 ? 0640 : 0600;
    int fd;
    if (id % 2) {
        fd = openat(dirfd_, name, O_RDWR | O_CREAT | O_EXCL, mode);
    } else {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL, mode);
    }
    CHECK(fd >= 0, "thread %d: open %s: %s", id, name, strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    CHECK((st.st_mode & 0777) == mode, "thread %d: mode %o, asked for %o", id, st.st_mode & 0777, mode);

    char block[BLOCK], back[BLOCK];
    /* Blocks written back to front with pwrite, read front to back with pread. */
    for (int b = BLOCKS - 1; b >= 0; b--) {
        memset(block, 'a' + (id + b) % 26, BLOCK);
        CHECK(pwrite(fd, block, BLOCK, (off_t)b * BLOCK) == BLOCK, "pwrite: %s", strerror(errno));
    }
    for (int b = 0; b < BLOCKS; b++) {
        CHECK(pread(fd, back, BLOCK, (off_t)b * BLOCK) == BLOCK, "pread: %s", strerror(errno));
        CHECK(back[0] == 'a' + (id + b) % 26 && back[BLOCK - 1] == back[0], "thread %d block %d wrong", id, b);
    }
    /* A gathered write at the end, then a scattered read of it. */
    CHECK(lseek(fd, 0, SEEK_END) == (off_t)BLOCKS * BLOCK, "lseek: %s", strerror(errno));
    char head[7] = "upthrd", tail[9] = "-thread-";
    struct iovec out[2] = {{head, 6}, {tail, 8}};
    CHECK(writev(fd, out, 2) == 14, "writev: %s", strerror(errno));
    CHECK(lseek(fd, (off_t)BLOCKS * BLOCK, SEEK_SET) >= 0, "lseek: %s", strerror(errno));
    char a[8] = {0}, b[8] = {0};
    struct iovec in[2] = {{a, 7}, {b, 7}};
    CHECK(readv(fd, in, 2) == 14, "readv: %s", strerror(errno));
    CHECK(memcmp(a, "upthrd-", 7) == 0 && memcmp(b, "thread-", 7) == 0, "readv read \"%s\" \"%s\"", a, b);
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    CHECK(unlinkat(dirfd_, name, 0) == 0, "unlink: %s", strerror(errno));
    return (void *)(long)(BLOCKS * BLOCK + 14);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/upthread-file-io-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(dirfd_ >= 0, "open %s: %s", dir, strerror(errno));
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK_OK(pthread_create(&t[i], NULL, worker, (void *)i));
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        void *n;
        CHECK_OK(pthread_join(t[i], &n));
        total += (long)n;
    }
    CHECK(close(dirfd_) == 0, "close: %s", strerror(errno));
    CHECK(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
    printf("%d threads: open/openat with modes, pread/pwrite, readv/writev: %ld bytes checked\n", THREADS, total);
    return 0;
}
