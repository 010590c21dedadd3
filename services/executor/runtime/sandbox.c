/* sandbox.c: a sandbox's life on the executor side (see sandbox.h): create, destroy, and what
 * callers may read about it.
 *
 * Job: a cold create makes the sandbox's cgroups and home, spawns its sbx-init helper through
 * the spawner thread (service.c), moves it into the groups, sends Setup and waits for the init's
 * Ready (what it enforces). A create with uid_base 0 goes to the pool (pool.c), which claims a
 * parked init or comes back here for a cold create in a block of its range. Destroy kills the
 * init (pid 1: the whole sandbox dies with it), reaps it, removes the groups and gives the uid
 * block back.
 * Threads: any. Ownership: sbx_sandbox_create's caller owns the sandbox until
 * sbx_sandbox_destroy; the registry (service.c) only points at it. Locks: sb->lock alone. */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* ---------------------------------------------------------------- building blocks */

bool sbx__valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 64 || id[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

static void reap_pid(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

void sbx__sb_free(sbx_sandbox *sb)
{
    if (sb->sock >= 0)
        close(sb->sock);
    if (sb->exit_efd >= 0)
        close(sb->exit_efd);
    if (sb->root_fd >= 0)
        close(sb->root_fd);
    if (sb->netns_fd >= 0)
        close(sb->netns_fd);
    if (sb->disk_fd >= 0)
        close(sb->disk_fd); /* the last reference to the home image's mount: unmounted */
    pthread_mutex_destroy(&sb->lock);
    pthread_cond_destroy(&sb->cond);
    free(sb->q);
    free(sb->live);
    free(sb);
}

sbx_sandbox *sbx__sb_alloc(const char *id, uint32_t uid_base, int slot)
{
    sbx_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb)
        return NULL;
    sb->sock = -1;
    sb->root_fd = sb->netns_fd = sb->disk_fd = -1;
    sb->slot = slot;
    snprintf(sb->id, sizeof sb->id, "%s", id);
    sb->uid_base = uid_base;
    pthread_mutex_init(&sb->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sb->cond, &ca);
    pthread_condattr_destroy(&ca);
    sb->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sb->exit_efd < 0) {
        sbx__sb_free(sb);
        return NULL;
    }
    return sb;
}

pid_t sbx__sb_spawn_init(sbx_sandbox *sb, const char *init_path, int *cg2fd)
{
    int sv[2];
    *cg2fd = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* fds 3 and 4 are where the init expects them: keep ours clear of those numbers */
    int hi = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    int bufsz = 2 * SBX_WIRE_MAX;
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof bufsz) < 0)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    sb->sock = sv[0];
    if (hi < 0)
        return -EMFILE;
    int fd;
    if (sb->cg.v2[0] && (fd = open(sb->cg.v2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        *cg2fd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
        close(fd);
    }
    pid_t helper = sbx__svc_spawn(init_path, hi, *cg2fd);
    close(hi);
    return helper;
}

int sbx__sb_attach(sbx_sandbox *sb, pid_t helper)
{
    int rc = sbx_cg_attach(&sb->cg, helper);
    if (rc == 0)
        rc = sbx__svc_watch(sb);
    if (rc < 0) {
        kill(helper, SIGKILL);
        reap_pid(helper);
    }
    return rc;
}

/* Adds the strings of Ready.enforced that we know (static, so sb->enforced needs no frees). */
static void add_enforced(sbx_sandbox *sb, const Sbxinit__Ready *r)
{
    static const char *const known[] = {"userns",
                                        "mount-ns",
                                        "pid-ns",
                                        "net:loopback-only",
                                        "seccomp",
                                        "kill-tree:cgroup-v2-kill",
                                        "kill-tree:process-group"};
    for (size_t i = 0; i < r->n_enforced && sb->nenforced < MAX_ENFORCED; i++) {
        for (size_t k = 0; k < sizeof known / sizeof *known; k++)
            if (strcmp(known[k], r->enforced[i]) == 0)
                sb->enforced[sb->nenforced++] = known[k];
        if (strcmp(r->enforced[i], "userns") == 0)
            sb->userns = true;
    }
}

int sbx__sb_take_ready(sbx_sandbox *sb, sbx__pending *p)
{
    int rc;
    if (p->msg->body_case != SBXINIT__INIT_MSG__BODY_READY) {
        rc = -EPROTO;
    } else {
        const Sbxinit__Ready *r = p->msg->ready;
        if (r->init_pid > 0)
            sb->init_pid = r->init_pid;
        rc = -r->err;
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "sandbox init failed id=%s step=%s", sb->id,
                          r->err_what);
        else
            add_enforced(sb, r);
        if (rc == 0 && p->nfds == 2) { /* the final Ready: the root and the net namespace */
            if (sb->root_fd >= 0)
                close(sb->root_fd);
            if (sb->netns_fd >= 0)
                close(sb->netns_fd);
            sb->root_fd = p->fds[0];
            sb->netns_fd = p->fds[1];
            p->nfds = 0;
        }
    }
    sbx__pending_release(p);
    return rc;
}

