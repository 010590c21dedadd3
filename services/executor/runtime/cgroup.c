/* cgroup.c: per-sandbox cgroups beneath the executor's own cgroup (see cgroup.h). v2 gets the
 * controllers it has in our subtree; the others come from their v1 hierarchies. The cgroup2
 * dir of a sandbox is delegated to the sandbox's root uid so its init can make per-command
 * child groups, which give kill-tree through cgroup.kill. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *const ctrl_names[SBX_CG_NCTRL] = {"memory", "pids", "cpu"};

static int write_str(const char *dir, const char *file, const char *val)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(val);
    ssize_t n = write(fd, val, len);
    int rc = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return rc;
}

static int read_str(const char *dir, const char *file, char *buf, size_t len)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    int rc = n < 0 ? -errno : 0;
    buf[n < 0 ? 0 : n] = '\0';
    close(fd);
    return rc;
}

static bool file_exists(const char *dir, const char *file)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

static bool has_token(const char *list, const char *tok, const char *seps)
{
    size_t tl = strlen(tok);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, seps);
        if (n == tl && strncmp(p, tok, tl) == 0)
            return true;
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* The path of our cgroup in the hierarchy whose /proc/self/cgroup controller field matches
 * (v2: the "0::" line). */
static int own_path(const char *ctrl, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -errno;
    char line[PATH_MAX + 128];
    int rc = -ENOENT;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        const char *ctrls = c1 + 1;
        bool match = ctrl ? has_token(ctrls, ctrl, ",") : (strcmp(line, "0") == 0 && !*ctrls);
        if (match) {
            snprintf(out, len, "%s", c2 + 1);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Maps a cgroup path to a directory through a mount of that hierarchy (mount root + point). */
static int mount_dir(const char *fstype, const char *ctrl, const char *cgpath, char *out,
                     size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char line[4096];
    int rc = -ENOENT;
    while (rc && fgets(line, sizeof line, f)) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char root[PATH_MAX], mnt[PATH_MAX], fs[64], super[1024];
        char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
            sscanf(sep + 3, "%63s %*s %1023s", fs, super) != 2)
            continue;
        if (strcmp(fs, fstype) != 0 || (ctrl && !has_token(super, ctrl, ",")))
            continue;
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (strncmp(cgpath, root, rl) != 0 || (cgpath[rl] != '/' && cgpath[rl] != '\0'))
            continue;
        snprintf(out, len, "%s%s", mnt, cgpath + rl);
        size_t ol = strlen(out);
        if (ol > 1 && out[ol - 1] == '/')
            out[ol - 1] = '\0';
        rc = 0;
    }
    fclose(f);
    return rc;
}

int sbx_cg_detect(sbx_cg_env *env, const char *parent)
{
    char cg[PATH_MAX], buf[512];
    memset(env, 0, sizeof *env);
    if (own_path(NULL, cg, sizeof cg) == 0 &&
        mount_dir("cgroup2", NULL, cg, env->v2_own, sizeof env->v2_own) == 0) {
        if (read_str(env->v2_own, "cgroup.controllers", buf, sizeof buf) == 0)
            for (int c = 0; c < SBX_CG_NCTRL; c++)
                if (has_token(buf, ctrl_names[c], " \n"))
                    env->v2_ctrl |= 1u << c;
        /* the root cgroup has no cgroup.kill: probe it on our parent group */
        char dir[PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s/%s", env->v2_own, parent);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "cgroup", errno, "cannot create cgroup2 group dir=%s", dir);
        env->v2_kill = file_exists(dir, "cgroup.kill");
    }
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        if (env->v2_ctrl & (1u << c))
            continue;
        if (own_path(ctrl_names[c], cg, sizeof cg) == 0)
            mount_dir("cgroup", ctrl_names[c], cg, env->v1_own[c], sizeof env->v1_own[c]);
    }
    return 0;
}

