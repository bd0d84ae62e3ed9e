/*
 * ocirt native helpers: plain C, no Python.h.
 *
 * Every function returns -1 and sets errno on failure. Blocking functions
 * take a timeout in milliseconds (-1 waits forever) and are safe to call
 * without the GIL.
 */
#ifndef OCIRT_H
#define OCIRT_H

#include <stddef.h>
#include <sys/types.h>

/* ocirt_spawn flags */
#define OCIRT_SPAWN_SETSID 1  /* child calls setsid() */
#define OCIRT_SPAWN_SETPGID 2 /* child becomes its own process group leader */

/* wait flags: force the fallback paths (also used by tests) */
#define OCIRT_WAIT_NO_PIDFD 1   /* kill(pid, 0) with adaptive sleeps */
#define OCIRT_WAIT_NO_INOTIFY 2 /* stat() with backoff */

/* At most this many (source -> target) pairs per spawn. */
#define OCIRT_SPAWN_MAX_FDS 64

/* The step of a spawn that failed in the child (ocirt_spawn's failed_step). */
#define OCIRT_STEP_FDS 1     /* placing the fds */
#define OCIRT_STEP_CGROUP 2  /* writing to a cgroup file */
#define OCIRT_STEP_CHDIR 3
#define OCIRT_STEP_SESSION 4 /* setsid / setpgid */
#define OCIRT_STEP_EXEC 5

/*
 * Fork and exec `path` with `argv` and `envp` (NULL: this process's
 * environ). `fdmap` holds `nfds` pairs (fdmap[2i] = source fd in the
 * parent, fdmap[2i+1] = target fd in the child); every pair is placed
 * exactly, whatever the overlap between sources and targets, and every fd
 * that is not a target is closed in the child. The child first writes "0"
 * to each of the `ncgroups` open cgroup files in `cgroups` (a v1 `tasks`
 * or a v2 `cgroup.procs` file): it moves itself there before it runs
 * anything. Signal dispositions and the signal mask are reset in the
 * child.
 * Returns the child's pid, or -1 with errno set, including the errno of a
 * failure in the child (which is then already reaped); `failed_step`
 * (when not NULL) then says which OCIRT_STEP_* failed, 0 if the parent did.
 */
pid_t ocirt_spawn(const char *path, char *const argv[], char *const envp[],
                  const int *fdmap, size_t nfds, const int *cgroups, size_t ncgroups,
                  const char *cwd, int flags, int *failed_step);

/* socketpair(AF_UNIX, type | SOCK_CLOEXEC). */
int ocirt_socketpair(int type, int fds[2]);

/* pidfd_open(pid, 0); ENOSYS where the kernel lacks it. */
int ocirt_pidfd_open(pid_t pid);

/* pidfd_send_signal(pidfd, sig, NULL, 0). */
int ocirt_pidfd_send_signal(int pidfd, int sig);

/* prctl(PR_SET_CHILD_SUBREAPER, on). */
int ocirt_set_subreaper(int on);

/* 1 if `pid` has exited (gone, or a zombie nobody reaped yet), else 0. */
int ocirt_pid_gone(pid_t pid);

/*
 * Waits return -1 with EINTR when a signal arrives, so that the caller can
 * run its signal handlers (Ctrl-C) and wait again with the time left.
 */

/*
 * Wait until every pid in `pids` has exited; a zombie counts as exited (the
 * fallback without pidfds reads /proc/<pid>/stat for that). Returns 0 when
 * all are gone, -1 with ETIMEDOUT on timeout.
 * On return, `alive` (when not NULL) holds 1 for each pid still running.
 */
int ocirt_wait_pids(const pid_t *pids, size_t n, int timeout_ms, int flags,
                    unsigned char *alive);

/*
 * Wait until `dir`/`name` exists. The inotify watch (IN_CREATE, IN_MOVED_TO,
 * IN_CLOSE_WRITE) is armed before the first existence check, so an
 * appearance between the two is never missed. A guard process that exits
 * while the file is still missing fails the wait with ESRCH: `guard_fd`, a
 * pidfd the caller holds (it names exactly the process meant), else
 * `guard_pid` (> 0). Returns 0 when the file exists, -1 with ETIMEDOUT on
 * timeout.
 */
int ocirt_wait_file(const char *dir, const char *name, int timeout_ms,
                    pid_t guard_pid, int guard_fd, int flags);

/*
 * Wait until the file `path` is written to, renamed or removed, or return
 * at once if its size is no longer `known_size` (checked after the watch is
 * armed, so no write is missed; -1 skips the check; without inotify only a
 * size change is seen). The guard is as for ocirt_wait_file (ESRCH).
 * ETIMEDOUT on timeout. For following a log: read, then wait, then read.
 */
int ocirt_wait_change(const char *path, long long known_size, int timeout_ms,
                      pid_t guard_pid, int guard_fd, int flags);

/*
 * Open the regular file `path` for reading beneath the directory `dirfd`,
 * resolved as if `dirfd` were the root: symlinks and ".." cannot lead out
 * (openat2 RESOLVE_IN_ROOT; without openat2 every symlink is refused).
 * Never blocks (O_NONBLOCK: a FIFO cannot hang it); anything but a regular
 * file fails with EINVAL. Returns a close-on-exec fd.
 */
int ocirt_open_in_root(int dirfd, const char *path);

/*
 * For an event loop: an inotify instance (from the pool) watching `dir` for
 * files that appear (IN_CREATE, IN_MOVED_TO, IN_CLOSE_WRITE); *wd receives
 * the watch. Poll the fd; ocirt_watch_seen drains its events and says
 * whether one named `name` (or events were lost: look for yourself);
 * ocirt_watch_close removes the watch and gives the instance back.
 */
int ocirt_watch_open(const char *dir, int *wd);
int ocirt_watch_seen(int fd, const char *name);
void ocirt_watch_close(int fd, int wd);

/*
 * A network namespace of its own, kept by a bind mount on `path` (a new
 * file: EEXIST if it is there), made by a child process so that no thread
 * here changes namespace; ocirt_netns_remove unmounts and unlinks it (what
 * is already gone is not an error).
 */
int ocirt_netns_make(const char *path);
int ocirt_netns_remove(const char *path);

/* Idle inotify instances kept for reuse by ocirt_wait_file (at most 8). */
int ocirt_inotify_pool_size(void);

#endif
