/* proc.c: the per-sandbox process table (see proc.h): the list of processes, their lifetimes,
 * and the relay thread. The relay thread waits (epoll) on every command's output pipes, the
 * stdin pipes with queued input, the sandbox's exit eventfd and a control eventfd, and hands
 * the bytes to proc_io.c. Exits are recorded by the sandbox's service thread through the exit
 * hook (sbx_sandbox_set_exit_hook: one thread wake-up less per command); ones queued before the
 * table existed come through the exit fd. Housekeeping on the relay thread ends the drain grace
 * of exited commands and evicts the oldest finished processes.
 *
 * Threads: the relay thread (signals blocked, so a write to a closed stdin gives EPIPE), the
 * sandbox's service thread (exits), and callers from any thread. Locks: see proc_int.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "proc_int.h"

#define READ_CHUNK 65536

/* ---------------------------------------------------------------- references */

void sbx_proc_ref(sbx_proc *p)
{
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
}

void sbx_proc_unref(sbx_proc *p)
{
    if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (p->out.fd >= 0)
        close(p->out.fd);
    if (p->err.fd >= 0)
        close(p->err.fd);
    if (p->in.fd >= 0)
        close(p->in.fd);
    free(p->in.q);
    free(p->out.buf);
    free(p->err.buf);
    free(p->out.head);
    free(p->err.head);
    free(p->tag);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->stdin_lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* ---------------------------------------------------------------- relay */

void sbx__proc_check_finished(sbx_proc *p)
{
    if (!p->running && !p->finished && p->out.fd < 0 && p->err.fd < 0) {
        p->finished = true;
        if (p->pty) /* the terminal's last master fd: the devpts slot is free again */
            sbx__proc_input_close(p);
        pthread_cond_broadcast(&p->cond);
    }
}

/* caller holds t->lock; returns the running process with this pid */
static sbx_proc *find_running(sbx_proctab *t, int pid)
{
    for (size_t i = t->nprocs; i-- > 0;)
        if (t->procs[i]->pid == pid && t->procs[i]->running)
            return t->procs[i];
    return NULL;
}

/* caller holds t->lock and not p->lock */
static void apply_exit(sbx_proctab *t, sbx_proc *p, const sbx_exit *ev)
{
    pthread_mutex_lock(&p->lock);
    p->running = false;
    p->exit = *ev;
    if (p->out.fd >= 0 || p->err.fd >= 0)
        p->grace_deadline_ms = sbx_mono_ms() + t->cfg.drain_grace_ms;
    sbx__proc_check_finished(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void wake_relay(sbx_proctab *t);

/* One exit: to its process, or kept until its start returns. */
static void take_exit(sbx_proctab *t, const sbx_exit *ev)
{
    bool grace = false;
    pthread_mutex_lock(&t->lock);
    sbx_proc *p = find_running(t, ev->pid);
    if (p) {
        apply_exit(t, p, ev);
        grace = p->grace_deadline_ms != 0;
    } else {
        if (t->norphans == MAX_ORPHAN_EXITS) {
            memmove(t->orphans, t->orphans + 1, sizeof t->orphans - sizeof *t->orphans);
            t->norphans--;
        }
        t->orphans[t->norphans++] = *ev;
    }
    pthread_mutex_unlock(&t->lock);
    if (grace) /* pipes still open: the relay thread times their drain */
        wake_relay(t);
}

/* The sandbox's exit hook: exits reach waiters straight from the sandbox service thread. */
static void exit_hook(void *arg, const sbx_exit *ev)
{
    take_exit(arg, ev);
}

static void relay_exits(sbx_proctab *t)
{
    sbx_exit ev;
    while (sbx_sandbox_next_exit(t->sb, &ev) == 0)
        take_exit(t, &ev);
}

/* The drain grace of an exited process whose pipes are still open: closes them when it ended
 * (unless a paused stream still holds output its reader wants). Returns the next deadline, or
 * 0 (caller holds p->lock). */
static uint64_t drain_grace(sbx_proctab *t, sbx_proc *p, uint64_t now)
{
    if (p->running || p->finished || !p->grace_deadline_ms)
        return 0;
    if (p->grace_deadline_ms > now)
        return p->grace_deadline_ms;
    if (p->out.paused || p->err.paused)
        return p->grace_deadline_ms = now + 50;
    sbx__proc_stream_close(t, &p->out);
    sbx__proc_stream_close(t, &p->err);
    sbx__proc_check_finished(p);
    return 0;
}

/* Drops the table's references to all but the newest max_finished finished processes; an
 * evicted process can no longer be signalled (caller holds t->lock). */
static void evict_finished(sbx_proctab *t, size_t nfinished)
{
    size_t w = 0;
    for (size_t i = 0; i < t->nprocs; i++) {
        sbx_proc *p = t->procs[i];
        pthread_mutex_lock(&p->lock);
        bool evict = p->finished && nfinished > t->cfg.max_finished;
        if (evict) {
            sbx__proc_input_close(p);
            p->tab = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (evict) {
            nfinished--;
            sbx_proc_unref(p);
            continue;
        }
        t->procs[w++] = p;
    }
    t->nprocs = w;
}

/* Closes pipes whose grace period ended; evicts the oldest finished processes. Returns the
 * epoll timeout until the next grace deadline. */
static int relay_housekeeping(sbx_proctab *t)
{
    uint64_t now = sbx_mono_ms(), next = 0;
    size_t nfinished = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nprocs; i++) {
        sbx_proc *p = t->procs[i];
        pthread_mutex_lock(&p->lock);
        uint64_t dl = drain_grace(t, p, now);
        if (dl && (!next || dl < next))
            next = dl;
        nfinished += p->finished;
        pthread_mutex_unlock(&p->lock);
    }
    evict_finished(t, nfinished);
    pthread_mutex_unlock(&t->lock);
    return next ? (int)(next - now) : -1;
}

static void relay_event(sbx_proctab *t, const struct epoll_event *ev, uint8_t *chunk)
{
    if (ev->data.ptr == &t->ctl) {
        uint64_t v;
        if (read(t->ctl, &v, sizeof v) < 0 && errno != EAGAIN)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "proc", errno, "control eventfd");
    } else if (ev->data.ptr == t) {
        relay_exits(t);
    } else {
        pipe_tag *tag = ev->data.ptr;
        if (tag->which == SBX_STREAM_STDIN)
            sbx__proc_write_pipe(tag->owner, ev->events);
        else
            sbx__proc_read_pipe(t, (stream *)tag, chunk, READ_CHUNK);
    }
}

static void *relay_main(void *arg)
{
    sbx_proctab *t = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* SIGPIPE: a closed stdin gives EPIPE */
    uint8_t *chunk = malloc(READ_CHUNK);
    struct epoll_event ev[64];
    int timeout = -1;
    while (chunk) {
        int n = epoll_wait(t->epfd, ev, 64, timeout);
        for (int i = 0; i < n; i++)
            relay_event(t, &ev[i], chunk);
        pthread_mutex_lock(&t->lock);
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            break;
        timeout = relay_housekeeping(t);
    }
    free(chunk);
    return NULL;
}

/* ---------------------------------------------------------------- table */

static int table_open_fds(sbx_proctab *t)
{
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->ctl = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->epfd < 0 || t->ctl < 0)
        return -errno;
    struct epoll_event e1 = {.events = EPOLLIN, .data.ptr = &t->ctl};
    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = t};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->ctl, &e1) < 0 ||
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, sbx_sandbox_exit_fd(t->sb), &e2) < 0)
        return -errno;
    return 0;
}