/* dir + "/" + name into out (PATH_MAX); -ENAMETOOLONG when it does not fit. */
static int path_join(char *out, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a + 1 + b + 1 > PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(out, dir, a);
    out[a] = '/';
    memcpy(out + a + 1, name, b + 1);
    return 0;
}

static int mkdir_ok(const char *path)
{
    return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* v2: controllers must be enabled in every ancestor's subtree_control; a cgroup with processes
 * cannot enable them ("no internal processes"), so the executor moves into a leaf first. */
static int v2_enable(const char *own, const char *parent_dir, unsigned ctrl)
{
    char val[64] = "";
    size_t used = 0;
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if ((ctrl & (1u << c)) && used < sizeof val) {
            int n =
                snprintf(val + used, sizeof val - used, "%s%s", used ? " +" : "+", ctrl_names[c]);
            used += n > 0 ? (size_t)n : 0;
        }
    if (!val[0])
        return 0;
    int rc = write_str(own, "cgroup.subtree_control", val);
    if (rc == -EBUSY) {
        char leaf[PATH_MAX + 32];
        snprintf(leaf, sizeof leaf, "%s/sbx-executor", own);
        if ((rc = mkdir_ok(leaf)) < 0 || (rc = write_str(leaf, "cgroup.procs", "0")) < 0)
            return rc;
        SBX_LOG_INFO("cgroup", "moved the executor into a leaf cgroup dir=%s", leaf);
        rc = write_str(own, "cgroup.subtree_control", val);
    }
    if (rc < 0)
        return rc;
    return write_str(parent_dir, "cgroup.subtree_control", val);
}

/* Writes the limits of controller c that differ between old and lim (0 = unlimited in both;
 * a new group is all unlimited). */
static int apply_limits(const char *dir, int c, bool v2, const sbx_cg_limits *old,
                        const sbx_cg_limits *lim)
{
    char val[64];
    int rc = 0;
    if (c == SBX_CG_MEMORY && lim->memory_bytes != old->memory_bytes) {
        if (lim->memory_bytes)
            snprintf(val, sizeof val, "%llu", (unsigned long long)lim->memory_bytes);
        else
            snprintf(val, sizeof val, "%s", v2 ? "max" : "-1");
        if (v2) {
            rc = write_str(dir, "memory.max", val);
            if (rc == 0 && file_exists(dir, "memory.swap.max"))
                rc = write_str(dir, "memory.swap.max", lim->memory_bytes ? "0" : "max");
        } else {
            /* memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes: raise memsw
               first, lower it last */
            bool memsw = file_exists(dir, "memory.memsw.limit_in_bytes");
            bool raise =
                !lim->memory_bytes || (old->memory_bytes && lim->memory_bytes > old->memory_bytes);
            if (memsw && raise)
                rc = write_str(dir, "memory.memsw.limit_in_bytes", val);
            if (rc == 0)
                rc = write_str(dir, "memory.limit_in_bytes", val);
            if (rc == 0 && memsw && !raise)
                rc = write_str(dir, "memory.memsw.limit_in_bytes", val);
        }
    } else if (c == SBX_CG_PIDS && lim->pids != old->pids) {
        if (lim->pids)
            snprintf(val, sizeof val, "%llu", (unsigned long long)lim->pids);
        else
            snprintf(val, sizeof val, "max");
        rc = write_str(dir, "pids.max", val);
    } else if (c == SBX_CG_CPU) {
        if (lim->cpu_millis != old->cpu_millis) {
            if (v2 && lim->cpu_millis)
                snprintf(val, sizeof val, "%u 100000", lim->cpu_millis * 100);
            else if (v2)
                snprintf(val, sizeof val, "max 100000");
            else if (lim->cpu_millis)
                snprintf(val, sizeof val, "%u", lim->cpu_millis * 100);
            else
                snprintf(val, sizeof val, "-1");
            rc = write_str(dir, v2 ? "cpu.max" : "cpu.cfs_quota_us", val);
        }
        if (rc == 0 && lim->cpu_weight != old->cpu_weight) {
            uint32_t w = lim->cpu_weight ? lim->cpu_weight : 100;
            snprintf(val, sizeof val, "%u", v2 ? w : w * 1024 / 100);
            rc = write_str(dir, v2 ? "cpu.weight" : "cpu.shares", val);
        }
    }
    return rc;
}

static int set_limits(const char *dir, int c, bool v2, const sbx_cg_limits *lim)
{
    static const sbx_cg_limits none;
    return apply_limits(dir, c, v2, &none, lim);
}

static bool limit_set(int c, const sbx_cg_limits *lim)
{
    return c == SBX_CG_MEMORY ? lim->memory_bytes != 0
           : c == SBX_CG_PIDS ? lim->pids != 0
                              : (lim->cpu_millis || lim->cpu_weight);
}

static int chown_delegate(const char *dir, uid_t owner)
{
    static const char *const files[] = {"", "/cgroup.procs", "/cgroup.threads",
                                        "/cgroup.subtree_control"};
    char path[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s%s", dir, files[i]);
        if (chown(path, owner, owner) < 0 && errno != ENOENT)
            return -errno;
    }
    return 0;
}

static int rmdir_tree(const char *dir);
static int kill_listed(const char *dir);
static int kill_and_remove(const char *dir);

/* mkdir of a sandbox's group. A group with this name that already exists was left by an
 * executor that died (ids are unique within a live executor): kill what is in it, remove it
 * and make it again. */
static int mkdir_fresh(const char *dir)
{
    if (mkdir(dir, 0755) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    SBX_LOG_WARN("cgroup", "removing a stale sandbox cgroup dir=%s", dir);
    int rc = kill_and_remove(dir);
    if (rc < 0)
        return rc;
    return mkdir(dir, 0755) < 0 ? -errno : 0;
}

int sbx_cg_create(const sbx_cg_env *env, const char *parent, const char *id,
                  const sbx_cg_limits *lim, uid_t owner, sbx_cg *out, const char **enforced,
                  size_t *n)
{
    static const char *const v1_names[] = {"memory:cgroup-v1", "pids:cgroup-v1", "cpu:cgroup-v1"};
    static const char *const v2_names[] = {"memory:cgroup-v2", "pids:cgroup-v2", "cpu:cgroup-v2"};
    char pdir[PATH_MAX];
    int rc = 0;
    memset(out, 0, sizeof *out);
    if (env->v2_own[0] && (env->v2_kill || env->v2_ctrl)) {
        if ((rc = path_join(pdir, env->v2_own, parent)) < 0 || (rc = mkdir_ok(pdir)) < 0)
            goto out_destroy;
        if (env->v2_ctrl && (rc = v2_enable(env->v2_own, pdir, env->v2_ctrl)) < 0)
            goto out_destroy;
        if ((rc = path_join(out->v2, pdir, id)) < 0)
            goto out_destroy;
        if ((rc = mkdir_fresh(out->v2)) < 0) {
            out->v2[0] = '\0';
            goto out_destroy;
        }
        for (int c = 0; c < SBX_CG_NCTRL; c++) {
            if (!(env->v2_ctrl & (1u << c)))
                continue;
            if ((rc = set_limits(out->v2, c, true, lim)) < 0)
                goto out_destroy;
            if (limit_set(c, lim))
                enforced[(*n)++] = v2_names[c];
        }
        if ((rc = chown_delegate(out->v2, owner)) < 0)
            goto out_destroy;
    }
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        if (!env->v1_own[c][0] || (env->v2_ctrl & (1u << c)))
            continue;
        if ((rc = path_join(pdir, env->v1_own[c], parent)) < 0 || (rc = mkdir_ok(pdir)) < 0)
            goto out_destroy;
        if ((rc = path_join(out->v1[c], pdir, id)) < 0)
            goto out_destroy;
        if ((rc = mkdir_fresh(out->v1[c])) < 0) {
            out->v1[c][0] = '\0';
            goto out_destroy;
        }
        if ((rc = set_limits(out->v1[c], c, false, lim)) < 0)
            goto out_destroy;
        if (limit_set(c, lim))
            enforced[(*n)++] = v1_names[c];
    }
    return 0;

out_destroy:
    SBX_LOG_ERRNO(SBX_LOG_ERROR, "cgroup", rc, "cannot create sandbox cgroups id=%s", id);
    sbx_cg_destroy(out);
    return rc;
}

int sbx_cg_update(const sbx_cg_env *env, const sbx_cg *cg, const sbx_cg_limits *old,
                  const sbx_cg_limits *lim, const char **enforced, size_t *n)
{
    static const char *const v1_names[] = {"memory:cgroup-v1", "pids:cgroup-v1", "cpu:cgroup-v1"};
    static const char *const v2_names[] = {"memory:cgroup-v2", "pids:cgroup-v2", "cpu:cgroup-v2"};
    for (int c = 0; c < SBX_CG_NCTRL; c++) {
        bool v1 = cg->v1[c][0] != '\0';
        bool v2 = !v1 && cg->v2[0] && (env->v2_ctrl & (1u << c));
        if (!v1 && !v2)
            continue;
        int rc = apply_limits(v1 ? cg->v1[c] : cg->v2, c, v2, old, lim);
        if (rc < 0) {
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "cgroup", rc, "cannot set sandbox limits dir=%s",
                          v1 ? cg->v1[c] : cg->v2);
            return rc;
        }
        if (limit_set(c, lim))
            enforced[(*n)++] = v1 ? v1_names[c] : v2_names[c];
    }
    return 0;
}

