/* sandbox.c: the executor side of sandboxes (see sandbox.h). Creates a sandbox's cgroups and
 * home, starts its sbx-init through one long-lived service thread (so every init's
 * PR_SET_PDEATHSIG parent lives as long as the process), and talks to the init over a
 * SOCK_SEQPACKET socketpair: callers send requests and sleep on the sandbox's condition
 * variable; the service thread reads every init socket (epoll), hands answers (and received
 * pipe fds) to the waiting caller, and queues command exits (eventfd + optional callback).
 * Inits are spawned by a second immortal thread (the spawner), so a spawn never delays the
 * answers the service thread relays, and every init's PDEATHSIG parent still never exits.
 *
 * Warm pool (sbx_sandbox_pool_config): a refill thread keeps inits parked with their
 * namespaces, uid maps, cgroups (already attached: the first cgroup.procs write after a quiet
 * spell waits for an RCU grace period, 6-15 ms here) and compiled seccomp program ready; a
 * create with uid_base 0 claims one and sends it only the per-sandbox parts. */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "log.h"
#include "wire.h"

#define MAX_ENFORCED 24
#define REQUEST_TIMEOUT_MS 30000
#define USER_ID 1000u

typedef struct pending {
    uint64_t id;
    bool done;
    int err;
    Sbxinit__InitMsg *msg;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds;
    struct pending *next;
} pending;

struct sbx_sandbox {
    uint64_t key; /* registry key used as the epoll cookie */
    char id[65];
    int sock;
    int exit_efd;
    pid_t init_pid;
    uint32_t uid_base;
    int slot;    /* index of uid_base in the pool's range, or -1 (the caller's own range) */
    bool parked; /* a pool init not claimed yet: not a sandbox (sbx_sandbox_count) */
    bool userns;
    sbx_cg cg;
    sbx_cg_limits cg_lim; /* what the groups hold now */
    const char *enforced[MAX_ENFORCED];
    size_t nenforced;
    char home[4096];
    sbx_exit_cb cb;
    void *cb_arg;
    sbx_exit_cb hook; /* sbx_sandbox_set_exit_hook: exits go here instead of the queue */
    void *hook_arg;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;
    bool dead;
    int inflight; /* callers inside request() */
    uint64_t next_id;
    pending *pending;
    sbx_exit *q; /* ring of queued exits */
    size_t qhead, qlen, qcap;
    int *live; /* pids started and not yet reported exited */
    size_t nlive, caplive;
};

#define POOL_MAX 64  /* parked inits at most */
#define POOL_BATCH 8 /* built together, so one RCU grace period covers their cgroup moves */
#define UID_BLOCK 65536u

typedef struct spawn_job {
    const char *path;
    int sock, cg2fd;
    pid_t pid;
    int err;
    bool done;
    struct spawn_job *next;
} spawn_job;

