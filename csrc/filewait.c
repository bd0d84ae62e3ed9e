/* Wait for a file to appear or change: inotify armed before the check,
 * with a stat backoff fallback, optionally guarded by a process. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ocirt.h"

#define BACKOFF_START_US 100
#define BACKOFF_MAX_US 10000

/*
 * Closing an inotify instance waits for an SRCU grace period in the kernel
 * (fsnotify_wait_marks_destroyed), about 10-15 ms: more than a whole
 * container start. So instances are kept in a small pool and reused:
 * removing a watch does not wait, and its leftover events are drained.
 */
#define POOL_MAX 8
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool[POOL_MAX];
static int pool_len;

/* A forked child shares the pooled instances' open files with its parent:
 * a wait in one would drain the other's events and remove its watches. The
 * child forgets them (its copies are its own to close; the mutex may have
 * been held by a thread that does not exist in the child). */
static void pool_forget_in_child(void)
{
	for (int i = 0; i < pool_len; i++)
		close(pool[i]);
	pool_len = 0;
	pthread_mutex_init(&pool_lock, NULL);
}

static void pool_init(void)
{
	pthread_atfork(NULL, NULL, pool_forget_in_child);
}

static int inotify_get(void)
{
	int fd = -1;

	pthread_once(&pool_once, pool_init);
	pthread_mutex_lock(&pool_lock);
	if (pool_len > 0)
		fd = pool[--pool_len];
	pthread_mutex_unlock(&pool_lock);
	return fd >= 0 ? fd : inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
}

static void inotify_put(int fd, int wd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (wd >= 0 && inotify_rm_watch(fd, wd) < 0) {
		close(fd);
		return;
	}
	while (read(fd, buf, sizeof buf) > 0)
		; /* the old watch's events, and its IN_IGNORED */
	pthread_mutex_lock(&pool_lock);
	if (pool_len < POOL_MAX) {
		pool[pool_len++] = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&pool_lock);
	if (fd >= 0)
		close(fd);
}

int ocirt_inotify_pool_size(void)
{
	pthread_mutex_lock(&pool_lock);
	int n = pool_len;
	pthread_mutex_unlock(&pool_lock);
	return n;
}

/*
 * The guard of a wait: a pidfd the caller holds (`guard_fd`, used and left
 * open), else one opened here from `guard_pid` (closed when done), else
 * kill(pid, 0) checks (`*periodic` is then set: the wait must look again
 * from time to time). Returns the pidfd to poll, or -1 (none, or errno).
 */
static int guard_open(pid_t guard_pid, int guard_fd, int flags, int *owned, int *periodic)
{
	*owned = 0;
	if (flags & OCIRT_WAIT_NO_PIDFD) {
		*periodic = guard_pid > 0;
		errno = 0;
		return -1;
	}
	if (guard_fd >= 0)
		return guard_fd;
	if (guard_pid <= 0) {
		errno = 0;
		return -1;
	}
	int fd = ocirt_pidfd_open(guard_pid);
	if (fd >= 0) {
		*owned = 1;
		return fd;
	}
	if (errno == ENOSYS || errno == ESRCH) {
		*periodic = 1; /* ESRCH: gone (or a zombie): the checks below see it */
		errno = 0;
	}
	return -1;
}

/* 1 if the guard has exited, going by the last poll or by kill(pid, 0). */
static int guard_gone(const struct pollfd *guard, pid_t guard_pid)
{
	if (guard->fd >= 0)
		return guard->revents != 0;
	return guard_pid > 0 && ocirt_pid_gone(guard_pid);
}

/* Release a wait's inotify instance (to the pool) and the guard pidfd it opened; set errno. */
static int finish(struct pollfd pfds[2], int wd, int owned_guard, int ret, int err)
{
	if (pfds[0].fd >= 0)
		inotify_put(pfds[0].fd, wd);
	if (owned_guard && pfds[1].fd >= 0)
		close(pfds[1].fd);
	if (ret < 0)
		errno = err;
	return ret;
}

/* Drain pending inotify events; 1 if one of them names `name`. */
static int drain_events(int ifd, const char *name)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int seen = 0;
	ssize_t len;

	while ((len = read(ifd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + len;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->len && strcmp(ev->name, name) == 0)
				seen = 1;
			if (ev->mask & IN_Q_OVERFLOW)
				seen = 1; /* events were lost: look for ourselves */
			p += sizeof *ev + ev->len;
		}
	}
	return seen;
}

int ocirt_watch_open(const char *dir, int *wd)
{
	int fd = inotify_get();

	if (fd < 0)
		return -1;
	*wd = inotify_add_watch(fd, dir, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);
	if (*wd < 0) {
		int err = errno;
		inotify_put(fd, -1);
		errno = err;
		return -1;
	}
	return fd;
}

int ocirt_watch_seen(int fd, const char *name)
{
	return drain_events(fd, name);
}

