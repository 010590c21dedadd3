/* ns.c: namespaces for a sandbox init: fork into new user/pid/mount/net/ipc/uts/cgroup
 * namespaces, write the uid/gid maps from the parent side, and bring up loopback (the only
 * interface a sandbox has). */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(SBX_NS_ALL_FLAGS == (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                    CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP),
               "namespace flags");

pid_t sbx_ns_clone(unsigned long flags, bool as_sibling)
{
    unsigned long f = flags | SIGCHLD | (as_sibling ? CLONE_PARENT : 0);
    /* raw clone without a new stack behaves like fork (copy-on-write); x86_64 argument order */
    long r = syscall(SYS_clone, f, NULL, NULL, NULL, NULL);
    if (r < 0)
        return -errno;
    return (pid_t)r;
}

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

int sbx_ns_write_idmap(pid_t pid, uint32_t base, uint32_t count)
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

int sbx_ns_lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        rc = -errno;
        goto out_close;
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        rc = -errno;
out_close:
    close(s);
    return rc;
}
