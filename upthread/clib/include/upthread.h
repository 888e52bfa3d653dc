/* upthread.h: the C API of libupthread, pthreads on parlib uthreads.
 *
 * Every function here has the signature, the types and the return convention (0 or an
 * error number; -1 and errno for the sem_* family and sched_yield) of the glibc function
 * it is named after: upthread_X is pthread_X, upthread_sem_X is sem_X, and
 * upthread_sched_yield is sched_yield. The types are glibc's own (pthread_t,
 * pthread_mutex_t, sem_t, ...), and upthread's objects fit in them, so glibc's static
 * initialisers (PTHREAD_MUTEX_INITIALIZER, ...) work unchanged.
 *
 * Include this header to call upthread by these names. To recompile an unmodified
 * pthread program against upthread, use upthread_compat.h instead (see there).
 *
 * The list of functions is checked against the library's exports by the test
 * header_declares_exactly_what_the_library_exports (upthread/clib/tests/c_programs.rs).
 */
#ifndef UPTHREAD_H
#define UPTHREAD_H

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Threads. */
int upthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg);
int upthread_join(pthread_t thread, void **retval);
int upthread_detach(pthread_t thread);
void upthread_exit(void *retval) __attribute__((__noreturn__));
pthread_t upthread_self(void);
int upthread_equal(pthread_t a, pthread_t b);
int upthread_yield(void);
int upthread_sched_yield(void);

/* Thread attributes. */
int upthread_attr_init(pthread_attr_t *attr);
int upthread_attr_destroy(pthread_attr_t *attr);
int upthread_attr_setdetachstate(pthread_attr_t *attr, int state);
int upthread_attr_getdetachstate(const pthread_attr_t *attr, int *state);
int upthread_attr_setstacksize(pthread_attr_t *attr, size_t size);
int upthread_attr_getstacksize(const pthread_attr_t *attr, size_t *size);
int upthread_attr_setstack(pthread_attr_t *attr, void *addr, size_t size);
int upthread_attr_getstack(const pthread_attr_t *attr, void **addr, size_t *size);
int upthread_attr_setguardsize(pthread_attr_t *attr, size_t size);
int upthread_attr_getguardsize(const pthread_attr_t *attr, size_t *size);

/* Thread-specific data. */
int upthread_key_create(pthread_key_t *key, void (*destructor)(void *));
int upthread_key_delete(pthread_key_t key);
void *upthread_getspecific(pthread_key_t key);
int upthread_setspecific(pthread_key_t key, const void *value);

/* Cancellation. */
int upthread_cancel(pthread_t thread);
void upthread_testcancel(void);
int upthread_setcancelstate(int state, int *oldstate);
int upthread_setcanceltype(int type, int *oldtype);

/* Signals directed at one thread. */
int upthread_kill(pthread_t thread, int sig);
int upthread_sigmask(int how, const sigset_t *set, sigset_t *oldset);

/* Once. */
int upthread_once(pthread_once_t *once, void (*init)(void));

/* Mutexes and their attributes. */
int upthread_mutex_init(pthread_mutex_t *mutex, const pthread_mutexattr_t *attr);
int upthread_mutex_destroy(pthread_mutex_t *mutex);
int upthread_mutex_lock(pthread_mutex_t *mutex);
int upthread_mutex_trylock(pthread_mutex_t *mutex);
int upthread_mutex_timedlock(pthread_mutex_t *mutex, const struct timespec *abstime);
int upthread_mutex_unlock(pthread_mutex_t *mutex);
int upthread_mutexattr_init(pthread_mutexattr_t *attr);
int upthread_mutexattr_destroy(pthread_mutexattr_t *attr);
int upthread_mutexattr_settype(pthread_mutexattr_t *attr, int type);
int upthread_mutexattr_gettype(const pthread_mutexattr_t *attr, int *type);
int upthread_mutexattr_setpshared(pthread_mutexattr_t *attr, int pshared);
int upthread_mutexattr_getpshared(const pthread_mutexattr_t *attr, int *pshared);

