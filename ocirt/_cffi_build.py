"""Build script of the cffi backend: the same csrc/ helpers as the Cython one.

Run by setup.py (cffi_modules); produces the extension ocirt._cffi_native,
wrapped by ocirt/_native_cffi.py.
"""

from glob import glob

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define OCIRT_SPAWN_SETSID ...
    #define OCIRT_SPAWN_SETPGID ...
    #define OCIRT_WAIT_NO_PIDFD ...
    #define OCIRT_WAIT_NO_INOTIFY ...
    #define OCIRT_SPAWN_MAX_FDS ...
    #define OCIRT_STEP_FDS ...
    #define OCIRT_STEP_CGROUP ...
    #define OCIRT_STEP_CHDIR ...
    #define OCIRT_STEP_SESSION ...
    #define OCIRT_STEP_EXEC ...
    int ocirt_spawn(const char *path, char *const argv[], char *const envp[],
                    const int *fdmap, size_t nfds, const int *cgroups, size_t ncgroups,
                    const char *cwd, int flags, int *failed_step);
    int ocirt_socketpair(int type, int fds[2]);
    int ocirt_pidfd_open(int pid);
    int ocirt_pidfd_send_signal(int pidfd, int sig);
    int ocirt_set_subreaper(int on);
    int ocirt_wait_pids(const int *pids, size_t n, int timeout_ms, int flags, unsigned char *alive);
    int ocirt_wait_file(const char *dir, const char *name, int timeout_ms, int guard_pid, int guard_fd, int flags);
    int ocirt_wait_change(const char *path, long long known_size, int timeout_ms, int guard_pid, int guard_fd, int flags);
    int ocirt_inotify_pool_size(void);
    int ocirt_open_in_root(int dirfd, const char *path);
    int ocirt_netns_make(const char *path);
    int ocirt_netns_remove(const char *path);
    int ocirt_watch_open(const char *dir, int *wd);
    int ocirt_watch_seen(int fd, const char *name);
    void ocirt_watch_close(int fd, int wd);
    int ocirt_pid_gone(int pid);
    """
)
ffibuilder.set_source(
    "ocirt._cffi_native",
    '#include "ocirt.h"',
    sources=sorted(glob("csrc/*.c")),
    include_dirs=["csrc"],
    extra_compile_args=["-std=gnu11", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
