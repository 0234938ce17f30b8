/* SIGQUIT's "backtrace of every thread" for the C worker (docs/c-sdk.md, "Threading and process
 * rules").
 *
 * backtrace() only walks the calling thread, so the thread that took SIGQUIT writes its own
 * stack, then sends FY_WORKER_BACKTRACE_SIGNAL to every other thread of the process in turn,
 * each of which writes its own stack from that signal's handler. The sender waits for each
 * thread's answer (a bounded wait: a thread that blocks the signal cannot answer), so the
 * stacks reach the log one after the other, not interleaved.
 *
 * Only async-signal-safe calls are made from the handlers (open, getdents64, tgkill,
 * nanosleep, write). backtrace() itself is safe once libgcc is loaded, which
 * fy_worker_backtraces_install does. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <execinfo.h>
#endif

#include "core/log.h"
#include "worker/worker_internal.h"

/* How long one thread gets to write its stack before the next is asked. */
#define ANSWER_WAIT_NS (100L * 1000 * 1000)
/* More threads than this are counted but not walked: the log stays bounded. */
#define MAX_THREADS_WALKED 64

static atomic_int answers;
static pid_t skipped_tid; /* ferry's own owner-watch thread: it blocks every signal */

static pid_t current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Writes "<prefix> tid=N" and the calling thread's stack to the log. */
static void write_own_stack(const char *prefix)
{
    char line[160];
    size_t len = 0;
    line[0] = '\0';
    fy_sig_append(line, sizeof line, &len, prefix);
    fy_sig_append(line, sizeof line, &len, " tid=");
    fy_sig_append_int(line, sizeof line, &len, (long)current_tid());
    fy_log_sigsafe(FY_LOG_WARN, "worker", line);
#ifdef __GLIBC__
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, fy_log_get_fd());
#endif
}

static void on_backtrace_signal(int sig)
{
    (void)sig;
    int saved = errno;
    write_own_stack("SIGQUIT: thread");
    atomic_fetch_add(&answers, 1);
    errno = saved;
}

int fy_worker_backtraces_install(void)
{
#ifdef __GLIBC__
    /* The first backtrace() loads libgcc; do it now, not inside a signal handler. */
    void *frame;
    backtrace(&frame, 1);
#endif
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_backtrace_signal;
    if (sigaction(FY_WORKER_BACKTRACE_SIGNAL, &sa, NULL) == -1)
        return -errno;
    return 0;
}

void fy_worker_backtraces_skip_thread(pid_t tid)
{
    skipped_tid = tid;
}

/* Parses a decimal directory name; -1 when it is not one. */
static long parse_tid(const char *name)
{
    long v = 0;
    if (*name == '\0')
        return -1;
    for (; *name; name++) {
        if (*name < '0' || *name > '9' || v > 100000000L)
            return -1;
        v = v * 10 + (*name - '0');
    }
    return v;
}

static void wait_for_answer(int expected)
{
    struct timespec step = {0, 1000 * 1000};
    for (long waited = 0; waited < ANSWER_WAIT_NS; waited += step.tv_nsec) {
        if (atomic_load(&answers) >= expected)
            return;
        nanosleep(&step, NULL);
    }
}

void fy_worker_backtraces_write(void)
{
    write_own_stack("SIGQUIT: thread (took the signal)");
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return;
    pid_t self = current_tid();
    pid_t pid = getpid();
    int asked = 0, unanswered = 0, not_walked = 0;
    atomic_store(&answers, 0);
    char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            long tid = parse_tid(d->d_name);
            if (tid <= 0 || tid == self || tid == skipped_tid)
                continue;
            if (asked >= MAX_THREADS_WALKED) {
                not_walked++;
                continue;
            }
            if (syscall(SYS_tgkill, pid, (pid_t)tid, FY_WORKER_BACKTRACE_SIGNAL) != 0)
                continue; /* it exited meanwhile */
            asked++;
            int before = atomic_load(&answers);
            wait_for_answer(asked);
            if (atomic_load(&answers) == before)
                unanswered++;
        }
    }
    close(fd);
    char line[200];
    size_t len = 0;
    line[0] = '\0';
    fy_sig_append(line, sizeof line, &len, "SIGQUIT: backtraces written for ");
    fy_sig_append_int(line, sizeof line, &len, (long)(1 + asked - unanswered));
    fy_sig_append(line, sizeof line, &len, " thread(s)");
    if (unanswered > 0) {
        fy_sig_append(line, sizeof line, &len, "; ");
        fy_sig_append_int(line, sizeof line, &len, (long)unanswered);
        fy_sig_append(line, sizeof line, &len, " did not answer within 100 ms (signal blocked?)");
    }
    if (not_walked > 0) {
        fy_sig_append(line, sizeof line, &len, "; ");
        fy_sig_append_int(line, sizeof line, &len, (long)not_walked);
        fy_sig_append(line, sizeof line, &len, " more not walked");
    }
    fy_log_sigsafe(FY_LOG_WARN, "worker", line);
}
