/* Checks shared by the C test programs: a failed check names itself on stderr and
 * exits 1, so the Rust runner reports which program, mode and line went wrong. Plain C:
 * nothing here knows about upthread. */
#ifndef CHECK_H
#define CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* For functions that return 0 or an error number (the pthread convention). */
#define CHECK_OK(call)                                                                \
    do {                                                                              \
        int check_rc_ = (call);                                                       \
        CHECK(check_rc_ == 0, "%s returned %d (%s)", #call, check_rc_,                \
              strerror(check_rc_));                                                   \
    } while (0)

/* For functions that return -1 and set errno. */
#define CHECK_SYS(call)                                                               \
    do {                                                                              \
        if ((call) == -1) {                                                           \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,      \
                    strerror(errno));                                                 \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

#endif