int sbx__sb_setup(sbx_sandbox *sb, Sbxinit__Setup *su, pid_t helper, const int *fds, size_t nfds)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    su->uid_base = sb->uid_base;
    su->expect_ppid = (uint32_t)getpid();
    m.body_case = SBXINIT__INIT_MSG__BODY_SETUP;
    m.setup = su;
    sbx__pending p;
    int rc = sbx__request_fds(sb, &m, fds, nfds, &p, SETUP_TIMEOUT_MS);
    reap_pid(helper); /* the helper exits once the init runs (or on failure) */
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "sandbox init did not start id=%s", sb->id);
        return rc;
    }
    return sbx__sb_take_ready(sb, &p);
}

void sbx__sb_add_rlimit_enforced(sbx_sandbox *sb)
{
    if (sb->nenforced < MAX_ENFORCED)
        sb->enforced[sb->nenforced++] = "rlimits:nofile,core,fsize";
    if (sb->nenforced < MAX_ENFORCED)
        sb->enforced[sb->nenforced++] = "tmpfs-size:/tmp,/dev/shm";
    if (sb->disk_fd >= 0 && sb->nenforced + 2 <= MAX_ENFORCED) {
        sb->enforced[sb->nenforced++] = "disk:" SBX_DISK_MECH_LOOP;
        sb->enforced[sb->nenforced++] = "disk_inodes:" SBX_DISK_MECH_LOOP;
    }
}

sbx_cg_limits sbx__cg_limits_of(const sbx_sandbox_limits *l)
{
    return (sbx_cg_limits){.memory_bytes = l->memory_bytes,
                           .pids = l->pids,
                           .cpu_millis = l->cpu_millis,
                           .cpu_weight = l->cpu_weight};
}

/* ---------------------------------------------------------------- cold create */

/* The per-sandbox Setup of a cold create (strings point into cfg and sb). */
static Sbxinit__Setup cold_setup(const sbx_sandbox_cfg *cfg, sbx_sandbox *sb, bool has_cgroup2)
{
    Sbxinit__Setup su = SBXINIT__SETUP__INIT;
    su.hostname = sb->id;
    su.tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : DEFAULT_TMP_BYTES;
    su.nofile = cfg->limits.nofile ? cfg->limits.nofile : DEFAULT_NOFILE;
    su.fsize_bytes = cfg->limits.file_bytes;
    su.nproc = cfg->limits.nproc;
    su.weak = cfg->allow_weak_isolation;
    su.has_cgroup2 = has_cgroup2;
    return su;
}

/* The detached mounts a cold init gets with Setup: the home (fds[0], when cfg has one) and the
 * template root (next). Returns how many, or -errno (none left open). */