int sbx_cg_attach(const sbx_cg *cg, pid_t pid)
{
    char val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    int rc;
    if (cg->v2[0] && (rc = write_str(cg->v2, "cgroup.procs", val)) < 0)
        return rc;
    for (int c = 0; c < SBX_CG_NCTRL; c++)
        if (cg->v1[c][0] && (rc = write_str(cg->v1[c], "cgroup.procs", val)) < 0)
            return rc;
    return 0;
}

/* Kills every pid listed in dir/cgroup.procs; returns how many were listed. */
static int kill_listed(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1) {
        kill(pid, SIGKILL);
        n++;
    }
    fclose(f);
    return n;
}

int sbx_cg_kill(const sbx_cg *cg)
{
    if (cg->v2[0] && write_str(cg->v2, "cgroup.kill", "1") == 0)
        return 0;
    /* v1: no atomic kill; repeat until the pids group is empty (bounded by pids.max) */
    const char *dir = cg->v1[SBX_CG_PIDS][0] ? cg->v1[SBX_CG_PIDS] : cg->v1[SBX_CG_MEMORY];
    if (!dir[0])
        return -ENOENT;
    for (int i = 0; i < 100 && kill_listed(dir) > 0; i++)
        usleep(1000);
    return 0;
}

/* rmdir with child groups first (the per-command groups of the cgroup2 dir). */
static int rmdir_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char sub[PATH_MAX + 260];
        while ((de = readdir(d)) != NULL) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
            rmdir_tree(sub);
        }
        closedir(d);
    }
    return rmdir(dir) < 0 && errno != ENOENT ? -errno : 0;
}

