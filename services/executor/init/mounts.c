/* mounts.c: builds a sandbox's root filesystem inside its fresh mount namespace and pivots into
 * it: a small tmpfs root (read-only once built) holding read-only recursive binds of the system
 * dirs (host /usr /etc and the /bin /lib /lib64 symlinks, or every top-level entry of a
 * template rootfs), a writable /home/user, private size-limited tmpfs /tmp and /dev/shm, a
 * fresh /proc, and a minimal /dev with a private devpts. The old root is detached.
 * The home and the template are detached mounts the executor made (never host paths resolved
 * here, as the sandbox's root, who may not search the directories above them). */
#include "init_parts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Where the new root is assembled before pivot_root (hidden by a tmpfs, in our namespace only) */
#define STAGE "/tmp"

static const char *const host_system_dirs[] = {"usr", "etc",   "bin",   "sbin",
                                               "lib", "lib32", "lib64", "libx32"};
/* Where the template's detached mount is attached while its entries are bound (a dir of the
 * new root, removed before anything runs in it) */
#define TEMPLATE_STAGE ".sbx-template"

/* top-level names of a template that the sandbox provides itself */
static const char *const template_skip[] = {"proc", "dev", "tmp", "home", "sys", "run"};

static int sys_open_tree(int dfd, const char *path, unsigned flags)
{
    long r = syscall(SYS_open_tree, dfd, path, flags);
    return r < 0 ? -errno : (int)r;
}

static int sys_move_mount(int from_dfd, const char *dst)
{
    long r = syscall(SYS_move_mount, from_dfd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH);
    return r < 0 ? -errno : 0;
}

static int setattr(int dfd, const char *path, unsigned flags, uint64_t set)
{
    struct mount_attr a = {.attr_set = set};
    long r = syscall(SYS_mount_setattr, dfd, path, flags, &a, sizeof a);
    return r < 0 ? -errno : 0;
}

/* Clones the mount tree at (dfd, path) (recursively when rec), applies attrs, and attaches it at
 * dst (relative to the cwd). */
static int bind_at(int dfd, const char *path, const char *dst, bool rec, uint64_t attrs)
{
    unsigned f = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0) |
                 (path[0] ? 0 : AT_EMPTY_PATH);
    int t = sys_open_tree(dfd, path, f);
    if (t < 0)
        return t;
    int rc = setattr(t, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), attrs);
    if (rc == 0)
        rc = sys_move_mount(t, dst);
    close(t);
    return rc;
}

static int mkdir_p1(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    return chmod(path, mode) < 0 ? -errno : 0;
}

static int touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    close(fd);
    return rc;
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

/* Copies one top-level entry of the source root into the new root: a symlink as a symlink, a
 * dir or file as a read-only recursive bind. */
static int add_entry(int srcfd, const char *name)
{
    struct stat st;
    if (fstatat(srcfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    const uint64_t ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(srcfd, name, target, sizeof target - 1);
        if (n < 0)
            return -errno;
        target[n] = '\0';
        return symlink(target, name) < 0 ? -errno : 0;
    }
    if (S_ISDIR(st.st_mode)) {
        int rc = mkdir_p1(name, 0755);
        return rc < 0 ? rc : bind_at(srcfd, name, name, true, ro);
    }
    if (S_ISREG(st.st_mode)) {
        int rc = touch(name);
        return rc < 0 ? rc : bind_at(srcfd, name, name, false, ro);
    }
    return 0; /* sockets, fifos, devices at the top level are not carried over */
}

/* Binds every top-level entry of the directory srcfd (a template root) but the names the
 * sandbox provides itself. */
static int add_template_entries(int srcfd)
{
    int dfd = openat(srcfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, TEMPLATE_STAGE) == 0 ||
            in_list(de->d_name, template_skip, sizeof template_skip / sizeof *template_skip))
            continue;
        rc = add_entry(srcfd, de->d_name);
    }
    closedir(d);
    return rc;
}

/* The system dirs: from our own "/" (the host's), or every top-level entry of the template.
 * The template comes as a detached mount: it is attached at TEMPLATE_STAGE in the new root
 * (cloning from a mount of another namespace is refused), its entries are bound, and it is
 * detached again. */