static int cold_mounts(const sbx_sandbox_cfg *cfg, sbx_sandbox *sb, Sbxinit__Setup *su, int *fds)
{
    int n = 0, rc = 0;
    if (cfg->home_dir || cfg->home_image) {
        if ((rc = sbx__home_open(sb, cfg, &fds[0])) < 0)
            return rc;
        su->has_home_mount = true;
        n++;
    }
    if (cfg->template_root) {
        if ((fds[n] = sbx__template_mount_fd(cfg->template_root)) < 0) {
            rc = fds[n];
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot clone the template dir=%s",
                          cfg->template_root);
            for (int i = 0; i < n; i++)
                close(fds[i]);
            return rc;
        }
        su->has_template_mount = true;
        n++;
    }
    return n;
}

/* Home, groups, init: the sandbox sb (registered) made ready. */
static int cold_start(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int *cg2fd)
{
    const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent : "sbx";
    sbx_cg_env cgenv = sbx__detect_cg_env();
    Sbxinit__Setup su = SBXINIT__SETUP__INIT;
    int fds[2];
    int nfds = cold_mounts(cfg, sb, &su, fds);
    if (nfds < 0)
        return nfds;
    int rc;
    sb->cg_lim = sbx__cg_limits_of(&cfg->limits);
    if ((rc = sbx_cg_create(&cgenv, parent, cfg->id, &sb->cg_lim, sb->uid_base, &sb->cg,
                            sb->enforced, &sb->nenforced)) < 0)
        goto out_close;
    pid_t helper = sbx__sb_spawn_init(sb, cfg->init_path, cg2fd);
    if (helper < 0) {
        rc = helper;
        goto out_close;
    }
    if ((rc = sbx__sb_attach(sb, helper)) < 0)
        goto out_close;
    Sbxinit__Setup full = cold_setup(cfg, sb, *cg2fd >= 0);
    full.has_home_mount = su.has_home_mount;
    full.has_template_mount = su.has_template_mount;
    rc = sbx__sb_setup(sb, &full, helper, fds, (size_t)nfds);
out_close:
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    return rc;
}

int sbx__sb_create_cold(const sbx_sandbox_cfg *cfg, uint32_t uid_base, int slot, sbx_sandbox **out)
{
    int rc;
    sbx_sandbox *sb = sbx__sb_alloc(cfg->id, uid_base, slot);
    if (!sb) {
        sbx__pool_slot_put(slot);
        return -ENOMEM;
    }
    sb->cb = cfg->on_exit;
    sb->cb_arg = cfg->on_exit_arg;
    if ((rc = sbx__svc_add(sb)) < 0) {
        sbx__sb_free(sb);
        sbx__pool_slot_put(slot);
        return rc;
    }
    int cg2fd = -1;
    rc = cold_start(sb, cfg, &cg2fd);
    if (cg2fd >= 0)
        close(cg2fd);
    if (rc < 0) {
        sbx_sandbox_destroy(sb); /* kills the init if there is one, removes groups, frees slot */
        return rc;
    }
    sbx__sb_add_rlimit_enforced(sb);
    SBX_LOG_INFO("sandbox", "created id=%s init_pid=%d uid_base=%u", sb->id, (int)sb->init_pid,
                 sb->uid_base);
    *out = sb;
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

static bool valid_cfg(const sbx_sandbox_cfg *cfg)
{
    return cfg && sbx__valid_id(cfg->id) && cfg->init_path &&
           (!cfg->home_image || (cfg->disk_bytes >= (4ull << 20) && cfg->disk_inodes >= 1024)) &&
           (cfg->uid_base == 0 ||
            (cfg->uid_base >= UID_BLOCK && cfg->uid_base <= UINT32_MAX - UID_BLOCK)) &&
           (!cfg->cgroup_parent || sbx__valid_id(cfg->cgroup_parent));
}

int sbx_sandbox_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out)
{
    *out = NULL;
    if (!valid_cfg(cfg))
        return -EINVAL;
    if (cfg->uid_base != 0 && sbx__pool_in_range(cfg->uid_base)) {
        SBX_LOG_ERROR("sandbox", "uid_base=%u overlaps the pool's uid range id=%s", cfg->uid_base,
                      cfg->id);
        return -EINVAL;
    }
    sbx_sandbox_caps caps;
    int rc = sbx__runtime_start(cfg->init_path, &caps);
    if (rc < 0)
        return rc;
    if (!caps.namespaces && !cfg->allow_weak_isolation) {
        SBX_LOG_ERROR("sandbox", "refusing to create a sandbox without namespaces id=%s", cfg->id);
        return -EPERM;
    }
    if (cfg->uid_base != 0)
        return sbx__sb_create_cold(cfg, cfg->uid_base, -1, out);
    return sbx__pool_create(cfg, out);
}