static struct {
    pthread_once_t once;
    int start_err;
    int epfd, wake;
    pthread_mutex_t lock;      /* registry, jobs, caps */
    pthread_cond_t job_cond;   /* a job is done */
    pthread_cond_t spawn_cond; /* a job is queued */
    pthread_mutex_t dispatch;  /* held by the service thread while it handles an epoll batch */
    spawn_job *jobs;
    sbx_sandbox **reg;
    size_t nreg, capreg;
    uint64_t next_key;
    uint8_t *rx;
    bool caps_done;
    sbx_sandbox_caps caps;
    sbx_cg_env cgenv;
    char cgenv_parent[64];
} svc = {.once = PTHREAD_ONCE_INIT,
         .lock = PTHREAD_MUTEX_INITIALIZER,
         .job_cond = PTHREAD_COND_INITIALIZER,
         .spawn_cond = PTHREAD_COND_INITIALIZER,
         .dispatch = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- service thread */

static sbx_sandbox *reg_find_key(uint64_t key)
{
    for (size_t i = 0; i < svc.nreg; i++)
        if (svc.reg[i]->key == key)
            return svc.reg[i];
    return NULL;
}

/* Records an exit (caller holds sb->lock): queued, or false when the exit hook takes it (the
 * caller calls it after unlocking). */
static bool deliver_exit(sbx_sandbox *sb, const sbx_exit *ev)
{
    for (size_t i = 0; i < sb->nlive; i++)
        if (sb->live[i] == ev->pid) {
            sb->live[i] = sb->live[--sb->nlive];
            break;
        }
    if (sb->hook)
        return false;
    if (sb->qlen == sb->qcap) {
        size_t ncap = sb->qcap ? sb->qcap * 2 : 16;
        sbx_exit *nq = malloc(ncap * sizeof *nq);
        if (!nq) {
            SBX_LOG_ERROR("sandbox", "exit queue full, dropping exit id=%s pid=%d", sb->id,
                          ev->pid);
            return true;
        }
        for (size_t i = 0; i < sb->qlen; i++)
            nq[i] = sb->q[(sb->qhead + i) % sb->qcap];
        free(sb->q);
        sb->q = nq;
        sb->qcap = ncap;
        sb->qhead = 0;
    }
    sb->q[(sb->qhead + sb->qlen++) % sb->qcap] = *ev;
    uint64_t one = 1;
    if (write(sb->exit_efd, &one, sizeof one) < 0)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", errno, "exit eventfd id=%s", sb->id);
    return true;
}

static void mark_dead(sbx_sandbox *sb)
{
    sbx_exit lost[64];
    size_t nlost = 0;
    pthread_mutex_lock(&sb->lock);
    if (!sb->dead)
        SBX_LOG_WARN("sandbox", "sandbox init is gone id=%s init_pid=%d", sb->id,
                     (int)sb->init_pid);
    sb->dead = true;
    for (pending *p = sb->pending; p; p = p->next)
        if (!p->done) {
            p->done = true;
            p->err = -EPIPE;
        }
    sbx_exit_cb hook = sb->hook;
    void *hook_arg = sb->hook_arg;
    while (sb->nlive > 0) {
        sbx_exit ev = {.pid = sb->live[sb->nlive - 1], .signal = SIGKILL, .lost = true};
        deliver_exit(sb, &ev);
        if (nlost < sizeof lost / sizeof *lost)
            lost[nlost++] = ev;
    }
    pthread_cond_broadcast(&sb->cond);
    pthread_mutex_unlock(&sb->lock);
    for (size_t i = 0; i < nlost; i++) {
        if (hook)
            hook(hook_arg, &lost[i]);
        if (sb->cb)
            sb->cb(sb->cb_arg, &lost[i]);
    }
}

static void handle_message(sbx_sandbox *sb, Sbxinit__InitMsg *m, int *fds, size_t nfds)
{
    if (m->body_case == SBXINIT__INIT_MSG__BODY_EXITED && m->id == 0) {
        const Sbxinit__Exited *e = m->exited;
        sbx_exit ev = {.pid = e->pid,
                       .exit_code = e->exit_code,
                       .signal = e->signal,
                       .timed_out = e->timed_out,
                       .core_dumped = e->core_dumped,
                       .duration_us = e->duration_us};
        if (e->rusage) {
            ev.utime_us = e->rusage->utime_us;
            ev.stime_us = e->rusage->stime_us;
            ev.maxrss_kb = e->rusage->maxrss_kb;
        }
        pthread_mutex_lock(&sb->lock);
        bool queued = deliver_exit(sb, &ev);
        sbx_exit_cb hook = sb->hook;
        void *hook_arg = sb->hook_arg;
        pthread_mutex_unlock(&sb->lock);
        if (!queued)
            hook(hook_arg, &ev);
        if (sb->cb)
            sb->cb(sb->cb_arg, &ev);
        goto out_free;
    }
    pthread_mutex_lock(&sb->lock);
    for (pending *p = sb->pending; p; p = p->next) {
        if (p->id != m->id || p->done)
            continue;
        p->done = true;
        p->msg = m;
        memcpy(p->fds, fds, nfds * sizeof *fds);
        p->nfds = nfds;
        if (m->body_case == SBXINIT__INIT_MSG__BODY_STARTED && m->started->err == 0) {
            if (sb->nlive == sb->caplive) {
                size_t nc = sb->caplive ? sb->caplive * 2 : 16;
                int *nl = realloc(sb->live, nc * sizeof *nl);
                if (nl) {
                    sb->live = nl;
                    sb->caplive = nc;
                }
            }
            if (sb->nlive < sb->caplive)
                sb->live[sb->nlive++] = m->started->pid;
        }
        pthread_cond_broadcast(&sb->cond);
        pthread_mutex_unlock(&sb->lock);
        return;
    }
    pthread_mutex_unlock(&sb->lock);
    /* nobody waits for it any more (a timed-out caller) */
out_free:
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    sbxinit__init_msg__free_unpacked(m, NULL);
}

static void service_sandbox(uint64_t key)
{
    pthread_mutex_lock(&svc.lock);
    sbx_sandbox *sb = reg_find_key(key);
    pthread_mutex_unlock(&svc.lock);
    if (!sb)
        return; /* destroyed meanwhile; destroy waits for this batch before freeing */
    for (int i = 0; i < 64; i++) {
        Sbxinit__InitMsg *m;
        int fds[SBX_WIRE_MAX_FDS];
        size_t nfds;
        int rc = sbx_wire_recv(sb->sock, svc.rx, SBX_WIRE_MAX, MSG_DONTWAIT, &m, fds, &nfds);
        if (rc == -EAGAIN)
            return;
        if (rc == -EPROTO) {
            SBX_LOG_WARN("sandbox", "malformed message from init id=%s", sb->id);
            continue;
        }
        if (rc < 0) {
            epoll_ctl(svc.epfd, EPOLL_CTL_DEL, sb->sock, NULL);
            mark_dead(sb);
            return;
        }
        handle_message(sb, m, fds, nfds);
    }
}

/* The spawner thread: posix_spawn of every init helper. It never exits (PDEATHSIG). */
static void *spawner_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&svc.lock);
        while (!svc.jobs)
            pthread_cond_wait(&svc.spawn_cond, &svc.lock);
        spawn_job *j = svc.jobs;
        svc.jobs = j->next;
        pthread_mutex_unlock(&svc.lock);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, j->sock, 3);
        if (j->cg2fd >= 0)
            posix_spawn_file_actions_adddup2(&fa, j->cg2fd, 4);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &all);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                          POSIX_SPAWN_SETSID);
        char *argv[] = {(char *)j->path, NULL};
        char *envp[] = {NULL};
        pid_t pid = -1;
        int rc = posix_spawn(&pid, j->path, &fa, &at, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        pthread_mutex_lock(&svc.lock);
        j->pid = pid;
        j->err = -rc;
        j->done = true;
        pthread_cond_broadcast(&svc.job_cond);
        pthread_mutex_unlock(&svc.lock);
    }
    return NULL;
}

static void *service_main(void *arg)
{
    (void)arg;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(svc.epfd, ev, 64, -1);
        if (n < 0) {
            if (errno != EINTR)
                SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", errno, "epoll_wait");
            continue;
        }
        pthread_mutex_lock(&svc.dispatch);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 == 0) {
                uint64_t v;
                if (read(svc.wake, &v, sizeof v) < 0 && errno != EAGAIN)
                    SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", errno, "wake eventfd");
            } else {
                service_sandbox(ev[i].data.u64);
            }
        }
        pthread_mutex_unlock(&svc.dispatch);
    }
    return NULL;
}

static void service_start(void)
{
    svc.rx = malloc(SBX_WIRE_MAX);
    svc.epfd = epoll_create1(EPOLL_CLOEXEC);
    svc.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!svc.rx || svc.epfd < 0 || svc.wake < 0) {
        svc.start_err = -ENOMEM;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    epoll_ctl(svc.epfd, EPOLL_CTL_ADD, svc.wake, &ev);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    /* the service thread must not take signals meant for the process */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &a, service_main, NULL);
    if (rc == 0)
        rc = pthread_create(&t, &a, spawner_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    svc.start_err = -rc;
}

static int service_get(void)
{
    pthread_once(&svc.once, service_start);
    return svc.start_err;
}

/* Runs posix_spawn of the init on the spawner thread; returns the pid or -errno. */
static pid_t spawn_on_service(const char *path, int sock, int cg2fd)
{
    spawn_job j = {.path = path, .sock = sock, .cg2fd = cg2fd};
    pthread_mutex_lock(&svc.lock);
    spawn_job **tail = &svc.jobs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &j;
    pthread_cond_signal(&svc.spawn_cond);
    while (!j.done)
        pthread_cond_wait(&svc.job_cond, &svc.lock);
    pthread_mutex_unlock(&svc.lock);
    return j.err < 0 ? j.err : j.pid;
}