void ocirt_watch_close(int fd, int wd)
{
	inotify_put(fd, wd);
}

/* Arm a wait's two sources: an inotify watch on `path` for `mask` (none,
 * and polling with backoff instead, when inotify is off or out of
 * instances: a per-user limit) and the guard. 0, or -1 with errno set;
 * either way the caller finish()es what was armed. */
static int arm_wait(struct pollfd pfds[2], const char *path, uint32_t mask, pid_t guard_pid, int guard_fd,
		    int flags, int *wd, int *owned, int *periodic)
{
	if (!(flags & OCIRT_WAIT_NO_INOTIFY)) {
		pfds[0].fd = inotify_get();
		if (pfds[0].fd < 0 && errno != EMFILE && errno != ENFILE && errno != ENOMEM)
			return -1;
		if (pfds[0].fd >= 0) {
			*wd = inotify_add_watch(pfds[0].fd, path, mask);
			if (*wd < 0)
				return -1;
		}
	}
	pfds[1].fd = guard_open(guard_pid, guard_fd, flags, owned, periodic);
	if (pfds[1].fd < 0 && errno)
		return -1;
	/* Polling (not sleeping on events) is needed where a source lacks an fd. */
	*periodic |= pfds[0].fd < 0;
	return 0;
}

int ocirt_wait_file(const char *dir, const char *name, int timeout_ms,
		    pid_t guard_pid, int guard_fd, int flags)
{
	long long deadline = ocirt_deadline(timeout_ms);
	char path[PATH_MAX];
	struct pollfd pfds[2] = {{.fd = -1, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
	int delay = BACKOFF_START_US;
	int ret = -1, err = 0, wd = -1, owned = 0, periodic = 0;

	if (!name[0] || strchr(name, '/')) {
		errno = EINVAL;
		return -1;
	}
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (arm_wait(pfds, dir, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE, guard_pid, guard_fd, flags, &wd, &owned, &periodic) < 0) {
		err = errno;
		goto out;
	}

	/* Poll at least once, even with no time left: the guard's state is
	 * only known from a poll. */
	for (int check = 1, polled = 0;; polled = 1) {
		if (check && access(path, F_OK) == 0) {
			ret = 0;
			goto out;
		}
		if (guard_gone(&pfds[1], guard_pid)) {
			/* The guard may have written the file just before exiting. */
			if (access(path, F_OK) == 0) {
				ret = 0;
				goto out;
			}
			err = ESRCH;
			goto out;
		}
		int left = ocirt_ms_left(deadline);
		if (left == 0 && polled) {
			err = ETIMEDOUT;
			goto out;
		}
		int wait_ms = left;
		if (periodic) {
			wait_ms = ocirt_min_timeout(left, (delay + 999) / 1000);
			delay = delay * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : delay * 2;
		}
		pfds[0].revents = pfds[1].revents = 0;
		if (poll(pfds, 2, wait_ms) < 0) {
			err = errno; /* EINTR too: the caller runs signal handlers, then waits again */
			goto out;
		}
		check = pfds[0].fd < 0 || (pfds[0].revents && drain_events(pfds[0].fd, name));
	}
out:
	return finish(pfds, wd, owned, ret, err);
}

int ocirt_wait_change(const char *path, long long known_size, int timeout_ms,
		      pid_t guard_pid, int guard_fd, int flags)
{
	struct stat st;
	long long deadline = ocirt_deadline(timeout_ms);
	struct pollfd pfds[2] = {{.fd = -1, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
	int delay = BACKOFF_START_US;
	int ret = -1, err = 0, wd = -1, owned = 0, periodic = 0;

	if (arm_wait(pfds, path, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF,
		     guard_pid, guard_fd, flags, &wd, &owned, &periodic) < 0) {
		err = errno;
		goto out;
	}

	for (int polled = 0;; polled = 1) {
		/* Armed (or polling): a write since the caller's read shows in the size. */
		if (known_size >= 0 && stat(path, &st) == 0 && st.st_size != known_size) {
			ret = 0;
			goto out;
		}
		if (pfds[0].fd >= 0 && pfds[0].revents) {
			ret = 0;
			goto out;
		}
		if (guard_gone(&pfds[1], guard_pid)) {
			err = ESRCH;
			goto out;
		}
		int left = ocirt_ms_left(deadline);
		if (left == 0 && polled) {
			err = ETIMEDOUT;
			goto out;
		}
		int wait_ms = left;
		if (periodic) {
			wait_ms = ocirt_min_timeout(left, (delay + 999) / 1000);
			delay = delay * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : delay * 2;
		}
		pfds[0].revents = pfds[1].revents = 0;
		if (poll(pfds, 2, wait_ms) < 0) {
			err = errno;
			goto out;
		}
	}
out:
	return finish(pfds, wd, owned, ret, err);
}