void sbx_sandbox_destroy(sbx_sandbox *sb)
{
    if (!sb)
        return;
    sbx__svc_remove(sb);
    pthread_mutex_lock(&sb->lock);
    sb->dead = true;
    for (sbx__pending *p = sb->pending; p; p = p->next)
        if (!p->done) {
            p->done = true;
            p->err = -EPIPE;
        }
    pthread_cond_broadcast(&sb->cond);
    while (sb->inflight > 0)
        pthread_cond_wait(&sb->cond, &sb->lock);
    pthread_mutex_unlock(&sb->lock);
    if (sb->init_pid > 0) {
        /* pid 1 of the namespace: its death kills every process in the sandbox, and it is
           reaped only once they are all gone */
        kill(sb->init_pid, SIGKILL);
        reap_pid(sb->init_pid);
    }
    sbx_cg_kill(&sb->cg);
    sbx_cg_destroy(&sb->cg);
    if (!sb->parked && sb->init_pid > 0)
        SBX_LOG_INFO("sandbox", "destroyed id=%s", sb->id);
    int slot = sb->slot;
    sbx__sb_free(sb);
    sbx__pool_slot_put(slot); /* the range is free once nothing of the sandbox runs */
}

/* ---------------------------------------------------------------- accessors */

bool sbx_sandbox_alive(const sbx_sandbox *sb)
{
    sbx_sandbox *s = (sbx_sandbox *)sb;
    pthread_mutex_lock(&s->lock);
    bool alive = !s->dead;
    pthread_mutex_unlock(&s->lock);
    return alive;
}

size_t sbx_sandbox_enforced(const sbx_sandbox *sb, const char *const **list)
{
    *list = sb->enforced;
    return sb->nenforced;
}

int sbx_sandbox_root_fd(const sbx_sandbox *sb)
{
    return sb->root_fd;
}

int sbx_sandbox_netns_fd(const sbx_sandbox *sb)
{
    return sb->netns_fd;
}

pid_t sbx_sandbox_init_pid(const sbx_sandbox *sb)
{
    return sb->init_pid;
}

uid_t sbx_sandbox_user_uid(const sbx_sandbox *sb)
{
    return sb->uid_base + USER_ID;
}

uint32_t sbx_sandbox_uid_base(const sbx_sandbox *sb)
{
    return sb->uid_base;
}

bool sbx_sandbox_from_pool(const sbx_sandbox *sb)
{
    return sb->from_pool;
}

int sbx_sandbox_disk_usage(const sbx_sandbox *sb, sbx_disk_usage *u)
{
    memset(u, 0, sizeof *u);
    return sb->disk_fd < 0 ? -ENOENT : sbx__disk_usage(sb->disk_fd, u);
}

int sbx_sandbox_read_stats(const sbx_sandbox *sb, sbx_sandbox_stats *st)
{
    sbx_cg_stats cs;
    int rc = sbx_cg_stats_read(&sb->cg, &cs);
    st->memory_current = cs.memory_current;
    st->memory_peak = cs.memory_peak;
    st->oom_kills = cs.oom_kills;
    st->pids_current = cs.pids_current;
    return rc;
}
