/* Process exit waits and signals: pidfds, with a kill(pid, 0) fallback. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "ocirt.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* The fallback's sleeps: start short so a quick exit is seen quickly. */
#define BACKOFF_START_US 50
#define BACKOFF_MAX_US 5000

int ocirt_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int ocirt_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int ocirt_set_subreaper(int on)
{
	return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0);
}

int ocirt_pid_gone(pid_t pid)
{
	char path[64], buf[512];
	ssize_t n;
	int fd;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 1;
	/* A zombie still answers kill(pid, 0): it has exited all the same. */
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end = strrchr(buf, ')'); /* the command name may hold spaces and parens */
	return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
}

static int wait_pids_kill(const pid_t *pids, size_t n, long long deadline,
			  unsigned char *alive)
{
	int delay = BACKOFF_START_US;

	for (;;) {
		size_t running = 0;
		for (size_t i = 0; i < n; i++) {
			if (!alive[i])
				continue;
			if (ocirt_pid_gone(pids[i]))
				alive[i] = 0;
			else
				running++;
		}
		if (running == 0)
			return 0;
		int left = ocirt_ms_left(deadline);
		if (left == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (left > 0 && delay > left * 1000)
			delay = left * 1000;
		if (ocirt_backoff(&delay, BACKOFF_MAX_US) < 0)
			return -1; /* EINTR: the caller runs signal handlers, then waits again */
	}
}

static int wait_pidfds(struct pollfd *pfds, size_t n, long long deadline,
		       unsigned char *alive)
{
	for (;;) {
		size_t running = 0;
		for (size_t i = 0; i < n; i++)
			running += alive[i];
		if (running == 0)
			return 0;
		int left = ocirt_ms_left(deadline);
		int r = poll(pfds, n, left);
		if (r < 0)
			return -1; /* EINTR too: the caller runs signal handlers, then waits again */
		if (r == 0 && left == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		for (size_t i = 0; r > 0 && i < n; i++) {
			if (pfds[i].fd >= 0 && pfds[i].revents) {
				close(pfds[i].fd);
				pfds[i].fd = -1;
				alive[i] = 0;
			}
		}
	}
}

int ocirt_wait_pids(const pid_t *pids, size_t n, int timeout_ms, int flags,
		    unsigned char *alive_out)
{
	long long deadline = ocirt_deadline(timeout_ms);
	unsigned char *alive = calloc(n ? n : 1, 1);
	struct pollfd *pfds = calloc(n ? n : 1, sizeof *pfds);
	int use_pidfd = !(flags & OCIRT_WAIT_NO_PIDFD);
	int ret = -1, err;

	if (!alive || !pfds) {
		err = ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		alive[i] = 1;
		pfds[i].fd = -1;
		pfds[i].events = POLLIN;
		if (!use_pidfd)
			continue;
		pfds[i].fd = ocirt_pidfd_open(pids[i]);
		if (pfds[i].fd >= 0)
			continue;
		if (errno == ESRCH) {
			alive[i] = 0;
		} else if (errno == ENOSYS) {
			use_pidfd = 0;
		} else {
			err = errno;
			goto out;
		}
	}
	ret = use_pidfd ? wait_pidfds(pfds, n, deadline, alive)
			: wait_pids_kill(pids, n, deadline, alive);
	err = errno;
out:
	for (size_t i = 0; pfds && i < n; i++)
		if (pfds[i].fd >= 0)
			close(pfds[i].fd);
	if (alive_out && alive)
		for (size_t i = 0; i < n; i++)
			alive_out[i] = alive[i];
	free(alive);
	free(pfds);
	errno = err;
	return ret;
}
