/* ns.c: the namespaces of a sandbox. The helper forks the init into new user, pid, mount, net,
 * ipc, uts and cgroup namespaces in one clone (as a sibling: the init's parent is the
 * executor); pid 1 of the new pid namespace is the init, the ipc namespace keeps System V and
 * POSIX message queues private, the uts namespace gets the sandbox's hostname. The user
 * namespace (id maps) is userns.c, the network namespace (loopback) net.c, the mount namespace
 * mounts.c. `sbx-init --probe` tries the same clone. Single-threaded (sbx-init). */
#include "init_parts.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

int sbx_ns_set_hostname(const char *name)
{
    const char *hn = name[0] ? name : "sbx";
    return sethostname(hn, strlen(hn)) < 0 ? -errno : 0;
}

int sbx_ns_probe(void)
{
    pid_t pid = sbx_ns_clone(SBX_NS_ALL_FLAGS, false);
    if (pid == 0)
        _exit(0);
    if (pid < 0) {
        printf("namespaces: %s\n", strerror(-pid));
        return 1;
    }
    int st;
    waitpid(pid, &st, 0);
    printf("namespaces: ok\n");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
