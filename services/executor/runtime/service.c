/* service.c: the link between the executor and every sandbox init.
 *
 * Job: two immortal threads, started on first use. The spawner thread runs posix_spawn of
 * every init helper, so every init's PR_SET_PDEATHSIG parent is a thread that lives as long as
 * the process, and a spawn never delays the answers the service thread relays. The service
 * thread reads every init socket (SOCK_SEQPACKET, epoll): it hands an answer (and the pipe fds
 * received with it) to the caller waiting for it, and queues command exits (eventfd + an
 * optional callback) or gives them to the exit hook. Callers send requests from any thread and
 * sleep on the sandbox's condition variable until the answer, a timeout or the init's death.
 * The registry (every sandbox and parked init, by id and by epoll key) lives here too.
 *
 * Threads: requests from any thread; the service and spawner threads as above. Ownership: the
 * registry holds pointers only (sandbox.c frees a sandbox after sbx__svc_remove). An answer
 * no caller waits for any more (timed out) is freed here.
 * Locks: svc.dispatch (held for one epoll batch) -> svc.lock -> pool.lock (pool.c);
 * svc.dispatch -> sb->lock. */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define EPOLL_BATCH 64

typedef struct spawn_job {
    const char *path;
    int sock, cg2fd;
    pid_t result; /* the helper's pid or -errno */
    bool done;
    struct spawn_job *next;
} spawn_job;