/* ---------------------------------------------------------------- requests */

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void pending_unlink(sbx_sandbox *sb, pending *p)
{
    for (pending **pp = &sb->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

/* Sends msg (with nfds descriptors) and waits for the answer. On 0, p->msg (and p->fds)
 * belong to the caller. */
static int request_fds(sbx_sandbox *sb, Sbxinit__InitMsg *msg, const int *fds, size_t nfds,
                       pending *p, int timeout_ms)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_lock(&sb->lock);
    if (sb->dead) {
        pthread_mutex_unlock(&sb->lock);
        return -EPIPE;
    }
    p->id = ++sb->next_id;
    p->next = sb->pending;
    sb->pending = p;
    sb->inflight++;
    pthread_mutex_unlock(&sb->lock);

    msg->id = p->id;
    int rc = sbx_wire_send(sb->sock, msg, fds, nfds);
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    pthread_mutex_lock(&sb->lock);
    while (rc == 0 && !p->done) {
        if (pthread_cond_timedwait(&sb->cond, &sb->lock, &dl) == ETIMEDOUT && !p->done)
            rc = -ETIMEDOUT;
    }
    if (rc == 0 && p->err)
        rc = p->err;
    pending_unlink(sb, p);
    if (--sb->inflight == 0)
        pthread_cond_broadcast(&sb->cond);
    pthread_mutex_unlock(&sb->lock);
    if (rc < 0 && p->msg) {
        for (size_t i = 0; i < p->nfds; i++)
            close(p->fds[i]);
        sbxinit__init_msg__free_unpacked(p->msg, NULL);
        p->msg = NULL;
    }
    return rc;
}

static int request(sbx_sandbox *sb, Sbxinit__InitMsg *msg, pending *p, int timeout_ms)
{
    return request_fds(sb, msg, NULL, 0, p, timeout_ms);
}

static int request_result(sbx_sandbox *sb, Sbxinit__InitMsg *msg)
{
    pending p;
    int rc = request(sb, msg, &p, REQUEST_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    rc = p.msg->body_case == SBXINIT__INIT_MSG__BODY_RESULT ? -p.msg->result->err : -EPROTO;
    for (size_t i = 0; i < p.nfds; i++)
        close(p.fds[i]);
    sbxinit__init_msg__free_unpacked(p.msg, NULL);
    return rc;
}

/* ---------------------------------------------------------------- capabilities */

int sbx_sandbox_caps_detect(const char *init_path, sbx_sandbox_caps *out)
{
    pthread_mutex_lock(&svc.lock);
    if (svc.caps_done) {
        *out = svc.caps;
        pthread_mutex_unlock(&svc.lock);
        return 0;
    }
    pthread_mutex_unlock(&svc.lock);
    if (!init_path)
        return -EINVAL;

    sbx_sandbox_caps c;
    memset(&c, 0, sizeof c);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)init_path, "--probe", NULL};
    char *envp[] = {NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, init_path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot run init path=%s", init_path);
        return -rc;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    c.namespaces = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!c.namespaces)
        snprintf(c.namespaces_err, sizeof c.namespaces_err, "sbx-init --probe failed");

    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    c.cgroup_v2 = env.v2_own[0] != '\0';
    c.cgroup_v2_kill = env.v2_kill;
    c.v2_controllers = env.v2_ctrl;
    for (int i = 0; i < SBX_CG_NCTRL; i++)
        if (env.v1_own[i][0])
            c.v1_controllers |= 1u << i;

    pthread_mutex_lock(&svc.lock);
    if (!svc.caps_done) {
        svc.caps = c;
        svc.cgenv = env;
        svc.caps_done = true;
        SBX_LOG_INFO("sandbox",
                     "isolation detected namespaces=%s cgroup_v2=%s v2_kill=%s v2_ctrl=0x%x "
                     "v1_ctrl=0x%x memory_v1=%s pids_v1=%s cpu_v1=%s v2_dir=%s",
                     c.namespaces ? "yes" : "no", c.cgroup_v2 ? "yes" : "no",
                     c.cgroup_v2_kill ? "yes" : "no", c.v2_controllers, c.v1_controllers,
                     env.v1_own[0][0] ? env.v1_own[0] : "-", env.v1_own[1][0] ? env.v1_own[1] : "-",
                     env.v1_own[2][0] ? env.v1_own[2] : "-", env.v2_own[0] ? env.v2_own : "-");
    }
    *out = svc.caps;
    pthread_mutex_unlock(&svc.lock);
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

static bool valid_id(const char *id)
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
    if (depth > 256)
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
        uid_t u = st.st_uid - old_base < 65536 ? st.st_uid - old_base + new_base : st.st_uid;
        gid_t g = st.st_gid - old_base < 65536 ? st.st_gid - old_base + new_base : st.st_gid;
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

static int prepare_home(const char *home, uint32_t uid_base, bool userns)
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
    (void)userns;
    if (st.st_uid == want && st.st_gid == want)
        return 0;
    if (st.st_uid >= 65536 + USER_ID && st.st_uid == st.st_gid) {
        int fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        rc = remap_tree(fd, st.st_uid - USER_ID, uid_base, 0);
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", rc, "re-owning home partly failed dir=%s", home);
    }
    return chown(home, want, want) < 0 ? -errno : 0;
}

static int reg_add(sbx_sandbox *sb)
{
    pthread_mutex_lock(&svc.lock);
    for (size_t i = 0; i < svc.nreg; i++)
        if (strcmp(svc.reg[i]->id, sb->id) == 0) {
            pthread_mutex_unlock(&svc.lock);
            return -EEXIST;
        }
    if (svc.nreg == svc.capreg) {
        size_t nc = svc.capreg ? svc.capreg * 2 : 16;
        sbx_sandbox **nr = realloc(svc.reg, nc * sizeof *nr);
        if (!nr) {
            pthread_mutex_unlock(&svc.lock);
            return -ENOMEM;
        }
        svc.reg = nr;
        svc.capreg = nc;
    }
    sb->key = ++svc.next_key;
    svc.reg[svc.nreg++] = sb;
    pthread_mutex_unlock(&svc.lock);
    return 0;
}

/* Takes sb out of the registry and the epoll set, and waits for a batch that may use it. */
static void reg_remove(sbx_sandbox *sb)
{
    pthread_mutex_lock(&svc.lock);
    for (size_t i = 0; i < svc.nreg; i++)
        if (svc.reg[i] == sb) {
            svc.reg[i] = svc.reg[--svc.nreg];
            break;
        }
    pthread_mutex_unlock(&svc.lock);
    if (sb->sock >= 0)
        epoll_ctl(svc.epfd, EPOLL_CTL_DEL, sb->sock, NULL);
    pthread_mutex_lock(&svc.dispatch);
    pthread_mutex_unlock(&svc.dispatch);
}

static void free_sandbox(sbx_sandbox *sb)
{
    if (sb->sock >= 0)
        close(sb->sock);
    if (sb->exit_efd >= 0)
        close(sb->exit_efd);
    pthread_mutex_destroy(&sb->lock);
    pthread_cond_destroy(&sb->cond);
    free(sb->q);
    free(sb->live);
    free(sb);
}