/* Kills what is in dir (cgroup.kill, else the listed pids) and removes it with its child
 * groups, retrying for ~2 s while it empties. */
static int kill_and_remove(const char *dir)
{
    char kill_file[PATH_MAX + 16];
    snprintf(kill_file, sizeof kill_file, "%s/cgroup.kill", dir);
    bool v2_kill = access(kill_file, F_OK) == 0;
    int rc = -EBUSY;
    for (int i = 0; i < 200 && rc == -EBUSY; i++) {
        if (v2_kill)
            write_str(dir, "cgroup.kill", "1");
        else
            kill_listed(dir);
        rc = rmdir_tree(dir);
        if (rc == -EBUSY)
            usleep(10000);
    }
    return rc;
}

/* Every group directly below pdir, killed and removed; returns how many went (or -errno of the
 * first that would not). */
static int sweep_dir(const char *pdir, size_t *removed)
{
    DIR *d = opendir(pdir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *de;
    char sub[PATH_MAX + 260];
    while ((de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", pdir, de->d_name);
        int r = kill_and_remove(sub);
        if (r == 0)
            (*removed)++;
        else if (rc == 0) {
            SBX_LOG_ERRNO(SBX_LOG_WARN, "cgroup", r, "cannot remove a left-over cgroup dir=%s",
                          sub);
            rc = r;
        }
    }
    closedir(d);
    return rc;
}

int sbx_cg_sweep(const sbx_cg_env *env, const char *parent, size_t *removed)
{
    const char *own[1 + SBX_CG_NCTRL] = {env->v2_own, env->v1_own[0], env->v1_own[1],
                                         env->v1_own[2]};
    char pdir[PATH_MAX];
    int rc = 0;
    *removed = 0;
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        if (!own[i][0] || path_join(pdir, own[i], parent) < 0)
            continue;
        int r = sweep_dir(pdir, removed);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

void sbx_cg_remove_parent(const sbx_cg_env *env, const char *parent)
{
    const char *own[1 + SBX_CG_NCTRL] = {env->v2_own, env->v1_own[0], env->v1_own[1],
                                         env->v1_own[2]};
    char pdir[PATH_MAX];
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (own[i][0] && path_join(pdir, own[i], parent) == 0)
            rmdir(pdir); /* still in use (EBUSY, ENOTEMPTY): it stays */
}

int sbx_cg_destroy(sbx_cg *cg)
{
    int rc = 0;
    char *dirs[1 + SBX_CG_NCTRL] = {cg->v2, cg->v1[0], cg->v1[1], cg->v1[2]};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        if (!dirs[i][0])
            continue;
        int r = 0;
        for (int tries = 0; tries < 200; tries++) {
            r = rmdir_tree(dirs[i]);
            if (r != -EBUSY)
                break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (r < 0) {
            SBX_LOG_ERRNO(SBX_LOG_WARN, "cgroup", r, "cannot remove cgroup dir=%s", dirs[i]);
            rc = r;
        } else {
            dirs[i][0] = '\0';
        }
    }
    return rc;
}

static uint64_t read_u64(const char *dir, const char *file)
{
    char buf[64];
    if (!dir[0] || read_str(dir, file, buf, sizeof buf) < 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

static uint64_t read_keyed(const char *dir, const char *file, const char *key)
{
    char buf[2048];
    if (!dir[0] || read_str(dir, file, buf, sizeof buf) < 0)
        return 0;
    size_t kl = strlen(key);
    for (char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtoull(p + kl + 1, NULL, 10);
    return 0;
}

int sbx_cg_stats_read(const sbx_cg *cg, sbx_cg_stats *st)
{
    memset(st, 0, sizeof *st);
    const char *m1 = cg->v1[SBX_CG_MEMORY], *p1 = cg->v1[SBX_CG_PIDS];
    if (m1[0]) {
        st->memory_current = read_u64(m1, "memory.usage_in_bytes");
        st->memory_peak = read_u64(m1, "memory.max_usage_in_bytes");
        st->oom_kills = read_keyed(m1, "memory.oom_control", "oom_kill");
    } else if (cg->v2[0]) {
        st->memory_current = read_u64(cg->v2, "memory.current");
        st->memory_peak = read_u64(cg->v2, "memory.peak");
        st->oom_kills = read_keyed(cg->v2, "memory.events", "oom_kill");
    }
    st->pids_current = read_u64(p1[0] ? p1 : cg->v2, "pids.current");
    return 0;
}
