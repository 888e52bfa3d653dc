/* upthread_compat.h: recompile an unmodified pthread program against upthread.
 *
 *     cc -I<upthread>/include -include upthread_compat.h prog.c -L<lib> -lupthread
 *
 * (pkg-config --cflags upthread gives the first two flags.) Every pthread_X, sem_X and
 * sched_yield the library implements is renamed to upthread_X, upthread_sem_X and
 * upthread_sched_yield by an object-like macro, so calls, function pointers
 * (&pthread_create) and declarations are all renamed.
 *
 * Why this header includes no system header: -include makes it the first thing the
 * compiler reads, before the program's own first line. Had it included <pthread.h>,
 * glibc's <features.h> would be settled before the program's `#define _GNU_SOURCE`,
 * and GNU declarations (accept4, CPU_SET, ...) would go missing. Instead, the renames
 * are in place when the program includes <pthread.h>, <semaphore.h> or <sched.h>
 * itself, and glibc's own prototypes declare the upthread_ functions: the types and
 * attributes are glibc's by construction.
 *
 * pthread_cleanup_push and pthread_cleanup_pop are macros that glibc's <pthread.h>
 * defines when the program includes it, which would replace any definition made here.
 * So <pthread.h> in this directory stands in front of glibc's: it includes glibc's and
 * then, only under this header, redefines the two macros over
 * upthread_cleanup_push_impl and upthread_cleanup_pop_impl.
 *
 * The list is checked against the library's exports by the test
 * compat_header_renames_every_exported_function (upthread/clib/tests/c_programs.rs).
 */
#ifndef UPTHREAD_COMPAT_H
#define UPTHREAD_COMPAT_H

/* Threads. */
#define pthread_create upthread_create
#define pthread_join upthread_join
#define pthread_detach upthread_detach
#define pthread_exit upthread_exit
#define pthread_self upthread_self
#define pthread_equal upthread_equal
#define pthread_yield upthread_yield
#define sched_yield upthread_sched_yield

/* Thread attributes. */
#define pthread_attr_init upthread_attr_init
#define pthread_attr_destroy upthread_attr_destroy
#define pthread_attr_setdetachstate upthread_attr_setdetachstate
#define pthread_attr_getdetachstate upthread_attr_getdetachstate
#define pthread_attr_setstacksize upthread_attr_setstacksize
#define pthread_attr_getstacksize upthread_attr_getstacksize
#define pthread_attr_setstack upthread_attr_setstack
#define pthread_attr_getstack upthread_attr_getstack
#define pthread_attr_setguardsize upthread_attr_setguardsize
#define pthread_attr_getguardsize upthread_attr_getguardsize

/* Thread-specific data. */
#define pthread_key_create upthread_key_create
#define pthread_key_delete upthread_key_delete
#define pthread_getspecific upthread_getspecific
#define pthread_setspecific upthread_setspecific

/* Cancellation (pthread_cleanup_push/pop: see <pthread.h> in this directory). */
#define pthread_cancel upthread_cancel
#define pthread_testcancel upthread_testcancel
#define pthread_setcancelstate upthread_setcancelstate
#define pthread_setcanceltype upthread_setcanceltype

/* Signals directed at one thread. */
#define pthread_kill upthread_kill
#define pthread_sigmask upthread_sigmask

/* Once. */
#define pthread_once upthread_once

/* Mutexes. */
#define pthread_mutex_init upthread_mutex_init
#define pthread_mutex_destroy upthread_mutex_destroy
#define pthread_mutex_lock upthread_mutex_lock
#define pthread_mutex_trylock upthread_mutex_trylock
#define pthread_mutex_timedlock upthread_mutex_timedlock
#define pthread_mutex_unlock upthread_mutex_unlock
#define pthread_mutexattr_init upthread_mutexattr_init
#define pthread_mutexattr_destroy upthread_mutexattr_destroy
#define pthread_mutexattr_settype upthread_mutexattr_settype
#define pthread_mutexattr_gettype upthread_mutexattr_gettype
#define pthread_mutexattr_setpshared upthread_mutexattr_setpshared
#define pthread_mutexattr_getpshared upthread_mutexattr_getpshared

/* Condition variables. */
#define pthread_cond_init upthread_cond_init
#define pthread_cond_destroy upthread_cond_destroy
#define pthread_cond_wait upthread_cond_wait
#define pthread_cond_timedwait upthread_cond_timedwait
#define pthread_cond_signal upthread_cond_signal
#define pthread_cond_broadcast upthread_cond_broadcast
#define pthread_condattr_init upthread_condattr_init
#define pthread_condattr_destroy upthread_condattr_destroy
#define pthread_condattr_setclock upthread_condattr_setclock
#define pthread_condattr_getclock upthread_condattr_getclock
#define pthread_condattr_setpshared upthread_condattr_setpshared
#define pthread_condattr_getpshared upthread_condattr_getpshared

/* Reader/writer locks. */
#define pthread_rwlock_init upthread_rwlock_init
#define pthread_rwlock_destroy upthread_rwlock_destroy
#define pthread_rwlock_rdlock upthread_rwlock_rdlock
#define pthread_rwlock_tryrdlock upthread_rwlock_tryrdlock
#define pthread_rwlock_timedrdlock upthread_rwlock_timedrdlock
#define pthread_rwlock_wrlock upthread_rwlock_wrlock
#define pthread_rwlock_trywrlock upthread_rwlock_trywrlock
#define pthread_rwlock_timedwrlock upthread_rwlock_timedwrlock
#define pthread_rwlock_unlock upthread_rwlock_unlock
#define pthread_rwlockattr_init upthread_rwlockattr_init
#define pthread_rwlockattr_destroy upthread_rwlockattr_destroy
#define pthread_rwlockattr_setpshared upthread_rwlockattr_setpshared
#define pthread_rwlockattr_getpshared upthread_rwlockattr_getpshared
#define pthread_rwlockattr_setkind_np upthread_rwlockattr_setkind_np
#define pthread_rwlockattr_getkind_np upthread_rwlockattr_getkind_np

/* Barriers. */
#define pthread_barrier_init upthread_barrier_init
#define pthread_barrier_destroy upthread_barrier_destroy
#define pthread_barrier_wait upthread_barrier_wait
#define pthread_barrierattr_init upthread_barrierattr_init
#define pthread_barrierattr_destroy upthread_barrierattr_destroy
#define pthread_barrierattr_setpshared upthread_barrierattr_setpshared
#define pthread_barrierattr_getpshared upthread_barrierattr_getpshared

/* Spinlocks. */
#define pthread_spin_init upthread_spin_init
#define pthread_spin_destroy upthread_spin_destroy
#define pthread_spin_lock upthread_spin_lock
#define pthread_spin_trylock upthread_spin_trylock
#define pthread_spin_unlock upthread_spin_unlock

/* Semaphores. */
#define sem_init upthread_sem_init
#define sem_destroy upthread_sem_destroy
#define sem_wait upthread_sem_wait
#define sem_trywait upthread_sem_trywait
#define sem_timedwait upthread_sem_timedwait
#define sem_post upthread_sem_post
#define sem_getvalue upthread_sem_getvalue

/* The library's constructor runs main as a uthread. Taking its address here makes
 * every program built with this header reference it, so a static link against
 * libupthread.a always includes the archive member that holds it (a linker copies a
 * member only when something references a symbol in it). */
extern void (*const upthread_constructor)(void);
static void (*const *const upthread_compat_constructor_ref_)(void)
    __attribute__((__used__)) = &upthread_constructor;

#endif /* UPTHREAD_COMPAT_H */