/* Condition variables and their attributes. */
int upthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr);
int upthread_cond_destroy(pthread_cond_t *cond);
int upthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex);
int upthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *abstime);
int upthread_cond_signal(pthread_cond_t *cond);
int upthread_cond_broadcast(pthread_cond_t *cond);
int upthread_condattr_init(pthread_condattr_t *attr);
int upthread_condattr_destroy(pthread_condattr_t *attr);
int upthread_condattr_setclock(pthread_condattr_t *attr, clockid_t clock);
int upthread_condattr_getclock(const pthread_condattr_t *attr, clockid_t *clock);
int upthread_condattr_setpshared(pthread_condattr_t *attr, int pshared);
int upthread_condattr_getpshared(const pthread_condattr_t *attr, int *pshared);

/* Reader/writer locks and their attributes. */
int upthread_rwlock_init(pthread_rwlock_t *rwlock, const pthread_rwlockattr_t *attr);
int upthread_rwlock_destroy(pthread_rwlock_t *rwlock);
int upthread_rwlock_rdlock(pthread_rwlock_t *rwlock);
int upthread_rwlock_tryrdlock(pthread_rwlock_t *rwlock);
int upthread_rwlock_timedrdlock(pthread_rwlock_t *rwlock, const struct timespec *abstime);
int upthread_rwlock_wrlock(pthread_rwlock_t *rwlock);
int upthread_rwlock_trywrlock(pthread_rwlock_t *rwlock);
int upthread_rwlock_timedwrlock(pthread_rwlock_t *rwlock, const struct timespec *abstime);
int upthread_rwlock_unlock(pthread_rwlock_t *rwlock);
int upthread_rwlockattr_init(pthread_rwlockattr_t *attr);
int upthread_rwlockattr_destroy(pthread_rwlockattr_t *attr);
int upthread_rwlockattr_setpshared(pthread_rwlockattr_t *attr, int pshared);
int upthread_rwlockattr_getpshared(const pthread_rwlockattr_t *attr, int *pshared);
int upthread_rwlockattr_setkind_np(pthread_rwlockattr_t *attr, int kind);
int upthread_rwlockattr_getkind_np(const pthread_rwlockattr_t *attr, int *kind);

/* Barriers and their attributes. */
int upthread_barrier_init(pthread_barrier_t *barrier, const pthread_barrierattr_t *attr, unsigned count);
int upthread_barrier_destroy(pthread_barrier_t *barrier);
int upthread_barrier_wait(pthread_barrier_t *barrier);
int upthread_barrierattr_init(pthread_barrierattr_t *attr);
int upthread_barrierattr_destroy(pthread_barrierattr_t *attr);
int upthread_barrierattr_setpshared(pthread_barrierattr_t *attr, int pshared);
int upthread_barrierattr_getpshared(const pthread_barrierattr_t *attr, int *pshared);

/* Spinlocks. */
int upthread_spin_init(pthread_spinlock_t *lock, int pshared);
int upthread_spin_destroy(pthread_spinlock_t *lock);
int upthread_spin_lock(pthread_spinlock_t *lock);
int upthread_spin_trylock(pthread_spinlock_t *lock);
int upthread_spin_unlock(pthread_spinlock_t *lock);

/* Semaphores (the sem_* convention: -1 and errno on failure). */
int upthread_sem_init(sem_t *sem, int pshared, unsigned value);
int upthread_sem_destroy(sem_t *sem);
int upthread_sem_wait(sem_t *sem);
int upthread_sem_trywait(sem_t *sem);
int upthread_sem_timedwait(sem_t *sem, const struct timespec *abstime);
int upthread_sem_post(sem_t *sem);
int upthread_sem_getvalue(sem_t *sem, int *value);

/* Cleanup handlers: the implementation of pthread_cleanup_push/pop, which are macros
 * (<pthread.h> in this directory defines them over these, under upthread_compat.h). */
#include "upthread_cleanup.h"

#ifdef __cplusplus
}
#endif

#endif /* UPTHREAD_H */
