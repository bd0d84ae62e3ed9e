/* Network namespaces kept by a file: made before a container's create (its
 * spec names the file), removed with it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ocirt.h"

int ocirt_netns_make(const char *path)
{
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	close(fd);
	/* A child of its own unshares, so that no thread of this process ever
	 * leaves its namespace; the bind mount keeps the namespace once the
	 * child is gone. The child runs nothing but system calls. */
	pid_t pid = fork();
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0 || mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
			_exit(errno ? errno : EIO);
		_exit(0);
	}
	int err = 0, status;
	if (pid < 0)
		err = errno;
	else {
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR) {
				err = errno;
				break;
			}
		if (!err && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			err = WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD;
	}
	if (err) {
		unlink(path);
		errno = err;
		return -1;
	}
	return 0;
}

int ocirt_netns_remove(const char *path)
{
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return -1;
	return 0;
}
