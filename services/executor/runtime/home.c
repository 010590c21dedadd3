/* home.c: a sandbox's home directory on the host, the one tree that outlives the sandbox.
 *
 * Job: create it (0700, missing parents 0755) and give it to the sandbox user (uid_base +
 * 1000). A home left by a sandbox in another uid range (the same user re-created in another
 * 65536-id block) is re-owned into the new range, file by file, without following symlinks.
 * For a parked init, which lives in its own mount namespace with the host tree detached,
 * the home is handed over as a detached mount (open_tree clone).
 * Threads: any; nothing here is shared. */
#include "sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

#define REMAP_DEPTH_MAX 256

static int mkdir_parents(const char *path, mode_t mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return mkdir(tmp, mode) < 0 && errno != EEXIST ? -errno : 0;
}

/* Re-owns a tree written by a previous sandbox with another uid range into ours. */
static int remap_tree(int dfd, uint32_t old_base, uint32_t new_base, int depth)
{
    if (depth > REMAP_DEPTH_MAX)
        return -ELOOP;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        uid_t u = st.st_uid - old_base < UID_BLOCK ? st.st_uid - old_base + new_base : st.st_uid;
        gid_t g = st.st_gid - old_base < UID_BLOCK ? st.st_gid - old_base + new_base : st.st_gid;
        if ((u != st.st_uid || g != st.st_gid) &&
            fchownat(dirfd(d), de->d_name, u, g, AT_SYMLINK_NOFOLLOW) < 0)
            rc = -errno;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                int r = remap_tree(sub, old_base, new_base, depth + 1);
                if (r < 0)
                    rc = r;
            }
        }
    }
    closedir(d);
    return rc;
}

int sbx__home_prepare(const char *home, uint32_t uid_base)
{
    int rc = mkdir_parents(home, 0700);
    if (rc < 0)
        return rc;
    struct stat st;
    if (lstat(home, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    uid_t want = uid_base + USER_ID;
    if (st.st_uid == want && st.st_gid == want)
        return 0;
    if (st.st_uid >= UID_BLOCK + USER_ID && st.st_uid == st.st_gid) {
        int fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        rc = remap_tree(fd, st.st_uid - USER_ID, uid_base, 0);
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", rc, "re-owning home partly failed dir=%s", home);
    }
    return chown(home, want, want) < 0 ? -errno : 0;
}

uint32_t sbx__home_owner_base(const char *home)
{
    struct stat st;
    if (home && lstat(home, &st) == 0 && st.st_uid >= UID_BLOCK + USER_ID)
        return (uint32_t)st.st_uid - USER_ID;
    return 0;
}

int sbx__home_mount_fd(const char *home)
{
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, home,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct mount_attr a = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                           .propagation = MS_PRIVATE};
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &a, sizeof a) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}
