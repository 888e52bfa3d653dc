/* upthread_cleanup.h: the cleanup-handler frame behind pthread_cleanup_push/pop.
 *
 * Shared by upthread.h (which declares every upthread_* function) and by <pthread.h> in
 * this directory (which, under upthread_compat.h, defines the two macros over these
 * functions). A buffer lives in the pushing function's block, from the push to the
 * matching pop, so it needs no allocation; its fields are upthread's. The handlers of
 * the buffers still pushed run, newest first, when the thread is cancelled or calls
 * pthread_exit; the stack is not unwound, so the buffers are still in place while they
 * run.
 */
#ifndef UPTHREAD_CLEANUP_H
#define UPTHREAD_CLEANUP_H
#ifdef __cplusplus
extern "C" {
#endif
struct upthread_cleanup_buffer {
    void (*routine)(void *);
    void *arg;
    struct upthread_cleanup_buffer *prev;
    void *reserved;
};
void upthread_cleanup_push_impl(struct upthread_cleanup_buffer *buf, void (*routine)(void *), void *arg);
void upthread_cleanup_pop_impl(struct upthread_cleanup_buffer *buf, int execute);
#ifdef __cplusplus
}
#endif
#endif
