/* disk.c: the total disk limit of a sandbox's home (bytes and inodes): an ext4 image per
 * sandbox, attached through a loop device and mounted by the executor, never by sandbox code.
 *
 * Job: make an image (a sparse file sized so that its filesystem holds disk_bytes of data
 * besides its own metadata, formatted by mke2fs with disk_inodes inodes), attach it
 * (LOOP_CTL_GET_FREE + LOOP_CONFIGURE with autoclear, or LOOP_SET_FD + LOOP_SET_STATUS64 on
 * older kernels; direct I/O where the backing filesystem allows it, so the image's pages are
 * cached once, in the sandbox's memory cgroup) and mount it with the new mount API (fsopen,
 * fsconfig, fsmount): a detached nosuid,nodev mount (discard: what the sandbox deletes is
 * punched out of the sparse image again) that appears in no mount table until the init moves
 * it to /home/user. An image left unclean (the host went down while it was mounted) is
 * repaired with e2fsck -p first. The loop device goes away by itself when the last mount of
 * the filesystem does (the init's mount namespace dies with it, also when the executor is
 * killed: PDEATHSIG). An image is flock'ed through the file the loop device holds, so it is
 * never mounted twice (a new sandbox of the project waits, bounded, for the previous one's
 * mount to go). Writes past the limit fail inside with ENOSPC; usage is fstatfs of the mount.
 * Also: the one-time probe of whether this works here (sbx_disk_setup, diskpool.c), the
 * image's owner hint (an xattr), and the ownership of the filesystem's root.
 *
 * Threads: any; nothing here is shared (diskpool.c keeps the blank images). Errors: -errno,
 * with a message for the log in err where a function takes one. */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define BLOCK 4096u
#define INODE_SIZE 256u
#define LOCK_WAIT_MS 5000 /* for the previous sandbox's mount of an image to go */
#define LOOP_TRIES 16     /* LOOP_CTL_GET_FREE races with other attachers */
#define OWNER_XATTR "trusted.sbx.uid_base"
#define SPEC_XATTR "trusted.sbx.disk" /* "<bytes> <inodes>" the image was made for */
#define RESERVED_INODES 10u           /* ext4's inodes 1..10: counted as used by statfs */
#define TOOL_ERR_MAX 480
#define EXT4_SB_OFFSET 1024
#define EXT4_STATE_OFFSET 0x3A /* s_state, le16 */
#define EXT4_VALID_FS 1u
#define EXT4_ERROR_FS 2u

/* ---------------------------------------------------------------- sizes */

uint32_t sbx__disk_journal_mb(uint64_t bytes)
{
    if (bytes < (64ull << 20))
        return 0;              /* a small home: no journal (it would take a good part of it) */
    uint64_t mb = bytes >> 28; /* 4 MiB per GiB */
    return mb < 4 ? 4 : mb > 64 ? 64 : (uint32_t)mb;
}

uint64_t sbx__disk_image_bytes(uint64_t bytes, uint64_t inodes)
{
    /* what ext4 keeps besides the data (statfs leaves it out of f_blocks): the inode tables,
       the journal, and per 128 MiB group its bitmaps, descriptors and (in some groups) a
       superblock backup; then one block for the root directory and a little slack, so that
       the filesystem's own size (f_blocks) is bytes plus 16 KiB */
    uint64_t groups = bytes / (128ull << 20) + 1;
    uint64_t meta = (inodes + RESERVED_INODES) * INODE_SIZE +
                    ((uint64_t)sbx__disk_journal_mb(bytes) << 20) + groups * 4 * BLOCK + 4 * BLOCK;
    uint64_t total = bytes + meta;
    return (total + BLOCK - 1) / BLOCK * BLOCK;
}

/* ---------------------------------------------------------------- mke2fs */

/* The e2fsprogs tool name in the usual places, or NULL. */
static const char *tool_path(const char *name)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    static __thread char buf[64];
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(buf, sizeof buf, "%s/%s", dirs[i], name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

bool sbx__disk_have_mke2fs(void)
{
    return tool_path("mke2fs") != NULL;
}

/* Reads what a tool says on stderr (at most cap - 1 bytes kept) until it closes. */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char tmp[256];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r && n + 1 < cap; i++)
            buf[n++] = tmp[i] == '\n' ? ' ' : tmp[i];
    }
    buf[n] = '\0';
}