static struct {
    pthread_once_t once;
    int start_err;
    int epfd, wake;
    pthread_mutex_t lock;      /* registry, jobs */
    pthread_cond_t job_cond;   /* a job is done */
    pthread_cond_t spawn_cond; /* a job is queued */
    pthread_mutex_t dispatch;  /* held by the service thread while it handles an epoll batch */
    spawn_job *jobs;
    sbx_sandbox **reg;
    size_t nreg, capreg;
    uint64_t next_key;
    uint8_t *rx;
} svc = {.once = PTHREAD_ONCE_INIT,
         .lock = PTHREAD_MUTEX_INITIALIZER,
         .job_cond = PTHREAD_COND_INITIALIZER,
         .spawn_cond = PTHREAD_COND_INITIALIZER,
         .dispatch = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- exits */

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

/* The init is gone: pending requests fail with -EPIPE, live commands exit as lost. */
static void mark_dead(sbx_sandbox *sb)
{
    sbx_exit lost[64];
    size_t nlost = 0;
    pthread_mutex_lock(&sb->lock);
    if (!sb->dead)
        SBX_LOG_WARN("sandbox", "sandbox init is gone id=%s init_pid=%d", sb->id,
                     (int)sb->init_pid);
    sb->dead = true;
    for (sbx__pending *p = sb->pending; p; p = p->next)
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

static void on_exited(sbx_sandbox *sb, const Sbxinit__Exited *e)
{
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
}

/* ---------------------------------------------------------------- answers */

/* A started command is live until its exit comes (caller holds sb->lock). */
static void note_started(sbx_sandbox *sb, int pid)
{
    if (sb->nlive == sb->caplive) {
        size_t nc = sb->caplive ? sb->caplive * 2 : 16;
        int *nl = realloc(sb->live, nc * sizeof *nl);
        if (nl) {
            sb->live = nl;
            sb->caplive = nc;
        }
    }
    if (sb->nlive < sb->caplive)
        sb->live[sb->nlive++] = pid;
}

/* Hands m (and fds) to the caller waiting for it: true, or false when none waits any more. */
static bool on_answer(sbx_sandbox *sb, Sbxinit__InitMsg *m, const int *fds, size_t nfds)
{
    pthread_mutex_lock(&sb->lock);
    for (sbx__pending *p = sb->pending; p; p = p->next) {
        if (p->id != m->id || p->done)
            continue;
        p->done = true;
        p->msg = m;
        memcpy(p->fds, fds, nfds * sizeof *fds);
        p->nfds = nfds;
        if (m->body_case == SBXINIT__INIT_MSG__BODY_STARTED && m->started->err == 0)
            note_started(sb, m->started->pid);
        pthread_cond_broadcast(&sb->cond);
        pthread_mutex_unlock(&sb->lock);
        return true;
    }
    pthread_mutex_unlock(&sb->lock);
    return false;
}

static void handle_message(sbx_sandbox *sb, Sbxinit__InitMsg *m, int *fds, size_t nfds)
{
    if (m->body_case == SBXINIT__INIT_MSG__BODY_EXITED && m->id == 0)
        on_exited(sb, m->exited);
    else if (on_answer(sb, m, fds, nfds))
        return;
    /* an exit, or an answer nobody waits for any more (a timed-out caller) */
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    sbxinit__init_msg__free_unpacked(m, NULL);
}

/* ---------------------------------------------------------------- threads */

static sbx_sandbox *reg_find_key(uint64_t key)
{
    for (size_t i = 0; i < svc.nreg; i++)
        if (svc.reg[i]->key == key)
            return svc.reg[i];
    return NULL;
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

/* posix_spawn of one init helper: its pid or -errno. */
static pid_t spawn_helper(const spawn_job *j)
{
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
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    char *argv[] = {(char *)j->path, NULL};
    char *envp[] = {NULL};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, j->path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc ? -rc : pid;
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
        pid_t result = spawn_helper(j);
        pthread_mutex_lock(&svc.lock);
        j->result = result;
        j->done = true;
        pthread_cond_broadcast(&svc.job_cond);
        pthread_mutex_unlock(&svc.lock);
    }
    return NULL;
}

static void *service_main(void *arg)
{
    (void)arg;
    struct epoll_event ev[EPOLL_BATCH];
    for (;;) {
        int n = epoll_wait(svc.epfd, ev, EPOLL_BATCH, -1);
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

int sbx__svc_start(void)
{
    pthread_once(&svc.once, service_start);
    return svc.start_err;
}

pid_t sbx__svc_spawn(const char *path, int sock, int cg2fd)
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
    return j.result;
}

/* ---------------------------------------------------------------- registry */

bool sbx__svc_has_id_locked(const char *id)
{
    for (size_t i = 0; i < svc.nreg; i++)
        if (strcmp(svc.reg[i]->id, id) == 0)
            return true;
    return false;
}

void sbx__svc_lock(void)
{
    pthread_mutex_lock(&svc.lock);
}

void sbx__svc_unlock(void)
{
    pthread_mutex_unlock(&svc.lock);
}

int sbx__svc_add(sbx_sandbox *sb)
{
    pthread_mutex_lock(&svc.lock);
    if (sbx__svc_has_id_locked(sb->id)) {
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

void sbx__svc_remove(sbx_sandbox *sb)
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
    sbx__svc_barrier();
}

int sbx__svc_watch(sbx_sandbox *sb)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = sb->key};
    return epoll_ctl(svc.epfd, EPOLL_CTL_ADD, sb->sock, &ev) < 0 ? -errno : 0;
}

void sbx__svc_barrier(void)
{
    pthread_mutex_lock(&svc.dispatch);
    pthread_mutex_unlock(&svc.dispatch);
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

/* ---------------------------------------------------------------- requests */

static void pending_unlink(sbx_sandbox *sb, sbx__pending *p)
{
    for (sbx__pending **pp = &sb->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

void sbx__pending_release(sbx__pending *p)
{
    for (size_t i = 0; i < p->nfds; i++)
        close(p->fds[i]);
    p->nfds = 0;
    sbxinit__init_msg__free_unpacked(p->msg, NULL);
    p->msg = NULL;
}

int sbx__request_fds(sbx_sandbox *sb, Sbxinit__InitMsg *msg, const int *fds, size_t nfds,
                     sbx__pending *p, int timeout_ms)
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
    sbx_deadline_in(&dl, timeout_ms);
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
    if (rc < 0 && p->msg)
        sbx__pending_release(p);
    return rc;
}

int sbx__request(sbx_sandbox *sb, Sbxinit__InitMsg *msg, sbx__pending *p, int timeout_ms)
{
    return sbx__request_fds(sb, msg, NULL, 0, p, timeout_ms);
}

int sbx__request_result(sbx_sandbox *sb, Sbxinit__InitMsg *msg)
{
    sbx__pending p;
    int rc = sbx__request(sb, msg, &p, REQUEST_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    rc = p.msg->body_case == SBXINIT__INIT_MSG__BODY_RESULT ? -p.msg->result->err : -EPROTO;
    sbx__pending_release(&p);
    return rc;
}
