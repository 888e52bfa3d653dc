/* Built against upthread only. The library's constructor moves main onto vcore 0 before
 * main starts (DESIGN.md §3: the first vcore request moves the calling context onto
 * vcore 0, and the process's first task only waits). So a main that runs as a uthread
 * runs on a vcore's Linux task, whose thread id is not the process id. This program
 * uses no pthread function: it also shows that the constructor is linked in when
 * nothing else from the library is. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long tid = syscall(SYS_gettid);
    printf("main runs on %s\n", tid == (long)getpid() ? "the process's first task" : "a vcore task");
    return 0;
}