static void reap_pid(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- pool state */

static struct {
    pthread_mutex_t lock; /* everything below; taken after svc.lock, never before it */
    pthread_cond_t cond;  /* refill work, a slot freed, ready count changed, stop */
    bool configured;      /* a uid range is reserved */
    bool running, stop;   /* refill thread */
    pthread_t thread;
    unsigned gen; /* bumped by every (re)configuration: older parked inits are dropped */
    size_t target;
    char init_path[4096];
    char parent[65];
    char template_root[4096]; /* "" = host system dirs */
    uint64_t tmp_bytes;       /* /tmp and /dev/shm of the prebuilt roots */
    sbx_cg_limits lim;        /* written ahead into the parked inits' groups */
    uint32_t uid_first, nslots, nused, cursor;
    uint8_t used[65536 / 8];
    sbx_sandbox *ready[POOL_MAX];
    size_t nready, building;
    uint64_t claimed, cold, built, failures;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* caller holds pool.lock; returns a free slot index or -1 */
static int slot_take_locked(void)
{
    for (uint32_t k = 0; k < pool.nslots; k++) {
        uint32_t i = (pool.cursor + k) % pool.nslots;
        if (!(pool.used[i / 8] & (1u << (i % 8)))) {
            pool.used[i / 8] |= (uint8_t)(1u << (i % 8));
            pool.nused++;
            pool.cursor = i + 1;
            return (int)i;
        }
    }
    return -1;
}

static void slot_put(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&pool.lock);
    uint32_t i = (uint32_t)slot;
    if (i < pool.nslots && (pool.used[i / 8] & (1u << (i % 8)))) {
        pool.used[i / 8] &= (uint8_t) ~(1u << (i % 8));
        pool.nused--;
        pthread_cond_broadcast(&pool.cond);
    }
    pthread_mutex_unlock(&pool.lock);
}

static bool in_pool_range(uint32_t base)
{
    pthread_mutex_lock(&pool.lock);
    uint64_t lo = pool.uid_first, hi = lo + (uint64_t)pool.nslots * UID_BLOCK;
    bool in = pool.configured && (uint64_t)base + UID_BLOCK > lo && base < hi;
    pthread_mutex_unlock(&pool.lock);
    return in;
}

/* ---------------------------------------------------------------- building blocks */

static sbx_sandbox *sb_alloc(const char *id, uint32_t uid_base, int slot)
{
    sbx_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb)
        return NULL;
    sb->sock = -1;
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
        free_sandbox(sb);
        return NULL;
    }
    return sb;
}

/* Makes the init socket and spawns the helper (the sandbox's groups exist). *cg2fd is the
 * cgroup2 dir handed to the init (the caller closes it once Setup was answered). */
static pid_t sb_spawn(sbx_sandbox *sb, const char *init_path, int *cg2fd)
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
    pid_t helper = spawn_on_service(init_path, hi, *cg2fd);
    close(hi);
    return helper;
}

/* Moves the helper into the sandbox's groups (the init it forks after Setup inherits them) and
 * starts reading the socket. Kills and reaps the helper on failure. */
static int sb_attach(sbx_sandbox *sb, pid_t helper)
{
    int rc = sbx_cg_attach(&sb->cg, helper);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = sb->key};
    if (rc == 0 && epoll_ctl(svc.epfd, EPOLL_CTL_ADD, sb->sock, &ev) < 0)
        rc = -errno;
    if (rc < 0) {
        kill(helper, SIGKILL);
        reap_pid(helper);
    }
    return rc;
}

/* Records a Ready answer: the init pid and what the init enforces. */
static int take_ready(sbx_sandbox *sb, pending *p)
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
        for (size_t i = 0; rc == 0 && i < r->n_enforced && sb->nenforced < MAX_ENFORCED; i++) {
            static const char *const known[] = {"userns",
                                                "mount-ns",
                                                "pid-ns",
                                                "net:loopback-only",
                                                "seccomp",
                                                "kill-tree:cgroup-v2-kill",
                                                "kill-tree:process-group"};
            for (size_t k = 0; k < sizeof known / sizeof *known; k++)
                if (strcmp(known[k], r->enforced[i]) == 0)
                    sb->enforced[sb->nenforced++] = known[k];
            if (strcmp(r->enforced[i], "userns") == 0)
                sb->userns = true;
        }
    }
    for (size_t i = 0; i < p->nfds; i++)
        close(p->fds[i]);
    sbxinit__init_msg__free_unpacked(p->msg, NULL);
    return rc;
}

/* Sends Setup to the helper and waits for the init's Ready; reaps the helper. */
static int sb_setup(sbx_sandbox *sb, Sbxinit__Setup *su, pid_t helper)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    su->uid_base = sb->uid_base;
    su->expect_ppid = (uint32_t)getpid();
    m.body_case = SBXINIT__INIT_MSG__BODY_SETUP;
    m.setup = su;
    pending p;
    int rc = request(sb, &m, &p, 10000);
    reap_pid(helper); /* the helper exits once the init runs (or on failure) */
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "sandbox init did not start id=%s", sb->id);
        return rc;
    }
    return take_ready(sb, &p);
}

static void add_rlimit_enforced(sbx_sandbox *sb)
{
    if (sb->nenforced < MAX_ENFORCED)
        sb->enforced[sb->nenforced++] = "rlimits:nofile,core,fsize";
    if (sb->nenforced < MAX_ENFORCED)
        sb->enforced[sb->nenforced++] = "tmpfs-size:/tmp,/dev/shm";
}

static sbx_cg_limits cg_limits_of(const sbx_sandbox_limits *l)
{
    return (sbx_cg_limits){.memory_bytes = l->memory_bytes,
                           .pids = l->pids,
                           .cpu_millis = l->cpu_millis,
                           .cpu_weight = l->cpu_weight};
}

static sbx_cg_env cg_env(void)
{
    pthread_mutex_lock(&svc.lock);
    sbx_cg_env e = svc.cgenv;
    pthread_mutex_unlock(&svc.lock);
    return e;
}

/* ---------------------------------------------------------------- cold create */

