#define _GNU_SOURCE /* accept4 */
/* A TCP echo server and its clients in one program: a listener on 127.0.0.1 (port 0, so
 * the kernel picks a free one), an acceptor thread that starts one handler thread per
 * connection, and client threads that send messages of varying length and check every
 * echoed byte. Under upthread every blocking call here (poll, accept, connect, read,
 * recv, send, ...) must block only its thread: with one vcore, a call that blocked the
 * vcore would hang the program. The calls are varied on purpose: accept and accept4,
 * read/write, recv/send, readv/writev, sendmsg/recvmsg. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define CLIENTS 8
#define MESSAGES 200
#define MAX_MSG 1500

static int listener;
static struct sockaddr_in server_addr;
static pthread_t handlers[CLIENTS];
static volatile size_t recv_slack = 0;

static void *handler(void *arg) {
    int fd = (int)(long)arg;
    char buf[4096];
    for (;;) {
        /* A length the compiler cannot bound into a buffer of known size: with
         * _FORTIFY_SOURCE, glibc's header calls __recv_chk here. */
        ssize_t n = recv(fd, buf, sizeof buf - recv_slack, 0);
        CHECK(n >= 0, "handler recv: %s", strerror(errno));
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), 0);
            CHECK(w > 0, "handler send: %s", strerror(errno));
            off += w;
        }
    }
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    return NULL;
}

static void *acceptor(void *arg) {
    (void)arg;
    for (int i = 0; i < CLIENTS; i++) {
        struct pollfd p = {.fd = listener, .events = POLLIN};
        int r = poll(&p, 1, -1);
        CHECK(r == 1 && (p.revents & POLLIN), "poll on the listener returned %d (%s)", r, strerror(errno));
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = i % 2 ? accept4(listener, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC)
                       : accept(listener, (struct sockaddr *)&peer, &len);
        CHECK(fd >= 0, "accept: %s", strerror(errno));
        CHECK(peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "peer is not loopback");
        CHECK_OK(pthread_create(&handlers[i], NULL, handler, (void *)(long)fd));
    }
    return NULL;
}

static size_t message(int client, int m, char *buf) {
    size_t len = 1 + (size_t)(client * 131 + m * 17) % MAX_MSG;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (client + m + i) % 26);
    return len;
}

/* Sends len bytes and reads them back, with the client's pair of calls. */
static void round_trip(int fd, int style, const char *out, char *in, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t w;
        if (style == 0) {
            w = write(fd, out + done, len - done);
        } else if (style == 1) {
            w = send(fd, out + done, len - done, 0);
        } else if (style == 2) {
            struct iovec iov[2] = {{(void *)(out + done), (len - done) / 2},
                                   {(void *)(out + done + (len - done) / 2), len - done - (len - done) / 2}};
            w = writev(fd, iov, 2);
        } else {
            struct iovec iov = {(void *)(out + done), len - done};
            struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
            w = sendmsg(fd, &msg, 0);
        }
        CHECK(w > 0, "client send (style %d): %s", style, strerror(errno));
        done += (size_t)w;
    }
    done = 0;
    while (done < len) {
        ssize_t r;
        if (style == 0) {
            char tmp[MAX_MSG]; /* known size, unknown length: __read_chk when fortified */
            r = read(fd, tmp, len - done);
            if (r > 0)
                memcpy(in + done, tmp, (size_t)r);
        } else if (style == 1) {
            r = recv(fd, in + done, len - done, 0);
        } else if (style == 2) {
            struct iovec iov = {in + done, len - done};
            r = readv(fd, &iov, 1);
        } else {
            struct iovec iov = {in + done, len - done};
            struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
            r = recvmsg(fd, &msg, 0);
        }
        CHECK(r > 0, "client receive (style %d) returned %zd: %s", style, r, strerror(errno));
        done += (size_t)r;
    }
}

static void *client(void *arg) {
    int id = (int)(long)arg;
    if (id % 3 == 0) {
        struct timespec ts = {0, 1000000}; /* connect a little later than the others */
        CHECK(nanosleep(&ts, NULL) == 0, "nanosleep: %s", strerror(errno));
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    CHECK(connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) == 0, "connect: %s", strerror(errno));
    char out[MAX_MSG], in[MAX_MSG];
    long bytes = 0;
    for (int m = 0; m < MESSAGES; m++) {
        size_t len = message(id, m, out);
        memset(in, 0, len);
        round_trip(fd, id % 4, out, in, len);
        CHECK(memcmp(out, in, len) == 0, "client %d message %d came back changed", id, m);
        bytes += (long)len;
    }
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    return (void *)bytes;
}

int main(void) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listener >= 0, "socket: %s", strerror(errno));
    server_addr.sin_family = AF_INET;
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server_addr.sin_port = 0;
    CHECK(bind(listener, (struct sockaddr *)&server_addr, sizeof server_addr) == 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof server_addr;
    CHECK(getsockname(listener, (struct sockaddr *)&server_addr, &len) == 0, "getsockname: %s", strerror(errno));
    CHECK(listen(listener, CLIENTS) == 0, "listen: %s", strerror(errno));

    pthread_t acc, clients[CLIENTS];
    CHECK_OK(pthread_create(&acc, NULL, acceptor, NULL));
    for (long i = 0; i < CLIENTS; i++)
        CHECK_OK(pthread_create(&clients[i], NULL, client, (void *)i));
    long total = 0, expected = 0;
    char scratch[MAX_MSG];
    for (int i = 0; i < CLIENTS; i++) {
        void *bytes;
        CHECK_OK(pthread_join(clients[i], &bytes));
        total += (long)bytes;
        for (int m = 0; m < MESSAGES; m++)
            expected += (long)message(i, m, scratch);
    }
    CHECK_OK(pthread_join(acc, NULL));
    for (int i = 0; i < CLIENTS; i++)
        CHECK_OK(pthread_join(handlers[i], NULL));
    CHECK(close(listener) == 0, "close: %s", strerror(errno));
    CHECK(total == expected, "echoed %ld bytes, sent %ld", total, expected);
    printf("%d clients x %d messages echoed, %ld bytes each way\n", CLIENTS, MESSAGES, total);
    return 0;
}
