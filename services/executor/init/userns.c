/* userns.c: the user namespace of a sandbox. Its uid/gid maps are written from the parent
 * side (the helper, still in the executor's namespace) as "0 <uid_base> 65536": root inside is
 * uid_base on the host, the sandbox user (1000) uid_base + 1000, and nothing else of the host
 * is mapped. The init then becomes root of the namespace. Single-threaded (sbx-init). */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    int rc = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return rc;
}

int sbx_userns_write_idmap(pid_t pid, uint32_t base, uint32_t count)
{
    char path[64], map[64];
    snprintf(map, sizeof map, "0 %u %u\n", base, count);
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    int rc = write_file(path, map);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    return write_file(path, map);
}

int sbx_userns_become_root(int sock)
{
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setgroups(0, NULL) < 0)
        return -errno;
    /* A change of the effective uid/gid clears the parent-death signal (prctl(2)): arm it
       again, then catch an executor that died in between by its end of the socket (our
       parent is outside our pid namespace: getppid() says 0). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct pollfd pf = {.fd = sock, .events = POLLIN};
    if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR)))
        _exit(0);
    return 0;
}