static int create_cold(const sbx_sandbox_cfg *cfg, uint32_t uid_base, int slot, bool ns_ok,
                       sbx_sandbox **out)
{
    const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent : "sbx";
    sbx_cg_env cgenv = cg_env();
    int rc;
    sbx_sandbox *sb = sb_alloc(cfg->id, uid_base, slot);
    if (!sb) {
        slot_put(slot);
        return -ENOMEM;
    }
    sb->cb = cfg->on_exit;
    sb->cb_arg = cfg->on_exit_arg;
    if ((rc = reg_add(sb)) < 0) {
        free_sandbox(sb);
        slot_put(slot);
        return rc;
    }
    int cg2fd = -1;
    pid_t helper = -1;
    if (cfg->home_dir) {
        snprintf(sb->home, sizeof sb->home, "%s", cfg->home_dir);
        if ((rc = prepare_home(cfg->home_dir, uid_base, ns_ok)) < 0) {
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot prepare home dir=%s",
                          cfg->home_dir);
            goto out_destroy;
        }
    }
    sb->cg_lim = cg_limits_of(&cfg->limits);
    if ((rc = sbx_cg_create(&cgenv, parent, cfg->id, &sb->cg_lim, uid_base, &sb->cg, sb->enforced,
                            &sb->nenforced)) < 0)
        goto out_destroy;
    if ((helper = sb_spawn(sb, cfg->init_path, &cg2fd)) < 0) {
        rc = helper;
        goto out_destroy;
    }
    if ((rc = sb_attach(sb, helper)) < 0)
        goto out_destroy;
    Sbxinit__Setup su = SBXINIT__SETUP__INIT;
    su.hostname = sb->id;
    su.template_root = (char *)(cfg->template_root ? cfg->template_root : "");
    su.home_dir = (char *)(cfg->home_dir ? cfg->home_dir : "");
    su.tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : 64ull << 20;
    su.nofile = cfg->limits.nofile ? cfg->limits.nofile : 1024;
    su.fsize_bytes = cfg->limits.file_bytes;
    su.nproc = cfg->limits.nproc;
    su.weak = cfg->allow_weak_isolation;
    su.has_cgroup2 = cg2fd >= 0;
    if ((rc = sb_setup(sb, &su, helper)) < 0)
        goto out_destroy;
    if (cg2fd >= 0)
        close(cg2fd);
    add_rlimit_enforced(sb);
    SBX_LOG_INFO("sandbox", "created id=%s init_pid=%d uid_base=%u", sb->id, (int)sb->init_pid,
                 sb->uid_base);
    *out = sb;
    return 0;

out_destroy:
    if (cg2fd >= 0)
        close(cg2fd);
    sbx_sandbox_destroy(sb); /* kills the init if there is one, removes groups, frees the slot */
    return rc;
}

/* ---------------------------------------------------------------- pool */

typedef struct {
    char init_path[4096];
    char parent[65];
    char template_root[4096];
    uint64_t tmp_bytes;
    sbx_cg_limits lim;
    uint32_t uid_first;
} pool_params;

/* Builds parked inits in the given slots, in phases so that one RCU grace period covers all of
 * their cgroup moves. Returns how many were made (into made[]); failed slots are released. */
static size_t pool_build(const int *slots, size_t k, const pool_params *pp, sbx_sandbox **made)
{
    struct {
        sbx_sandbox *sb;
        pid_t helper;
        int cg2fd;
    } b[POOL_BATCH];
    sbx_cg_env cgenv = cg_env();
    size_t n = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t base = pp->uid_first + (uint32_t)slots[i] * UID_BLOCK;
        char id[32];
        snprintf(id, sizeof id, "@pool-%u", base); /* '@' is never in a sandbox id */
        sbx_sandbox *sb = sb_alloc(id, base, slots[i]);
        if (!sb) {
            slot_put(slots[i]);
            continue;
        }
        sb->parked = true;
        int rc = reg_add(sb);
        if (rc < 0) {
            free_sandbox(sb);
            slot_put(slots[i]);
            continue;
        }
        const char *scratch[8];
        size_t ns = 0;
        sb->cg_lim = pp->lim;
        rc = sbx_cg_create(&cgenv, pp->parent, id, &pp->lim, base, &sb->cg, scratch, &ns);
        int cg2fd = -1;
        pid_t helper = rc < 0 ? rc : sb_spawn(sb, pp->init_path, &cg2fd);
        if (helper < 0) {
            SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", helper, "pool: cannot start an init uid_base=%u",
                          base);
            if (cg2fd >= 0)
                close(cg2fd);
            sbx_sandbox_destroy(sb);
            continue;
        }
        b[n].sb = sb;
        b[n].helper = helper;
        b[n].cg2fd = cg2fd;
        n++;
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) { /* the first move pays the grace period, the rest not */
        if (sb_attach(b[i].sb, b[i].helper) < 0) {
            if (b[i].cg2fd >= 0)
                close(b[i].cg2fd);
            sbx_sandbox_destroy(b[i].sb);
            continue;
        }
        b[w++] = b[i];
    }
    size_t nmade = 0;
    for (size_t i = 0; i < w; i++) {
        Sbxinit__Setup su = SBXINIT__SETUP__INIT;
        su.park = true;
        su.has_cgroup2 = b[i].cg2fd >= 0;
        su.template_root = (char *)pp->template_root;
        su.tmp_bytes = pp->tmp_bytes;
        int rc = sb_setup(b[i].sb, &su, b[i].helper);
        if (b[i].cg2fd >= 0)
            close(b[i].cg2fd);
        if (rc < 0) {
            sbx_sandbox_destroy(b[i].sb);
            continue;
        }
        made[nmade++] = b[i].sb;
    }
    return nmade;
}