int sbx_proctab_create(sbx_sandbox *sb, const sbx_proctab_cfg *cfg, sbx_proctab **out)
{
    sbx_proctab *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->sb = sb;
    t->epfd = t->ctl = -1;
    if (cfg)
        t->cfg = *cfg;
    if (!t->cfg.ring_bytes)
        t->cfg.ring_bytes = 1u << 20;
    if (!t->cfg.max_finished)
        t->cfg.max_finished = 64;
    if (!t->cfg.drain_grace_ms)
        t->cfg.drain_grace_ms = 200;
    pthread_mutex_init(&t->lock, NULL);
    int rc = table_open_fds(t);
    if (rc < 0)
        goto out_close;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    rc = -pthread_create(&t->relay, &a, relay_main, t);
    pthread_attr_destroy(&a);
    if (rc < 0)
        goto out_close;
    /* exits queued before this point still come through the exit fd */
    sbx_sandbox_set_exit_hook(sb, exit_hook, t);
    *out = t;
    return 0;

out_close:
    if (t->epfd >= 0)
        close(t->epfd);
    if (t->ctl >= 0)
        close(t->ctl);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return rc;
}

static void wake_relay(sbx_proctab *t)
{
    uint64_t one = 1;
    if (write(t->ctl, &one, sizeof one) < 0)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "proc", errno, "control eventfd");
}

