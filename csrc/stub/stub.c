/* ocirt-stub: the first process of a pooled container (see ocirt/pool.py).
 *
 * Built static, bind-mounted read-only into the container and made its
 * process, it waits for one job on fd 3 (inherited through conmon and the
 * runtime as a socket-activation fd), then becomes it:
 *
 *     u32 length (little-endian), then `length` bytes:
 *     argv strings, each NUL-ended, then an empty string;
 *     env strings ("K=V"), each NUL-ended, then an empty string;
 *     the working directory, NUL-ended.
 *
 * fd 3 is either a connected socket or a listening one (a pool kept under
 * a name, whose jobs connect to it by path): then the job is read from the
 * first connection accepted.
 *
 * It closes fd 3, changes directory and execs argv[0], searched in the
 * job's PATH when it has no '/'. Exit codes as podman's: 125 for a
 * malformed job or a bad working directory, 126 for a command that cannot
 * be run, 127 for one not found; each with a message on stderr.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define JOB_FD 3
#define JOB_MAX (4u << 20) /* ocirt refuses a larger job before sending it */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void fail(int code, const char *what, const char *detail)
{
    fprintf(stderr, "ocirt-stub: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(code);
}

static int read_all(int fd, char *buf, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* The NUL-ended strings of buf[*at..end) up to an empty one, as a NULL-ended
 * array (malloc'd); NULL if the job ends first. */
static char **strings(char *buf, size_t *at, size_t end)
{
    size_t count = 0, i = *at;
    for (;;) {
        char *nul = memchr(buf + i, '\0', end - i);
        if (nul == NULL)
            return NULL;
        if (nul == buf + i)
            break;
        count++;
        i = (size_t)(nul - buf) + 1;
    }
    char **out = calloc(count + 1, sizeof(char *));
    if (out == NULL)
        fail(125, "out of memory", NULL);
    for (size_t k = 0; k < count; k++) {
        out[k] = buf + *at;
        *at += strlen(out[k]) + 1;
    }
    *at += 1; /* the empty string */
    return out;
}

static const char *path_of(char **env)
{
    for (; *env; env++)
        if (strncmp(*env, "PATH=", 5) == 0)
            return *env + 5;
    return DEFAULT_PATH;
}

/* execve `name` in each directory of `path`; returns only if none ran, with
 * errno ENOENT if none held it, else the last other reason (EACCES, E2BIG...). */
static void exec_in_path(const char *name, char **argv, char **env, const char *path)
{
    int refused = 0;
    size_t name_len = strlen(name);
    for (const char *dir = path;; ) {
        const char *colon = strchr(dir, ':');
        size_t dir_len = colon ? (size_t)(colon - dir) : strlen(dir);
        char *full = malloc(dir_len + name_len + 2);
        if (full == NULL)
            fail(125, "out of memory", NULL);
        memcpy(full, dir_len ? dir : ".", dir_len ? dir_len : 1);
        size_t at = dir_len ? dir_len : 1;
        full[at] = '/';
        memcpy(full + at + 1, name, name_len + 1);
        execve(full, argv, env);
        if (errno != ENOENT && errno != ENOTDIR)
            refused = errno;
        free(full);
        if (colon == NULL)
            break;
        dir = colon + 1;
    }
    errno = refused ? refused : ENOENT;
}

/* The fd the job comes on: JOB_FD, or the first connection to it when it listens. */
static int job_channel(void)
{
    int listening = 0;
    socklen_t size = sizeof listening;
    if (getsockopt(JOB_FD, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) < 0 || !listening)
        return JOB_FD;
    int fd;
    do
        fd = accept4(JOB_FD, NULL, NULL, SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        fail(125, "no job came", strerror(errno));
    close(JOB_FD);
    return fd;
}

int main(void)
{
    int job = job_channel();
    unsigned char head[4];
    if (read_all(job, (char *)head, sizeof head) < 0)
        fail(125, "no job came", NULL);
    uint32_t length = head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24;
    if (length == 0 || length > JOB_MAX)
        fail(125, "a malformed job", "its length is out of range");
    char *buf = malloc(length);
    if (buf == NULL)
        fail(125, "out of memory", NULL);
    if (read_all(job, buf, length) < 0)
        fail(125, "a malformed job", "it ended early");
    close(job);

    size_t at = 0;
    char **argv = strings(buf, &at, length);
    char **env = argv ? strings(buf, &at, length) : NULL;
    if (argv == NULL || env == NULL || argv[0] == NULL || at >= length || buf[length - 1] != '\0')
        fail(125, "a malformed job", NULL);
    const char *cwd = buf + at;
    if (chdir(cwd) < 0)
        fail(125, "cannot enter the working directory", strerror(errno));

    if (strchr(argv[0], '/'))
        execve(argv[0], argv, env);
    else
        exec_in_path(argv[0], argv, env, path_of(env));
    int code = (errno == ENOENT || errno == ENOTDIR) ? 127 : 126;
    fail(code, argv[0], code == 127 ? "executable file not found" : strerror(errno));
    return code;
}