static void *pool_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    while (!pool.stop) {
        size_t have = pool.nready + pool.building;
        size_t want = pool.target > have ? pool.target - have : 0;
        if (want > POOL_BATCH)
            want = POOL_BATCH;
        int slots[POOL_BATCH];
        size_t k = 0;
        while (k < want) {
            int s = slot_take_locked();
            if (s < 0)
                break;
            slots[k++] = s;
        }
        if (k == 0) { /* full, or no free uid range until a sandbox is destroyed */
            pthread_cond_wait(&pool.cond, &pool.lock);
            continue;
        }
        pool_params pp;
        snprintf(pp.init_path, sizeof pp.init_path, "%s", pool.init_path);
        snprintf(pp.parent, sizeof pp.parent, "%s", pool.parent);
        snprintf(pp.template_root, sizeof pp.template_root, "%s", pool.template_root);
        pp.tmp_bytes = pool.tmp_bytes;
        pp.lim = pool.lim;
        pp.uid_first = pool.uid_first;
        unsigned gen = pool.gen;
        pool.building += k;
        pthread_mutex_unlock(&pool.lock);

        sbx_sandbox *made[POOL_BATCH], *drop[POOL_BATCH];
        size_t nmade = pool_build(slots, k, &pp, made), ndrop = 0;

        pthread_mutex_lock(&pool.lock);
        pool.building -= k;
        pool.built += nmade;
        pool.failures += k - nmade;
        for (size_t i = 0; i < nmade; i++) {
            if (gen == pool.gen && !pool.stop && pool.nready < POOL_MAX)
                pool.ready[pool.nready++] = made[i];
            else
                drop[ndrop++] = made[i];
        }
        pthread_cond_broadcast(&pool.cond);
        if (ndrop) {
            pthread_mutex_unlock(&pool.lock);
            for (size_t i = 0; i < ndrop; i++)
                sbx_sandbox_destroy(drop[i]);
            pthread_mutex_lock(&pool.lock);
        }
        if (nmade == 0 && !pool.stop) { /* do not spin on a persistent failure */
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl); /* pool.cond runs on the default clock */
            dl.tv_sec += 1;
            pthread_cond_timedwait(&pool.cond, &pool.lock, &dl);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* Takes the parked inits out of the pool (caller holds pool.lock) into out[]. */
static size_t pool_drain_locked(sbx_sandbox **out)
{
    size_t n = pool.nready;
    memcpy(out, pool.ready, n * sizeof *out);
    pool.nready = 0;
    pthread_cond_broadcast(&pool.cond);
    return n;
}

int sbx_sandbox_pool_config(const sbx_sandbox_pool_cfg *cfg)
{
    if (!cfg || !cfg->init_path || strlen(cfg->init_path) >= sizeof pool.init_path ||
        (cfg->template_root && strlen(cfg->template_root) >= sizeof pool.template_root) ||
        cfg->size > POOL_MAX || (cfg->cgroup_parent && !valid_id(cfg->cgroup_parent)) ||
        cfg->uid_first < UID_BLOCK || cfg->uid_count < UID_BLOCK ||
        (uint64_t)cfg->uid_first + cfg->uid_count > (uint64_t)UINT32_MAX - UID_BLOCK)
        return -EINVAL;
    int rc = service_get();
    if (rc < 0)
        return rc;
    sbx_sandbox_caps caps;
    if ((rc = sbx_sandbox_caps_detect(cfg->init_path, &caps)) < 0)
        return rc;
    if (!caps.namespaces) {
        SBX_LOG_ERROR("sandbox", "no sandbox pool: namespaces cannot be created");
        return -EPERM;
    }
    uint32_t nslots = cfg->uid_count / UID_BLOCK;
    if (nslots > 65536)
        nslots = 65536;
    const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent : "sbx";
    const char *tmpl = cfg->template_root ? cfg->template_root : "";
    uint64_t tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : 64ull << 20;
    sbx_cg_limits lim = cg_limits_of(&cfg->limits);
    sbx_sandbox *drop[POOL_MAX];
    size_t ndrop = 0;

    pthread_mutex_lock(&pool.lock);
    bool same_range = pool.configured && pool.uid_first == cfg->uid_first && pool.nslots == nslots;
    if (!same_range && pool.nused > 0) {
        pthread_mutex_unlock(&pool.lock);
        SBX_LOG_ERROR("sandbox",
                      "pool: the uid range cannot change while %u of its blocks are in use",
                      pool.nused);
        return -EBUSY;
    }
    bool same = same_range && strcmp(pool.init_path, cfg->init_path) == 0 &&
                strcmp(pool.parent, parent) == 0 && strcmp(pool.template_root, tmpl) == 0 &&
                pool.tmp_bytes == tmp_bytes && memcmp(&pool.lim, &lim, sizeof lim) == 0;
    if (!same) {
        pool.gen++;
        ndrop = pool_drain_locked(drop);
    }
    if (!same_range) {
        memset(pool.used, 0, sizeof pool.used);
        pool.uid_first = cfg->uid_first;
        pool.nslots = nslots;
        pool.cursor = 0;
    }
    snprintf(pool.init_path, sizeof pool.init_path, "%s", cfg->init_path);
    snprintf(pool.parent, sizeof pool.parent, "%s", parent);
    snprintf(pool.template_root, sizeof pool.template_root, "%s", tmpl);
    pool.tmp_bytes = tmp_bytes;
    pool.lim = lim;
    pool.configured = true;
    pool.target = cfg->size;
    if (!pool.running && cfg->size > 0) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 256 * 1024);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pool.stop = false;
        rc = -pthread_create(&pool.thread, &a, pool_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
        pool.running = rc == 0;
    }
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i < ndrop; i++)
        sbx_sandbox_destroy(drop[i]);
    if (rc == 0)
        SBX_LOG_INFO("sandbox", "pool size=%zu uid_first=%u slots=%u parent=%s", cfg->size,
                     cfg->uid_first, nslots, parent);
    return rc;
}

void sbx_sandbox_pool_shutdown(void)
{
    sbx_sandbox *drop[POOL_MAX];
    pthread_mutex_lock(&pool.lock);
    bool join = pool.running;
    pool.stop = true;
    pool.target = 0;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    if (join)
        pthread_join(pool.thread, NULL);
    pthread_mutex_lock(&pool.lock);
    pool.running = false;
    pool.stop = false;
    pool.gen++;
    size_t n = pool_drain_locked(drop);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i < n; i++)
        sbx_sandbox_destroy(drop[i]);
}

int sbx_sandbox_pool_stats_get(sbx_sandbox_pool_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&pool.lock);
    st->target = pool.target;
    st->ready = pool.nready;
    st->building = pool.building;
    st->slots_total = pool.nslots;
    st->slots_used = pool.nused;
    st->claimed = pool.claimed;
    st->cold_creates = pool.cold;
    st->built = pool.built;
    st->build_failures = pool.failures;
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

int sbx_sandbox_pool_wait(size_t ready, int timeout_ms)
{
    struct timespec dl;
    deadline_in(&dl, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.nready < ready) {
        if (timeout_ms >= 0) {
            /* pool.cond runs on the default (realtime) clock: convert */
            struct timespec now_m, now_r;
            clock_gettime(CLOCK_MONOTONIC, &now_m);
            if (now_m.tv_sec > dl.tv_sec ||
                (now_m.tv_sec == dl.tv_sec && now_m.tv_nsec >= dl.tv_nsec)) {
                rc = -ETIMEDOUT;
                break;
            }
            clock_gettime(CLOCK_REALTIME, &now_r);
            struct timespec wake = {now_r.tv_sec, now_r.tv_nsec + 10 * 1000000L};
            if (wake.tv_nsec >= 1000000000L) {
                wake.tv_sec++;
                wake.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&pool.cond, &pool.lock, &wake);
        } else {
            pthread_cond_wait(&pool.cond, &pool.lock);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}

size_t sbx_sandbox_pool_pids(pid_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&pool.lock);
    for (size_t i = 0; i < pool.nready && n < max; i++)
        out[n++] = pool.ready[i]->init_pid;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

size_t sbx_sandbox_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&svc.lock);
    for (size_t i = 0; i < svc.nreg; i++)
        if (!svc.reg[i]->parked)
            n++;
    pthread_mutex_unlock(&svc.lock);
    return n;
}

/* Takes a parked init for cfg (none: NULL, *err 0 = use the cold path) and gives it cfg's id,
 * atomically with the duplicate-id check. Prefers the init whose range owns the home already
 * (no re-owning walk of the home tree). */