/* Runs an e2fsprogs tool (argv[0]: its path) with stdin/stdout on /dev/null and stderr kept
 * for err. posix_spawn: safe in a threaded process. Returns its exit status (>= 0) or -errno. */
static int run_tool(const char *const *argv, char *msg, size_t msglen)
{
    msg[0] = '\0';
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pp[1]);
    if (rc != 0) {
        close(pp[0]);
        snprintf(msg, msglen, "cannot run %s: %s", argv[0], strerror(rc));
        return -rc;
    }
    read_all(pp[0], msg, msglen);
    close(pp[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Formats path (a file of the image's size) as ext4 with inodes inodes, the root owned by
 * owner (uid = gid), no reserved blocks. */
static int run_mke2fs(const char *path, uint64_t bytes, uint64_t inodes, uint32_t owner, char *err,
                      size_t errlen)
{
    const char *bin = tool_path("mke2fs");
    if (!bin) {
        snprintf(err, errlen, "mke2fs not found (install e2fsprogs)");
        return -ENOENT;
    }
    char n_arg[32], j_arg[32], e_arg[96];
    snprintf(n_arg, sizeof n_arg, "%llu", (unsigned long long)(inodes + RESERVED_INODES));
    uint32_t jmb = sbx__disk_journal_mb(bytes);
    snprintf(j_arg, sizeof j_arg, "size=%u", jmb);
    snprintf(e_arg, sizeof e_arg, "lazy_itable_init=1,lazy_journal_init=1,root_owner=%u:%u", owner,
             owner);
    const char *argv[24];
    size_t a = 0;
    argv[a++] = bin;
    argv[a++] = "-q";
    argv[a++] = "-F";
    argv[a++] = "-t";
    argv[a++] = "ext4";
    argv[a++] = "-b";
    argv[a++] = "4096";
    argv[a++] = "-I";
    argv[a++] = "256";
    argv[a++] = "-m";
    argv[a++] = "0";
    argv[a++] = "-N";
    argv[a++] = n_arg;
    argv[a++] = "-O";
    argv[a++] = jmb ? "^resize_inode" : "^resize_inode,^has_journal";
    if (jmb) {
        argv[a++] = "-J";
        argv[a++] = j_arg;
    }
    argv[a++] = "-E";
    argv[a++] = e_arg;
    argv[a++] = "-L";
    argv[a++] = "sbx-home";
    argv[a++] = path;
    argv[a] = NULL;
    char msg[TOOL_ERR_MAX];
    int st = run_tool(argv, msg, sizeof msg);
    if (st == 0)
        return 0;
    snprintf(err, errlen, "mke2fs failed (status %d): %s", st, msg);
    return st < 0 ? st : -EIO;
}

/* An image not cleanly unmounted (the host went down while it was mounted: no journal on a
 * small home, or errors recorded) is checked and repaired with e2fsck -p before it is mounted
 * again. The caller holds the image's lock. 0, or -EIO with err when it cannot be repaired. */
static int check_clean(int img_fd, char *err, size_t errlen)
{
    uint8_t st[2];
    if (pread(img_fd, st, sizeof st, EXT4_SB_OFFSET + EXT4_STATE_OFFSET) != (ssize_t)sizeof st)
        return 0; /* not ext4-sized: the mount says why */
    unsigned state = (unsigned)st[0] | (unsigned)st[1] << 8;
    if ((state & EXT4_VALID_FS) && !(state & EXT4_ERROR_FS))
        return 0;
    const char *bin = tool_path("e2fsck");
    if (!bin) {
        snprintf(err, errlen, "the image needs a check and e2fsck is not installed");
        return -EIO;
    }
    char path[64], msg[TOOL_ERR_MAX];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)getpid(), img_fd);
    const char *argv[] = {bin, "-p", "-f", path, NULL};
    int rc = run_tool(argv, msg, sizeof msg);
    SBX_LOG_INFO("disk", "home image was not cleanly unmounted: e2fsck -p status=%d msg=\"%s\"", rc,
                 msg);
    if (rc >= 0 && rc <= 2) /* 1, 2: errors corrected */
        return 0;
    snprintf(err, errlen, "the image is damaged and e2fsck -p cannot repair it (status %d): %s", rc,
             msg);
    return -EIO;
}

/* ---------------------------------------------------------------- loop + mount */

/* Opens /dev/loopN; where the node is missing (a container's /dev), makes a private one next to
 * the image (dir_fd) and opens that. */
static int open_loop_dev(int n, int dir_fd)
{
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT || dir_fd < 0)
        return fd < 0 ? -errno : fd;
    char node[48];
    snprintf(node, sizeof node, ".loop%d-%d", n, (int)getpid());
    unlinkat(dir_fd, node, 0);
    if (mknodat(dir_fd, node, S_IFBLK | 0600, makedev(7, (unsigned)n)) < 0)
        return -errno;
    fd = openat(dir_fd, node, O_RDWR | O_CLOEXEC);
    int rc = fd < 0 ? -errno : fd;
    unlinkat(dir_fd, node, 0);
    return rc;
}

