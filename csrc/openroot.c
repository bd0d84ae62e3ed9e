/* Open a file inside a directory tree as if that directory were / (for
 * files in a container's root, which the container controls). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ocirt.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif

struct open_how_v0 {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};

#define READ_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Without openat2 (Linux < 5.6): walk the components, refusing every
 * symlink and "..", which is stricter than RESOLVE_IN_ROOT. */
static int open_walking(int dirfd, const char *path)
{
	char part[256];
	int cur = dirfd;

	for (const char *p = path;;) {
		while (*p == '/')
			p++;
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		int last = !end || !end[strspn(end, "/")];
		if (len == 0 || len >= sizeof part) {
			errno = len ? ENAMETOOLONG : EINVAL;
			goto fail;
		}
		memcpy(part, p, len);
		part[len] = '\0';
		if (strcmp(part, "..") == 0) {
			errno = EXDEV;
			goto fail;
		}
		int next = openat(cur, part, last ? READ_FLAGS | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != dirfd)
			close(cur);
		cur = next;
		if (cur < 0)
			return -1;
		if (last)
			return cur;
		p = end;
	}
fail:
	if (cur != dirfd) {
		int err = errno;
		close(cur);
		errno = err;
	}
	return -1;
}

int ocirt_open_in_root(int dirfd, const char *path)
{
	struct open_how_v0 how = {READ_FLAGS, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	struct stat st;
	int fd;

	fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
	if (fd < 0 && errno == ENOSYS)
		fd = open_walking(dirfd, path);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int err = S_ISREG(st.st_mode) ? errno : EINVAL;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}