static sbx_sandbox *pool_take(const sbx_sandbox_cfg *cfg, const char *parent, int *err)
{
    uint32_t prefer = 0;
    struct stat st;
    if (cfg->home_dir && lstat(cfg->home_dir, &st) == 0 && st.st_uid >= UID_BLOCK + USER_ID)
        prefer = (uint32_t)st.st_uid - USER_ID;
    *err = 0;
    sbx_sandbox *sb = NULL;
    pthread_mutex_lock(&svc.lock);
    for (size_t i = 0; i < svc.nreg; i++)
        if (strcmp(svc.reg[i]->id, cfg->id) == 0) {
            pthread_mutex_unlock(&svc.lock);
            *err = -EEXIST;
            return NULL;
        }
    pthread_mutex_lock(&pool.lock);
    if (pool.nready > 0 && strcmp(pool.init_path, cfg->init_path) == 0 &&
        strcmp(pool.parent, parent) == 0 &&
        strcmp(pool.template_root, cfg->template_root ? cfg->template_root : "") == 0) {
        size_t pick = pool.nready - 1;
        for (size_t i = 0; i < pool.nready; i++)
            if (pool.ready[i]->uid_base == prefer)
                pick = i;
        sb = pool.ready[pick];
        pool.ready[pick] = pool.ready[--pool.nready];
        pool.claimed++;
        pthread_cond_broadcast(&pool.cond); /* refill */
    }
    pthread_mutex_unlock(&pool.lock);
    if (sb) {
        snprintf(sb->id, sizeof sb->id, "%s", cfg->id);
        sb->parked = false;
    }
    pthread_mutex_unlock(&svc.lock);
    return sb;
}

/* A detached, private, nosuid+nodev clone of the home dir for a parked init to attach: it
 * lives in its own mount namespace (pivoted, the host tree gone), so it cannot bind a path. */
static int home_mount_fd(const char *home)
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

/* Hands a parked init its sandbox: home, limits, hostname, rlimits. *init_failed tells a
 * failure of the init (worth a cold retry) from one of the request (home, cgroups). */
static int pool_claim(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, bool *init_failed)
{
    int rc, home_fd = -1;
    *init_failed = false;
    sb->cb = cfg->on_exit;
    sb->cb_arg = cfg->on_exit_arg;
    if (cfg->home_dir) {
        snprintf(sb->home, sizeof sb->home, "%s", cfg->home_dir);
        if ((rc = prepare_home(cfg->home_dir, sb->uid_base, true)) < 0) {
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot prepare home dir=%s",
                          cfg->home_dir);
            return rc;
        }
        if ((home_fd = home_mount_fd(cfg->home_dir)) < 0) {
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", home_fd, "cannot clone the home mount dir=%s",
                          cfg->home_dir);
            return home_fd;
        }
    }
    sbx_cg_env cgenv = cg_env();
    sbx_cg_limits cl = cg_limits_of(&cfg->limits);
    rc = sbx_cg_update(&cgenv, &sb->cg, &sb->cg_lim, &cl, sb->enforced, &sb->nenforced);
    if (rc < 0) {
        if (home_fd >= 0)
            close(home_fd);
        return rc;
    }
    sb->cg_lim = cl;

    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Claim c = SBXINIT__CLAIM__INIT;
    c.hostname = sb->id;
    c.tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : 64ull << 20;
    c.nofile = cfg->limits.nofile ? cfg->limits.nofile : 1024;
    c.fsize_bytes = cfg->limits.file_bytes;
    c.nproc = cfg->limits.nproc;
    c.has_home_mount = home_fd >= 0;
    m.body_case = SBXINIT__INIT_MSG__BODY_CLAIM;
    m.claim = &c;
    pending p;
    *init_failed = true;
    rc = request_fds(sb, &m, home_fd >= 0 ? &home_fd : NULL, home_fd >= 0 ? 1 : 0, &p, 10000);
    if (home_fd >= 0)
        close(home_fd);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", rc, "pooled init did not answer id=%s", sb->id);
        return rc;
    }
    if ((rc = take_ready(sb, &p)) < 0)
        return rc;
    *init_failed = false;
    add_rlimit_enforced(sb);
    SBX_LOG_INFO("sandbox", "created id=%s init_pid=%d uid_base=%u pooled=yes", sb->id,
                 (int)sb->init_pid, sb->uid_base);
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

int sbx_sandbox_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out)
{
    *out = NULL;
    if (!cfg || !valid_id(cfg->id) || !cfg->init_path ||
        (cfg->uid_base != 0 &&
         (cfg->uid_base < UID_BLOCK || cfg->uid_base > UINT32_MAX - UID_BLOCK)) ||
        (cfg->cgroup_parent && !valid_id(cfg->cgroup_parent)))
        return -EINVAL;
    if (cfg->uid_base != 0 && in_pool_range(cfg->uid_base)) {
        SBX_LOG_ERROR("sandbox", "uid_base=%u overlaps the pool's uid range id=%s", cfg->uid_base,
                      cfg->id);
        return -EINVAL;
    }
    int rc = service_get();
    if (rc < 0)
        return rc;
    sbx_sandbox_caps caps;
    if ((rc = sbx_sandbox_caps_detect(cfg->init_path, &caps)) < 0)
        return rc;
    if (!caps.namespaces && !cfg->allow_weak_isolation) {
        SBX_LOG_ERROR("sandbox", "refusing to create a sandbox without namespaces id=%s", cfg->id);
        return -EPERM;
    }
    if (cfg->uid_base != 0)
        return create_cold(cfg, cfg->uid_base, -1, caps.namespaces, out);

    /* uid_base 0: the pool picks the range */
    const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent : "sbx";
    for (int tries = 0; tries < 3; tries++) {
        sbx_sandbox *sb = pool_take(cfg, parent, &rc);
        if (!sb) {
            if (rc < 0)
                return rc;
            break;
        }
        bool init_failed;
        if ((rc = pool_claim(sb, cfg, &init_failed)) == 0) {
            *out = sb;
            return 0;
        }
        sbx_sandbox_destroy(sb);
        if (!init_failed)
            return rc;
        SBX_LOG_WARN("sandbox", "pooled init failed, trying another id=%s", cfg->id);
    }
    pthread_mutex_lock(&pool.lock);
    int slot = pool.configured ? slot_take_locked() : -2;
    if (slot == -1 && pool.building > 0) {
        /* every block is taken but some parked inits are on their way: wait for one */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl); /* pool.cond runs on the default clock */
        dl.tv_sec += 10;
        while (pool.nready == 0 && pool.building > 0 &&
               pthread_cond_timedwait(&pool.cond, &pool.lock, &dl) == 0) {
        }
        bool got = pool.nready > 0;
        pthread_mutex_unlock(&pool.lock);
        if (got) {
            sbx_sandbox *sb = pool_take(cfg, parent, &rc);
            if (!sb)
                return rc < 0 ? rc : -ENOSPC;
            bool init_failed;
            if ((rc = pool_claim(sb, cfg, &init_failed)) == 0) {
                *out = sb;
                return 0;
            }
            sbx_sandbox_destroy(sb);
            return rc;
        }
        pthread_mutex_lock(&pool.lock);
        slot = slot_take_locked();
    }
    uint32_t base = pool.uid_first + (uint32_t)(slot < 0 ? 0 : slot) * UID_BLOCK;
    if (slot >= 0)
        pool.cold++;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    if (slot == -2)
        return -EINVAL; /* uid_base 0 needs a pool range */
    if (slot < 0) {
        SBX_LOG_ERROR("sandbox", "no free uid range in the pool id=%s", cfg->id);
        return -ENOSPC;
    }
    return create_cold(cfg, base, slot, caps.namespaces, out);
}