/* Binds img_fd to a free loop device (autoclear: it detaches when its last user, the mounted
 * filesystem, goes). Returns the loop device's fd, or -errno. */
static int loop_attach(int img_fd, int dir_fd, char *err, size_t errlen)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        int rc = -errno;
        snprintf(err, errlen, "/dev/loop-control: %s", strerror(-rc));
        return rc;
    }
    int rc = -EBUSY;
    for (int tries = 0; tries < LOOP_TRIES; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "LOOP_CTL_GET_FREE: %s", strerror(-rc));
            break;
        }
        int lfd = open_loop_dev(n, dir_fd);
        if (lfd < 0) {
            rc = lfd;
            snprintf(err, errlen, "/dev/loop%d: %s", n, strerror(-rc));
            break;
        }
        struct loop_config lc;
        memset(&lc, 0, sizeof lc);
        lc.fd = (uint32_t)img_fd;
        lc.block_size = BLOCK;
        lc.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        int r = ioctl(lfd, LOOP_CONFIGURE, &lc);
        if (r < 0 && errno == EINVAL) { /* no direct I/O on the backing filesystem */
            lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
            r = ioctl(lfd, LOOP_CONFIGURE, &lc);
        }
        if (r < 0 && (errno == ENOTTY || errno == EINVAL)) { /* before 5.8: two steps */
            struct loop_info64 li;
            memset(&li, 0, sizeof li);
            li.lo_flags = LO_FLAGS_AUTOCLEAR;
            r = ioctl(lfd, LOOP_SET_FD, img_fd);
            if (r == 0 && ioctl(lfd, LOOP_SET_STATUS64, &li) < 0) {
                int e = errno;
                ioctl(lfd, LOOP_CLR_FD, 0);
                errno = e;
                r = -1;
            }
        }
        if (r == 0) {
            close(ctl);
            return lfd;
        }
        rc = -errno;
        close(lfd);
        if (rc != -EBUSY) { /* EBUSY: another attacher took this one first */
            snprintf(err, errlen, "LOOP_CONFIGURE /dev/loop%d: %s", n, strerror(-rc));
            break;
        }
        snprintf(err, errlen, "no free loop device");
    }
    close(ctl);
    return rc;
}

/* Mounts the ext4 filesystem of the loop device lfd as a detached nosuid,nodev mount. */
static int ext4_mount(int lfd, char *err, size_t errlen)
{
    int fs = (int)syscall(SYS_fsopen, "ext4", FSOPEN_CLOEXEC);
    if (fs < 0) {
        int rc = -errno;
        snprintf(err, errlen, "fsopen(ext4): %s", strerror(-rc));
        return rc;
    }
    char src[40];
    snprintf(src, sizeof src, "/proc/self/fd/%d", lfd);
    int rc = 0;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", src, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "errors", "remount-ro", 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "noinit_itable", NULL, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "discard", NULL, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        rc = -errno;
        char why[200] = "";
        ssize_t n = read(fs, why, sizeof why - 1); /* the kernel's own message, if any */
        why[n > 0 ? n : 0] = '\0';
        snprintf(err, errlen, "mount ext4: %s%s%s", strerror(-rc), why[0] ? ": " : "", why);
        close(fs);
        return rc;
    }
    int m = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (m < 0) {
        rc = -errno;
        snprintf(err, errlen, "fsmount: %s", strerror(-rc));
    }
    close(fs);
    return m < 0 ? rc : m;
}

/* Takes the image's lock (the flock lives on the file the loop device holds: the image is
 * free again once its filesystem is unmounted and the device detached). Waits for it up to
 * LOCK_WAIT_MS. */
