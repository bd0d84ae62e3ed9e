/* Process spawning with exact fd placement and an exec error pipe. */
#define _GNU_SOURCE
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

/* Close fds in [lo, hi]; close_range where available, else one by one. */
static void close_span(int lo, int hi)
{
	if (lo > hi)
		return;
	if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
		return;
	struct rlimit rl;
	int top = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
			  ? (int)rl.rlim_cur : 65536;
	if (hi > top)
		hi = top;
	for (int fd = lo; fd <= hi; fd++)
		close(fd);
}

static int is_target(const int *fdmap, size_t nfds, int fd)
{
	for (size_t i = 0; i < nfds; i++)
		if (fdmap[2 * i + 1] == fd)
			return 1;
	return 0;
}

/* Runs in the vfork child: raw syscalls only, no return, no heap. */
static void child(const char *path, char *const argv[], char *const envp[],
		  const int *fdmap, size_t nfds, const char *cwd, int flags,
		  int errfd)
{
	int tmp[OCIRT_SPAWN_MAX_FDS];
	int top = 2; /* fds 0-2 are always closed unless they are targets */
	int err;

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);

	for (size_t i = 0; i < nfds; i++)
		if (fdmap[2 * i + 1] > top)
			top = fdmap[2 * i + 1];

	/* Lift the error pipe and every source above all targets first, so
	 * that no dup2 below can clobber a source still to be placed. */
	errfd = fcntl(errfd, F_DUPFD_CLOEXEC, top + 1);
	if (errfd < 0)
		_exit(127);
	for (size_t i = 0; i < nfds; i++) {
		tmp[i] = fcntl(fdmap[2 * i], F_DUPFD_CLOEXEC, top + 1);
		if (tmp[i] < 0)
			goto fail;
	}
	for (size_t i = 0; i < nfds; i++)
		if (dup2(tmp[i], fdmap[2 * i + 1]) < 0) /* dup2 clears CLOEXEC */
			goto fail;

	for (int fd = 0; fd <= top; fd++)
		if (!is_target(fdmap, nfds, fd))
			close(fd);
	close_span(top + 1, errfd - 1);
	close_span(errfd + 1, ~0U >> 1);

	if (cwd && chdir(cwd) < 0)
		goto fail;
	if ((flags & OCIRT_SPAWN_SETSID) && setsid() < 0)
		goto fail;
	if ((flags & OCIRT_SPAWN_SETPGID) && setpgid(0, 0) < 0)
		goto fail;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	execve(path, argv, envp);
fail:
	err = errno;
	while (write(errfd, &err, sizeof err) < 0 && errno == EINTR)
		;
	_exit(127);
}

pid_t ocirt_spawn(const char *path, char *const argv[], char *const envp[],
		  const int *fdmap, size_t nfds, const char *cwd, int flags)
{
	int errpipe[2];
	sigset_t all, old;
	pid_t pid;
	int err = 0;
	ssize_t n;

	if (nfds > OCIRT_SPAWN_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < nfds; i++) {
		if (fdmap[2 * i] < 0 || fdmap[2 * i + 1] < 0 ||
		    fcntl(fdmap[2 * i], F_GETFD) < 0) {
			errno = EBADF;
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (fdmap[2 * j + 1] == fdmap[2 * i + 1]) {
				errno = EINVAL; /* two sources for one target */
				return -1;
			}
	}
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
		child(path, argv, envp, fdmap, nfds, cwd, flags, errpipe[1]);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(errpipe[1]);
	if (pid < 0) {
		close(errpipe[0]);
		errno = err;
		return -1;
	}

	do
		n = read(errpipe[0], &err, sizeof err);
	while (n < 0 && errno == EINTR);
	close(errpipe[0]);
	if (n == sizeof err) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = err;
		return -1;
	}
	return pid;
}

int ocirt_socketpair(int type, int fds[2])
{
	return socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds);
}