void sbx_sandbox_destroy(sbx_sandbox *sb)
{
    if (!sb)
        return;
    reg_remove(sb);
    pthread_mutex_lock(&sb->lock);
    sb->dead = true;
    for (pending *p = sb->pending; p; p = p->next)
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
    free_sandbox(sb);
    slot_put(slot); /* the range is free once nothing of the sandbox runs */
}

/* ---------------------------------------------------------------- commands */

static size_t strv_len(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_req *req, sbx_spawned *out)
{
    out->pid = -1;
    out->stdin_fd = out->stdout_fd = out->stderr_fd = -1;
    out->err_what = NULL;
    size_t argc = strv_len(req->argv), envc = strv_len(req->env);
    if (argc == 0 || !req->argv[0][0])
        return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < argc; i++)
        total += strlen(req->argv[i]) + 8;
    for (size_t i = 0; i < envc; i++)
        total += strlen(req->env[i]) + 8;
    if (total + (req->cwd ? strlen(req->cwd) : 0) + 256 > SBX_WIRE_MAX)
        return -E2BIG;

    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Spawn s = SBXINIT__SPAWN__INIT;
    s.argv = (char **)req->argv;
    s.n_argv = argc;
    s.env = (char **)req->env;
    s.n_env = envc;
    s.cwd = (char *)(req->cwd ? req->cwd : "");
    s.want_stdin = req->want_stdin;
    s.merge_stderr = req->merge_stderr;
    s.timeout_ms = req->timeout_ms;
    m.body_case = SBXINIT__INIT_MSG__BODY_SPAWN;
    m.spawn = &s;
    pending p;
    int rc = request(sb, &m, &p, REQUEST_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    const Sbxinit__Started *st =
        p.msg->body_case == SBXINIT__INIT_MSG__BODY_STARTED ? p.msg->started : NULL;
    size_t want = st ? 1u + (st->has_stdin ? 1u : 0u) + (st->has_stderr ? 1u : 0u) : 0;
    if (!st) {
        rc = -EPROTO;
    } else if (st->err) {
        rc = -st->err;
        out->err_what = strcmp(st->what, "exec") == 0  ? "exec"
                        : strcmp(st->what, "cwd") == 0 ? "cwd"
                                                       : "setup";
    } else if (p.nfds != want) {
        rc = -EPROTO;
    } else {
        size_t k = 0;
        out->pid = st->pid;
        out->stdin_fd = st->has_stdin ? p.fds[k++] : -1;
        out->stdout_fd = p.fds[k++];
        out->stderr_fd = st->has_stderr ? p.fds[k++] : -1;
        p.nfds = 0;
    }
    for (size_t i = 0; i < p.nfds; i++)
        close(p.fds[i]);
    sbxinit__init_msg__free_unpacked(p.msg, NULL);
    return rc;
}

void sbx_sandbox_set_exit_hook(sbx_sandbox *sb, sbx_exit_cb cb, void *arg)
{
    pthread_mutex_lock(&sb->lock);
    sb->hook = cb;
    sb->hook_arg = arg;
    pthread_mutex_unlock(&sb->lock);
    /* a batch of the service thread may still be calling the previous hook */
    pthread_mutex_lock(&svc.dispatch);
    pthread_mutex_unlock(&svc.dispatch);
}

int sbx_sandbox_exit_fd(const sbx_sandbox *sb)
{
    return sb->exit_efd;
}

int sbx_sandbox_next_exit(sbx_sandbox *sb, sbx_exit *ev)
{
    int rc = -EAGAIN;
    pthread_mutex_lock(&sb->lock);
    if (sb->qlen > 0) {
        *ev = sb->q[sb->qhead];
        sb->qhead = (sb->qhead + 1) % sb->qcap;
        sb->qlen--;
        rc = 0;
    }
    if (sb->qlen == 0) {
        uint64_t v;
        if (read(sb->exit_efd, &v, sizeof v) < 0 && errno != EAGAIN)
            rc = rc == 0 ? 0 : -errno;
    }
    pthread_mutex_unlock(&sb->lock);
    return rc;
}

static int send_signal(sbx_sandbox *sb, int pid, int sig, bool group, bool tree)
{
    if (sig < 0 || sig >= 65)
        return -EINVAL;
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Signal s = SBXINIT__SIGNAL__INIT;
    s.pid = pid;
    s.sig = sig;
    s.whole_group = group;
    s.tree = tree;
    m.body_case = SBXINIT__INIT_MSG__BODY_SIGNAL;
    m.signal = &s;
    return request_result(sb, &m);
}

int sbx_sandbox_signal(sbx_sandbox *sb, int pid, int sig)
{
    return send_signal(sb, pid, sig, false, false);
}

int sbx_sandbox_signal_group(sbx_sandbox *sb, int pid, int sig)
{
    return send_signal(sb, pid, sig, true, false);
}

int sbx_sandbox_kill_tree(sbx_sandbox *sb, int pid)
{
    return send_signal(sb, pid, SIGKILL, false, true);
}

int sbx_sandbox_kill_all(sbx_sandbox *sb)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__KillAll k = SBXINIT__KILL_ALL__INIT;
    m.body_case = SBXINIT__INIT_MSG__BODY_KILL_ALL;
    m.kill_all = &k;
    return request_result(sb, &m);
}

int sbx_sandbox_ping(sbx_sandbox *sb)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Ping pg = SBXINIT__PING__INIT;
    m.body_case = SBXINIT__INIT_MSG__BODY_PING;
    m.ping = &pg;
    return request_result(sb, &m);
}

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

static uint64_t du_fd(int dfd, int depth)
{
    uint64_t total = 0;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        total += (uint64_t)st.st_blocks * 512u;
        if (S_ISDIR(st.st_mode) && depth < 256) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                total += du_fd(sub, depth + 1);
        }
    }
    closedir(d);
    return total;
}

int sbx_sandbox_home_usage(const sbx_sandbox *sb, uint64_t *bytes)
{
    *bytes = 0;
    if (!sb->home[0])
        return -ENOENT;
    int fd = open(sb->home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *bytes = du_fd(fd, 0);
    return 0;
}
