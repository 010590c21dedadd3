/* home.c: a sandbox's home on the host, the one tree that outlives the sandbox: a directory,
 * or an ext4 image with the sandbox's disk limits (disk.c).
 *
 * Job (directory): create it (0700, missing parents 0755) and give it to the sandbox user (uid_base
 * + 1000). A home left by a sandbox in another uid range (the same user re-created in another
 * 65536-id block) is re-owned into the new range, file by file, without following symlinks.
 * Every init gets the home as a detached mount (open_tree clone) and a template root the same
 * way: the init never resolves a host path inside its user namespace, so a data dir (or a
 * template) under a directory only the host's root may search works.
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

int sbx__home_remap(int dfd, uint32_t old_base, uint32_t new_base)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    return fd < 0 ? -errno : remap_tree(fd, old_base, new_base, 0);
}

uint32_t sbx__home_owner_base(const sbx_sandbox_cfg *cfg)
{
    if (cfg->home_image)
        return sbx__disk_owner_hint(cfg->home_image);
    struct stat st;
    if (cfg->home_dir && lstat(cfg->home_dir, &st) == 0 && st.st_uid >= UID_BLOCK + USER_ID)
        return (uint32_t)st.st_uid - USER_ID;
    return 0;
}

int sbx__template_mount_fd(const char *root)
{
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, root,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0)
        return -errno;
    struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                           .propagation = MS_PRIVATE};
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
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

/* The image home: mounted (made when missing), its mount kept in sb for statfs, a dup for the
 * init; what it enforces added to sb's list. */
static int image_open(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int *mnt_fd)
{
    if (!sbx__disk_mechanism()) {
        SBX_LOG_ERROR("sandbox", "home image without a disk mechanism (sbx_disk_setup) id=%s",
                      cfg->id);
        return -ENOTSUP;
    }
    char err[512] = "";
    int m = sbx__disk_open(cfg->home_image, cfg->disk_bytes, cfg->disk_inodes, sb->uid_base, err,
                           sizeof err);
    if (m < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", m,
                      "cannot attach the home image file=%s err=\"%s\"", cfg->home_image, err);
        return m;
    }
    sbx__disk_set_owner_hint(cfg->home_image, sb->uid_base);
    *mnt_fd = fcntl(m, F_DUPFD_CLOEXEC, 0);
    if (*mnt_fd < 0) {
        int rc = -errno;
        close(m);
        return rc;
    }
    if (sb->disk_fd >= 0)
        close(sb->disk_fd);
    sb->disk_fd = m;
    return 0;
}

int sbx__home_open(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int *mnt_fd)
{
    *mnt_fd = -1;
    if (cfg->home_image)
        return image_open(sb, cfg, mnt_fd);
    int rc = sbx__home_prepare(cfg->home_dir, sb->uid_base);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot prepare home dir=%s", cfg->home_dir);
        return rc;
    }
    if ((rc = sbx__home_mount_fd(cfg->home_dir)) < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot clone the home mount dir=%s",
                      cfg->home_dir);
        return rc;
    }
    *mnt_fd = rc;
    return 0;
}