static int lock_image(int img_fd)
{
    for (int waited = 0;; waited += 10) {
        if (flock(img_fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (waited >= LOCK_WAIT_MS)
            return -EBUSY;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int sbx__disk_mount_fd(int img_fd, int dir_fd, char *err, size_t errlen)
{
    int rc = lock_image(img_fd);
    if (rc < 0) {
        snprintf(err, errlen, "%s",
                 rc == -EBUSY ? "the image is still mounted by a previous sandbox"
                              : "cannot lock the image");
        return rc;
    }
    if ((rc = check_clean(img_fd, err, errlen)) < 0) {
        flock(img_fd, LOCK_UN);
        return rc;
    }
    int lfd = loop_attach(img_fd, dir_fd, err, errlen);
    if (lfd < 0) {
        flock(img_fd, LOCK_UN);
        return lfd;
    }
    int m = ext4_mount(lfd, err, errlen);
    close(lfd); /* autoclear: the device stays while the filesystem is mounted */
    return m;
}

/* ---------------------------------------------------------------- images */

int sbx__disk_format(int dir_fd, const char *dir, const char *name, uint64_t bytes, uint64_t inodes,
                     uint32_t owner, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, errlen, "create %s: %s", path, strerror(-rc));
        return rc;
    }
    int rc = ftruncate(fd, (off_t)sbx__disk_image_bytes(bytes, inodes)) < 0 ? -errno : 0;
    close(fd);
    if (rc < 0)
        snprintf(err, errlen, "size %s: %s", path, strerror(-rc));
    else
        rc = run_mke2fs(path, bytes, inodes, owner, err, errlen);
    if (rc < 0)
        unlinkat(dir_fd, name, 0);
    return rc;
}

int sbx__disk_root_prepare(int mnt_fd, uint32_t uid_base, bool fresh)
{
    int root = openat(mnt_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    int rc = 0;
    if (fresh && unlinkat(root, "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno; /* mke2fs made it for e2fsck, which remakes it when it needs one */
    struct stat st;
    uid_t want = uid_base + USER_ID;
    if (rc == 0 && fstat(root, &st) < 0)
        rc = -errno;
    if (rc == 0 && (st.st_uid != want || st.st_gid != want)) {
        if (!fresh && st.st_uid >= UID_BLOCK + USER_ID && st.st_uid == st.st_gid) {
            int r = sbx__home_remap(root, st.st_uid - USER_ID, uid_base); /* takes a dup */
            if (r < 0)
                SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", r, "re-owning a home image partly failed");
        }
        if (fchown(root, want, want) < 0)
            rc = -errno;
    }
    if (rc == 0 && (st.st_mode & 07777) != 0700 && fchmod(root, 0700) < 0)
        rc = -errno;
    close(root);
    return rc;
}

void sbx__disk_set_owner_hint(const char *image, uint32_t uid_base)
{
    char v[16];
    int n = snprintf(v, sizeof v, "%u", uid_base);
    if (setxattr(image, OWNER_XATTR, v, (size_t)n, 0) < 0 && errno != ENOTSUP)
        SBX_LOG_ERRNO(SBX_LOG_DEBUG, "sandbox", errno, "cannot tag the image file=%s", image);
}

uint32_t sbx__disk_owner_hint(const char *image)
{
    char v[16];
    ssize_t n = getxattr(image, OWNER_XATTR, v, sizeof v - 1);
    if (n <= 0)
        return 0;
    v[n] = '\0';
    return (uint32_t)strtoul(v, NULL, 10);
}

static void set_spec(const char *image, uint64_t bytes, uint64_t inodes)
{
    char v[48];
    int n =
        snprintf(v, sizeof v, "%llu %llu", (unsigned long long)bytes, (unsigned long long)inodes);
    if (setxattr(image, SPEC_XATTR, v, (size_t)n, 0) < 0 && errno != ENOTSUP)
        SBX_LOG_ERRNO(SBX_LOG_DEBUG, "sandbox", errno, "cannot tag the image file=%s", image);
}

int sbx_disk_image_spec(const char *image, uint64_t *bytes, uint64_t *inodes)
{
    char v[48];
    ssize_t n = getxattr(image, SPEC_XATTR, v, sizeof v - 1);
    if (n < 0)
        return errno == ENOTSUP ? -ENODATA : -errno;
    v[n] = '\0';
    unsigned long long b = 0, i = 0;
    if (sscanf(v, "%llu %llu", &b, &i) != 2)
        return -ENODATA;
    *bytes = b;
    *inodes = i;
    return 0;
}

/* Splits path into its dir (opened: *dir_fd) and last component (*name points into path). */
static int open_parent(const char *path, char *dir, size_t dirlen, const char **name)
{
    const char *sl = strrchr(path, '/');
    if (!sl || !sl[1] || (size_t)(sl - path) >= dirlen)
        return -EINVAL;
    if (sl == path)
        snprintf(dir, dirlen, "/");
    else
        snprintf(dir, dirlen, "%.*s", (int)(sl - path), path);
    *name = sl + 1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* A new image at path: a blank from the pool (diskpool.c), else formatted now under a
 * temporary name, mounted, prepared, and renamed into place. */
static int image_create(const char *path, uint64_t bytes, uint64_t inodes, uint32_t uid_base,
                        char *err, size_t errlen)
{
    int m = sbx__diskpool_take(path, bytes, inodes);
    if (m >= 0) {
        int rc = sbx__disk_root_prepare(m, uid_base, false);
        if (rc < 0) {
            snprintf(err, errlen, "cannot prepare the image's root: %s", strerror(-rc));
            close(m);
            return rc;
        }
        set_spec(path, bytes, inodes);
        return m;
    }
    char dir[4096], tmp[96];
    const char *name;
    int dfd = open_parent(path, dir, sizeof dir, &name);
    if (dfd < 0) {
        snprintf(err, errlen, "cannot open the directory of %s: %s", path, strerror(-dfd));
        return dfd;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(tmp, sizeof tmp, ".home-%d-%ld.tmp", (int)getpid(), (long)ts.tv_nsec);
    int rc = sbx__disk_format(dfd, dir, tmp, bytes, inodes, uid_base + USER_ID, err, errlen);
    int img = rc < 0 ? -1 : openat(dfd, tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (rc == 0 && img < 0)
        rc = -errno;
    if (rc == 0) {
        rc = m = sbx__disk_mount_fd(img, dfd, err, errlen);
        close(img);
    }
    if (rc >= 0 && (rc = sbx__disk_root_prepare(m, uid_base, true)) < 0)
        snprintf(err, errlen, "cannot prepare the image's root: %s", strerror(-rc));
    if (rc >= 0 && renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) < 0) {
        rc = -errno;
        snprintf(err, errlen, "rename to %s: %s", path, strerror(-rc));
    }
    if (rc < 0) {
        if (m >= 0)
            close(m);
        unlinkat(dfd, tmp, 0);
    }
    close(dfd);
    if (rc >= 0)
        set_spec(path, bytes, inodes);
    return rc < 0 ? rc : m;
}

int sbx__disk_open(const char *path, uint64_t bytes, uint64_t inodes, uint32_t uid_base, char *err,
                   size_t errlen)
{
    int img = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (img < 0 && errno == ENOENT)
        return image_create(path, bytes, inodes, uid_base, err, errlen);
    if (img < 0) {
        int rc = -errno;
        snprintf(err, errlen, "open %s: %s", path, strerror(-rc));
        return rc;
    }
    char dir[4096];
    const char *name;
    int dfd = open_parent(path, dir, sizeof dir, &name);
    int m = sbx__disk_mount_fd(img, dfd, err, errlen);
    close(img);
    if (dfd >= 0)
        close(dfd);
    if (m < 0)
        return m;
    int rc = sbx__disk_root_prepare(m, uid_base, false);
    if (rc < 0) {
        snprintf(err, errlen, "cannot prepare the image's root: %s", strerror(-rc));
        close(m);
        return rc;
    }
    return m;
}

int sbx__disk_usage(int mnt_fd, sbx_disk_usage *u)
{
    struct statfs sf;
    if (fstatfs(mnt_fd, &sf) < 0)
        return -errno;
    uint64_t bs = (uint64_t)sf.f_bsize;
    u->limit_bytes = (uint64_t)sf.f_blocks * bs;
    u->used_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * bs;
    /* ext4's reserved inodes are neither the sandbox's nor its to use */
    uint64_t files = (uint64_t)sf.f_files, used = files - (uint64_t)sf.f_ffree;
    u->limit_inodes = files > RESERVED_INODES ? files - RESERVED_INODES : 0;
    u->used_inodes = used > RESERVED_INODES ? used - RESERVED_INODES : 0;
    u->mechanism = SBX_DISK_MECH_LOOP;
    return 0;
}
