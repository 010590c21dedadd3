/* cmdcg.c: per-command cgroups. The executor delegates the sandbox's cgroup2 dir to the
 * sandbox's root (fd 4 of the init); every command is born into a child group "c<n>" of it
 * (clone3 CLONE_INTO_CGROUP, spawn.c), so killing a command's tree is one cgroup.kill that also
 * reaches daemonised descendants. A cgroup mkdir + rmdir per command cost ~0.1 ms here, so a
 * short list of empty groups is kept: one is taken per command and goes back once it is empty
 * again, unless it was killed. Without fd 4 none of this is used (kill-tree by process group).
 * Single-threaded (sbx-init); the state below is this file's. */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_FREE_MAX 16 /* empty per-command cgroups kept for reuse */
#define CG_FREE_LOW 2  /* made ahead (after a reply went out) when fewer are left */

typedef struct {
    uint32_t n; /* "c<n>" */
    int fd;     /* O_RDONLY dir fd for CLONE_INTO_CGROUP */
} cgslot;

static struct {
    int root; /* the delegated cgroup2 dir, or -1 */
    uint32_t seq;
    cgslot free[CG_FREE_MAX];
    size_t nfree;
} cg = {.root = -1};

static void cg_name(uint32_t n, const char *file, char *buf, size_t len)
{
    snprintf(buf, len, "c%u%s%s", n, file ? "/" : "", file ? file : "");
}

void sbx_cmdcg_set_root(int cg2fd)
{
    cg.root = cg2fd;
}

bool sbx_cmdcg_enabled(void)
{
    return cg.root >= 0;
}

/* A new empty group: its dir fd and number, or -errno. */
static int cg_make(uint32_t *n)
{
    char path[32];
    uint32_t k = ++cg.seq;
    cg_name(k, NULL, path, sizeof path);
    if (mkdirat(cg.root, path, 0755) < 0)
        return -errno;
    int fd = openat(cg.root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        unlinkat(cg.root, path, AT_REMOVEDIR);
        return -e;
    }
    *n = k;
    return fd;
}

int sbx_cmdcg_take(uint32_t *n)
{
    if (cg.nfree > 0) {
        cgslot s = cg.free[--cg.nfree];
        *n = s.n;
        return s.fd;
    }
    return cg_make(n);
}

void sbx_cmdcg_topup(void)
{
    while (cg.root >= 0 && cg.nfree < CG_FREE_LOW) {
        uint32_t n = 0;
        int fd = cg_make(&n);
        if (fd < 0)
            return;
        cg.free[cg.nfree++] = (cgslot){.n = n, .fd = fd};
    }
}

/* No process left in group n (cgroup.events says "populated 0")? */
static bool cg_empty(uint32_t n)
{
    char path[48], buf[128];
    cg_name(n, "cgroup.events", path, sizeof path);
    int fd = openat(cg.root, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0)
        return false;
    buf[k] = '\0';
    return strstr(buf, "populated 0") != NULL;
}

/* A killed group is never reused: this kernel (6.18) compares the kill counter of the cgroup a
 * child is cloned into (CLONE_INTO_CGROUP) with the one of its parent's cgroup and SIGKILLs the
 * child when they differ, so every command started in a group that saw a cgroup.kill would
 * die at once. */
bool sbx_cmdcg_release(uint32_t n, bool killed)
{
    char path[32];
    cg_name(n, NULL, path, sizeof path);
    if (!killed && cg.nfree < CG_FREE_MAX) {
        if (!cg_empty(n))
            return false;
        int fd = openat(cg.root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            cg.free[cg.nfree++] = (cgslot){.n = n, .fd = fd};
            return true;
        }
    }
    return unlinkat(cg.root, path, AT_REMOVEDIR) == 0 || errno == ENOENT;
}

void sbx_cmdcg_remove(uint32_t n)
{
    char path[32];
    cg_name(n, NULL, path, sizeof path);
    unlinkat(cg.root, path, AT_REMOVEDIR);
}

void sbx_cmdcg_kill(uint32_t n)
{
    char path[64];
    cg_name(n, "cgroup.kill", path, sizeof path);
    int fd = openat(cg.root, path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "1", 1) != 1)
            sbx_init_log("cgroup.kill", errno);
        close(fd);
    }
}
