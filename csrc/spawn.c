/* Process spawning with exact fd placement, cgroup self-placement and an
 * error pipe that says which step failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ocirt.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct failure {
	int step;
	int err;
};

/* Close every fd in [lo, hi]: close_range where the kernel has it, else
 * the fds /proc/self/fd lists (raw getdents64: no heap in a vfork child). */
static void close_span(int lo, int hi)
{
	char buf[1024] __attribute__((aligned(8)));
	int closed;

	if (lo > hi)
		return;
	if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
		return;
	do {
		int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		long n;

		if (dir < 0)
			return;
		closed = 0;
		while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
			for (long off = 0; off < n;) {
				struct dirent64 *d = (struct dirent64 *)(buf + off);
				int fd = 0;

				for (const char *c = d->d_name; *c >= '0' && *c <= '9'; c++)
					fd = fd * 10 + (*c - '0');
				if (d->d_name[0] >= '0' && d->d_name[0] <= '9' && fd != dir && fd >= lo && fd <= hi) {
					close(fd);
					closed = 1;
				}
				off += d->d_reclen;
			}
		}
		close(dir);
	} while (closed); /* closing while listing may hide entries: look again */
}

static int is_target(const int *fdmap, size_t nfds, int fd)
{
	for (size_t i = 0; i < nfds; i++)
		if (fdmap[2 * i + 1] == fd)
			return 1;
	return 0;
}

static void fail(int errfd, int step)
{
	struct failure f = {step, errno};

	while (write(errfd, &f, sizeof f) < 0 && errno == EINTR)
		;
	_exit(127);
}

/* Runs in the vfork child: raw syscalls only, no return, no heap. */
extern char **environ;

static void child(const char *path, char *const argv[], char *const envp[],
		  const int *fdmap, size_t nfds, const int *cgroups, size_t ncgroups,
		  const char *cwd, int flags, int errfd)
{
	int tmp[OCIRT_SPAWN_MAX_FDS];
	int top = 2; /* fds 0-2 are always closed unless they are targets */

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);

	/* A thread that moves itself skips the cgroup core's global
	 * threadgroup lock, whose write side waits an RCU grace period
	 * (5-10 ms) when a pid is written instead. */
	for (size_t i = 0; i < ncgroups; i++)
		if (write(cgroups[i], "0", 1) != 1)
			fail(errfd, OCIRT_STEP_CGROUP);

	for (size_t i = 0; i < nfds; i++)
		if (fdmap[2 * i + 1] > top)
			top = fdmap[2 * i + 1];

	/* Lift the error pipe and every source above all targets first, so
	 * that no dup2 below can clobber a source still to be placed. The
	 * pipe is still where it was if lifting it fails: say so there. */
	int lifted = fcntl(errfd, F_DUPFD_CLOEXEC, top + 1);
	if (lifted < 0)
		fail(errfd, OCIRT_STEP_FDS);
	errfd = lifted;
	for (size_t i = 0; i < nfds; i++) {
		tmp[i] = fcntl(fdmap[2 * i], F_DUPFD_CLOEXEC, top + 1);
		if (tmp[i] < 0)
			fail(errfd, OCIRT_STEP_FDS);
	}
	for (size_t i = 0; i < nfds; i++)
		if (dup2(tmp[i], fdmap[2 * i + 1]) < 0) /* dup2 clears CLOEXEC */
			fail(errfd, OCIRT_STEP_FDS);

	for (int fd = 0; fd <= top; fd++)
		if (!is_target(fdmap, nfds, fd))
			close(fd);
	close_span(top + 1, errfd - 1);
	close_span(errfd + 1, ~0U >> 1);

	if (cwd && chdir(cwd) < 0)
		fail(errfd, OCIRT_STEP_CHDIR);
	if ((flags & OCIRT_SPAWN_SETSID) && setsid() < 0)
		fail(errfd, OCIRT_STEP_SESSION);
	if ((flags & OCIRT_SPAWN_SETPGID) && setpgid(0, 0) < 0)
		fail(errfd, OCIRT_STEP_SESSION);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	execve(path, argv, envp ? envp : environ);
	fail(errfd, OCIRT_STEP_EXEC);
}

pid_t ocirt_spawn(const char *path, char *const argv[], char *const envp[],
		  const int *fdmap, size_t nfds, const int *cgroups, size_t ncgroups,
		  const char *cwd, int flags, int *failed_step)
{
	int errpipe[2];
	struct rlimit rl;
	sigset_t all, old;
	struct failure f = {0, 0};
	pid_t pid;
	int err = 0;
	ssize_t n;

	if (failed_step)
		*failed_step = 0;
	if (nfds > OCIRT_SPAWN_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	for (size_t i = 0; i < nfds; i++) {
		if (fdmap[2 * i] < 0 || fdmap[2 * i + 1] < 0 ||
		    fcntl(fdmap[2 * i], F_GETFD) < 0) {
			errno = EBADF;
			return -1;
		}
		/* The child could not place it (nor lift the others above it). */
		if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)fdmap[2 * i + 1] + nfds + 2 > rl.rlim_cur) {
			errno = EMFILE;
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (fdmap[2 * j + 1] == fdmap[2 * i + 1]) {
				errno = EINVAL; /* two sources for one target */
				return -1;
			}
	}
	for (size_t i = 0; i < ncgroups; i++)
		if (fcntl(cgroups[i], F_GETFD) < 0) {
			errno = EBADF;
			return -1;
		}
	/* Like any fork-and-exec, a fork() in another thread before the close
	 * below lends that child the pipe's write end: the read then waits for
	 * it too (CPython's subprocess shares the hazard). */
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return -1;

	/* Block signals so no handler of the parent runs in the child
	 * before dispositions are reset there. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* vfork: no copy of the caller's page tables (a large Python process
	 * takes over a millisecond to fork). The child only makes syscalls
	 * and never returns from child(); the parent resumes at its exec. */
	pid = vfork();
	if (pid == 0)
		child(path, argv, envp, fdmap, nfds, cgroups, ncgroups, cwd, flags, errpipe[1]);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(errpipe[1]);
	if (pid < 0) {
		close(errpipe[0]);
		errno = err;
		return -1;
	}

	do
		n = read(errpipe[0], &f, sizeof f);
	while (n < 0 && errno == EINTR);
	close(errpipe[0]);
	if (n == sizeof f) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (failed_step)
			*failed_step = f.step;
		errno = f.err;
		return -1;
	}
	return pid;
}

int ocirt_socketpair(int type, int fds[2])
{
	return socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds);
}