static int add_system(const sbx_mounts_cfg *cfg)
{
    int rc = 0;
    if (cfg->template_mnt_fd < 0) {
        int srcfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (srcfd < 0)
            return -errno;
        for (size_t i = 0; i < sizeof host_system_dirs / sizeof *host_system_dirs && !rc; i++)
            rc = add_entry(srcfd, host_system_dirs[i]);
        close(srcfd);
        return rc;
    }
    if ((rc = mkdir_p1(TEMPLATE_STAGE, 0700)) < 0 ||
        (rc = sys_move_mount(cfg->template_mnt_fd, TEMPLATE_STAGE)) < 0)
        return rc;
    int srcfd = open(TEMPLATE_STAGE, O_PATH | O_DIRECTORY | O_CLOEXEC);
    rc = srcfd < 0 ? -errno : add_template_entries(srcfd);
    if (srcfd >= 0)
        close(srcfd);
    if (umount2(TEMPLATE_STAGE, MNT_DETACH) < 0 && rc == 0)
        rc = -errno;
    if (rmdir(TEMPLATE_STAGE) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int add_identity(uint32_t uid)
{
    char buf[512];
    int rc = mkdir_p1("run", 0755);
    if (rc == 0)
        rc = mkdir_p1("run/sbx", 0755);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat("etc/passwd", &st) == 0) {
        snprintf(buf, sizeof buf,
                 "root:x:0:0:root:/root:/bin/sh\n"
                 "user:x:%u:%u:sandbox user:/home/user:/bin/bash\n"
                 "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                 uid, uid);
        if ((rc = write_text("run/sbx/passwd", buf)) < 0 ||
            (rc = bind_at(AT_FDCWD, "run/sbx/passwd", "etc/passwd", false,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0)
            return rc;
    }
    if (stat("etc/group", &st) == 0) {
        snprintf(buf, sizeof buf, "root:x:0:\ntty:x:5:\nuser:x:%u:\nnogroup:x:65534:\n", uid);
        if ((rc = write_text("run/sbx/group", buf)) < 0 ||
            (rc = bind_at(AT_FDCWD, "run/sbx/group", "etc/group", false,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0)
            return rc;
    }
    return 0;
}

/* Terminals a sandbox may hold at once (its devpts instance's max=): its own ptys cannot use up
 * the host's kernel.pty.max for the other sandboxes. */
#define SBX_PTY_MAX 256

static int add_dev(uint64_t shm_bytes, uint32_t user_uid)
{
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char opts[128], src[64], dst[64];
    int rc;
    if ((rc = mkdir_p1("dev", 0755)) < 0)
        return rc;
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755") < 0)
        return -errno;
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        snprintf(src, sizeof src, "/dev/%s", nodes[i]);
        snprintf(dst, sizeof dst, "dev/%s", nodes[i]);
        if ((rc = touch(dst)) < 0)
            return rc;
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
            return -errno;
    }
    if ((rc = mkdir_p1("dev/pts", 0755)) < 0)
        return rc;
    /* a private instance: its ptys belong to the sandbox user (uid=), so a terminal's program
       can reopen its /dev/pts/N as a terminal's user can */
    snprintf(opts, sizeof opts, "newinstance,ptmxmode=0666,mode=0620,gid=5,uid=%u,max=%d", user_uid,
             SBX_PTY_MAX);
    if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, opts) < 0)
        return -errno;
    if (symlink("pts/ptmx", "dev/ptmx") < 0)
        return -errno;
    if ((rc = mkdir_p1("dev/shm", 01777)) < 0)
        return rc;
    snprintf(opts, sizeof opts, "size=%llu,mode=1777", (unsigned long long)shm_bytes);
    if (mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return -errno;
    static const char *const links[][2] = {{"/proc/self/fd", "dev/fd"},
                                           {"/proc/self/fd/0", "dev/stdin"},
                                           {"/proc/self/fd/1", "dev/stdout"},
                                           {"/proc/self/fd/2", "dev/stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (symlink(links[i][0], links[i][1]) < 0)
            return -errno;
    return setattr(AT_FDCWD, "dev", 0, MOUNT_ATTR_RDONLY);
}

/* Records which step failed; passes rc through. */
static int step(const char **what, const char *name, int rc)
{
    *what = name;
    return rc;
}

/* With park: everything but the home, and the root stays writable (sbx_mounts_finish). */
#define SYS(expr) ((expr) < 0 ? -errno : 0)

/* /home/user in the new root: the bind of the home dir, a tmpfs, or (parked) an empty dir for
 * sbx_mounts_finish. */
static int build_home(const sbx_mounts_cfg *cfg, bool park, const char **what)
{
    char opts[128];
    int rc;
    if ((rc = step(what, "home", mkdir_p1("home", 0755))) < 0 ||
        (rc = step(what, "home", mkdir_p1("home/user", 0755))) < 0 || park)
        return rc;
    if (cfg->home_mnt_fd >= 0) /* private, nosuid and nodev already (the executor's) */
        return step(what, "home-bind", sys_move_mount(cfg->home_mnt_fd, "home/user"));
    snprintf(opts, sizeof opts, "size=%llu,mode=0755,uid=%u,gid=%u",
             (unsigned long long)cfg->tmp_bytes, cfg->user_uid, cfg->user_uid);
    return step(what, "home-tmpfs",
                SYS(mount("tmpfs", "home/user", "tmpfs", MS_NOSUID | MS_NODEV, opts)));
}

/* /tmp (size-limited tmpfs, /var/tmp points at it), a fresh /proc, /dev, passwd and group. */
static int build_runtime_dirs(const sbx_mounts_cfg *cfg, const char **what)
{
    char opts[128];
    int rc;
    snprintf(opts, sizeof opts, "size=%llu,mode=1777", (unsigned long long)cfg->tmp_bytes);
    if ((rc = step(what, "tmp", mkdir_p1("tmp", 01777))) < 0 ||
        (rc = step(what, "tmp-tmpfs",
                   SYS(mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts)))) < 0 ||
        (rc = step(what, "var", mkdir_p1("var", 0755))) < 0 ||
        (rc = step(what, "var-tmp", SYS(symlink("../tmp", "var/tmp")))) < 0 ||
        (rc = step(what, "proc", mkdir_p1("proc", 0555))) < 0 ||
        (rc = step(what, "proc-mount",
                   SYS(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)))) <
            0 ||
        (rc = step(what, "dev", add_dev(cfg->tmp_bytes, cfg->user_uid))) < 0)
        return rc;
    return step(what, "identity", add_identity(cfg->user_uid));
}

static int build(const sbx_mounts_cfg *cfg, bool park, const char **what)
{
    int rc;
    umask(022);
    if ((rc = step(what, "make-rprivate", SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)))) <
            0 ||
        (rc = step(what, "root-tmpfs",
                   SYS(mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV,
                             "size=4m,nr_inodes=4096,mode=0755")))) < 0 ||
        (rc = step(what, "chdir-root", SYS(chdir(STAGE)))) < 0 ||
        (rc = step(what, "system-dirs", add_system(cfg))) < 0 ||
        (rc = build_home(cfg, park, what)) < 0 || (rc = build_runtime_dirs(cfg, what)) < 0)
        return rc;
    if (!park &&
        (rc = step(what, "root-readonly", setattr(AT_FDCWD, ".", 0, MOUNT_ATTR_RDONLY))) < 0)
        return rc;
    if ((rc = step(what, "pivot-root", SYS(syscall(SYS_pivot_root, ".", ".")))) < 0 ||
        (rc = step(what, "detach-old-root", SYS(umount2(".", MNT_DETACH)))) < 0 ||
        (rc = step(what, "chdir", SYS(chdir("/")))) < 0)
        return rc;
    *what = NULL;
    return 0;
}

#undef SYS

int sbx_mounts_build(const sbx_mounts_cfg *cfg, const char **what)
{
    return build(cfg, false, what);
}

int sbx_mounts_prebuild(const sbx_mounts_cfg *cfg, const char **what)
{
    return build(cfg, true, what);
}

int sbx_mounts_finish(const sbx_mounts_claim *c, const char **what)
{
    char opts[128];
    int rc;
#define SYS(expr) ((expr) < 0 ? -errno : 0)
    if ((rc = step(what, "chdir", SYS(chdir("/")))) < 0)
        return rc;
    if (c->home_mnt_fd >= 0) {
        /* a detached private nosuid,nodev clone of the home made by the executor (open_tree):
           moved from its anonymous mount namespace into ours */
        if ((rc = step(what, "home-bind",
                       SYS(syscall(SYS_move_mount, c->home_mnt_fd, "", AT_FDCWD, "home/user",
                                   MOVE_MOUNT_F_EMPTY_PATH)))) < 0)
            return rc;
    } else {
        snprintf(opts, sizeof opts, "size=%llu,mode=0755,uid=%u,gid=%u",
                 (unsigned long long)c->tmp_bytes, c->user_uid, c->user_uid);
        if ((rc = step(what, "home-tmpfs",
                       SYS(mount("tmpfs", "home/user", "tmpfs", MS_NOSUID | MS_NODEV, opts)))) < 0)
            return rc;
    }
    if (c->tmp_bytes != c->built_tmp_bytes) {
        snprintf(opts, sizeof opts, "size=%llu", (unsigned long long)c->tmp_bytes);
        if ((rc = step(what, "tmp-size",
                       SYS(mount(NULL, "tmp", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts)))) <
                0 ||
            (rc = step(
                 what, "shm-size",
                 SYS(mount(NULL, "dev/shm", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts)))) < 0)
            return rc;
    }
    if ((rc = step(what, "root-readonly", setattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY))) < 0)
        return rc;
    *what = NULL;
    return 0;
#undef SYS
}
