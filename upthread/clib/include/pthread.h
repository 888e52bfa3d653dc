/* <pthread.h> as seen by programs built with upthread_compat.h.
 *
 * This file is found before glibc's <pthread.h> when this directory is on the include
 * path. It includes glibc's (#include_next), whose declarations upthread_compat.h has
 * already renamed to upthread_*, and then replaces glibc's pthread_cleanup_push and
 * pthread_cleanup_pop: glibc's hand each handler to glibc's unwinder, which knows
 * nothing of uthreads. Without upthread_compat.h (a program that includes upthread.h
 * and calls upthread_* by name) it is glibc's header, untouched.
 */
#include_next <pthread.h>

#if defined(UPTHREAD_COMPAT_H) && !defined(UPTHREAD_CLEANUP_MACROS)
#define UPTHREAD_CLEANUP_MACROS

#include "upthread_cleanup.h"

/* Like glibc's, the pair opens and closes a block, so they must be used at the same
 * nesting level of one function; the buffer lives in that block. The empty statement
 * before the pop allows a label just before pthread_cleanup_pop, as glibc does. */
#undef pthread_cleanup_push
#undef pthread_cleanup_pop
#define pthread_cleanup_push(routine, arg)                                              \
    do {                                                                                \
        struct upthread_cleanup_buffer upthread_cleanup_buffer_;                        \
        upthread_cleanup_push_impl(&upthread_cleanup_buffer_, (routine), (arg));        \
        do {
#define pthread_cleanup_pop(execute)                                                    \
            do { } while (0);                                                           \
        } while (0);                                                                    \
        upthread_cleanup_pop_impl(&upthread_cleanup_buffer_, (execute));                \
    } while (0)

#endif