/* The table is going: p's pipes close, it counts as finished (lost if it still ran). */
static void orphan_proc(sbx_proctab *t, sbx_proc *p)
{
    pthread_mutex_lock(&p->lock);
    sbx__proc_stream_close(t, &p->out);
    sbx__proc_stream_close(t, &p->err);
    sbx__proc_input_close(p);
    if (p->running) {
        p->running = false;
        p->exit = (sbx_exit){.pid = p->pid, .signal = SIGKILL, .lost = true};
    }
    p->finished = true;
    p->tab = NULL;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void sbx_proctab_destroy(sbx_proctab *t)
{
    if (!t)
        return;
    sbx_sandbox_set_exit_hook(t->sb, NULL, NULL);
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_mutex_unlock(&t->lock);
    wake_relay(t);
    pthread_join(t->relay, NULL);
    for (size_t i = 0; i < t->nprocs; i++) {
        orphan_proc(t, t->procs[i]);
        sbx_proc_unref(t->procs[i]);
    }
    free(t->procs);
    close(t->epfd);
    close(t->ctl);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* A new process object: one reference, no fds, nothing running (tab may be NULL). */
static sbx_proc *proc_alloc(sbx_proctab *t, const char *tag)
{
    sbx_proc *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->tab = t;
    p->out = (stream){.tag = {p, SBX_STREAM_STDOUT}, .fd = -1};
    p->err = (stream){.tag = {p, SBX_STREAM_STDERR}, .fd = -1};
    p->in = (input){.tag = {p, SBX_STREAM_STDIN}, .fd = -1, .last = -1};
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stdin_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->tag = strdup(tag ? tag : "");
    if (!p->tag) {
        sbx_proc_unref(p);
        return NULL;
    }
    return p;
}

int sbx_proc_new_done(const sbx_proc_done *d, sbx_proc **out)
{
    *out = NULL;
    sbx_proc *p = proc_alloc(NULL, NULL);
    if (!p)
        return -ENOMEM;
    p->pid = d->exit.pid;
    p->exit = d->exit;
    p->finished = true;
    if (sbx__proc_stream_fill(&p->out, d->out, d->out_len) < 0 ||
        sbx__proc_stream_fill(&p->err, d->err, d->err_len) < 0) {
        sbx_proc_unref(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

static int watch_stream(sbx_proctab *t, stream *s)
{
    if (s->fd < 0)
        return 0;
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->tag};
    return epoll_ctl(t->epfd, EPOLL_CTL_ADD, s->fd, &e) < 0 ? -errno : 0;
}

/* Adds a spawned process (its fds set) to the table (caller holds t->lock): its pipes watched,
 * its stdin queue started, an exit that came first applied. Returns 0 or -errno (the pipes cannot
 * be watched). */
static int table_add(sbx_proctab *t, sbx_proc *p, const sbx_proc_req *req)
{
    t->procs[t->nprocs++] = p;
    sbx_proc_ref(p); /* the caller's */
    pthread_mutex_lock(&p->lock);
    int rc = watch_stream(t, &p->out);
    if (rc == 0)
        rc = watch_stream(t, &p->err);
    if (sbx__proc_input_start(p, p->in.fd, req) < 0 && rc == 0)
        rc = -ENOMEM;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < t->norphans; i++) {
        if (t->orphans[i].pid != p->pid)
            continue;
        sbx_exit ev = t->orphans[i];
        memmove(t->orphans + i, t->orphans + i + 1, (t->norphans - i - 1) * sizeof ev);
        t->norphans--;
        apply_exit(t, p, &ev);
        break;
    }
    return rc;
}

static int table_reserve(sbx_proctab *t)
{
    if (t->nprocs < t->capprocs)
        return 0;
    size_t nc = t->capprocs ? t->capprocs * 2 : 16;
    sbx_proc **np = realloc(t->procs, nc * sizeof *np);
    if (!np)
        return -ENOMEM;
    t->procs = np;
    t->capprocs = nc;
    return 0;
}

int sbx_proc_start(sbx_proctab *t, const sbx_proc_req *req, sbx_proc **out, const char **err_what)
{
    *out = NULL;
    sbx_proc *p = proc_alloc(t, req->tag);
    if (!p)
        return -ENOMEM;
    p->max_output = req->max_output_bytes;
    p->max_stream = req->max_stream_bytes;
    p->backpressure = req->backpressure;
    p->kill_on_cap = req->kill_on_output_cap;
    p->out.head_max = p->err.head_max = req->keep_head_bytes;
    p->running = true;
    sbx_spawned sp;
    int rc = sbx_sandbox_spawn(t->sb, &req->spawn, &sp);
    if (err_what)
        *err_what = sp.err_what;
    if (rc < 0) {
        sbx_proc_unref(p);
        return rc;
    }
    p->pid = sp.pid;
    p->pty = sp.pty;
    p->cols = req->spawn.pty_cols;
    p->rows = req->spawn.pty_rows;
    p->out.fd = sp.stdout_fd;
    p->err.fd = sp.stderr_fd;
    p->in.fd = sp.stdin_fd;
    pthread_mutex_lock(&t->lock);
    if (table_reserve(t) < 0) {
        pthread_mutex_unlock(&t->lock);
        sbx_sandbox_kill_tree(t->sb, sp.pid);
        sbx_proc_unref(p);
        return -ENOMEM;
    }
    rc = table_add(t, p, req);
    pthread_mutex_unlock(&t->lock);
    if (rc < 0) /* the output or input cannot be relayed */
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "proc", rc, "cannot watch the pipes pid=%d", p->pid);
    wake_relay(t); /* recompute grace timers */
    *out = p;
    return 0;
}

/* ---------------------------------------------------------------- one process */

void sbx_proc_status_get(sbx_proc *p, sbx_proc_status *st)
{
    pthread_mutex_lock(&p->lock);
    st->pid = p->pid;
    st->tag = p->tag;
    st->running = p->running;
    st->finished = p->finished;
    st->exit = p->exit;
    st->output_truncated = p->truncated;
    st->dropped_bytes = p->dropped;
    st->out_end = p->out.end;
    st->err_end = p->err.end;
    st->out_total = p->out.total;
    st->err_total = p->err.total;
    st->out_oldest = sbx__proc_stream_oldest(&p->out);
    st->err_oldest = sbx__proc_stream_oldest(&p->err);
    st->stdin_open = p->in.fd >= 0 && !p->in.close_after;
    st->pty = p->pty;
    st->cols = p->cols;
    st->rows = p->rows;
    pthread_mutex_unlock(&p->lock);
}

int sbx_proc_wait(sbx_proc *p, uint64_t out_off, uint64_t err_off, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0)
        sbx_deadline_in(&dl, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->finished && p->out.end <= out_off && p->err.end <= err_off) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&p->cond, &p->lock);
        } else if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) == ETIMEDOUT) {
            if (!p->finished && p->out.end <= out_off && p->err.end <= err_off)
                rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int sbx_proc_wait_finished(sbx_proc *p, int timeout_ms)
{
    return sbx_proc_wait(p, UINT64_MAX, UINT64_MAX, timeout_ms);
}

int sbx_proc_kill_tree(sbx_proc *p)
{
    sbx_proc_release_backpressure(p); /* a killed tree must be drained to its end */
    pthread_mutex_lock(&p->lock);
    sbx_proctab *t = p->tab;
    pthread_mutex_unlock(&p->lock);
    if (!t)
        return -ESRCH;
    return sbx_sandbox_kill_tree(t->sb, p->pid);
}
