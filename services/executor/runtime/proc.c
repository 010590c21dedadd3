/* proc.c: the per-sandbox process table (see proc.h). A relay thread per table waits (epoll) on
 * every command's stdout/stderr pipe, the sandbox's exit eventfd and a control eventfd; it
 * appends output to bounded per-stream rings (absolute offsets, oldest dropped first), applies
 * the per-command output cap (keeps reading and discarding, so a command never blocks on a full
 * pipe), and wakes waiters through each process's condition variable. Exits are recorded by
 * the sandbox's service thread through the exit hook (sbx_sandbox_set_exit_hook: one thread
 * wake-up less per command); ones queued before the table existed come through the exit fd. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define READ_CHUNK 65536
#define MAX_ORPHAN_EXITS 64

typedef struct {
    struct sbx_proc *owner;
    int which;    /* SBX_STREAM_* */
    int fd;       /* -1 once closed */
    uint8_t *buf; /* ring; grows up to the table's ring_bytes, then wraps */
    size_t cap;
    uint64_t end;   /* absolute offset after the last byte kept */
    uint64_t total; /* bytes read from the pipe, kept or dropped */
    uint64_t consumed; /* backpressure: offset up to which sbx_proc_read has read */
    bool paused;       /* backpressure: the fd is out of epoll until the reader catches up */
} stream;

struct sbx_proc {
    int refs; /* atomic */
    sbx_proctab *tab;
    int pid;
    char *tag;
    uint64_t max_output;
    uint64_t max_stream; /* per-stream cap (0 = none) */
    bool backpressure;
    bool kill_on_cap;

    pthread_mutex_t lock; /* fields below */
    pthread_cond_t cond;
    stream out, err;
    bool running, finished, truncated, cap_killed;
    uint64_t dropped;
    sbx_exit exit;
    uint64_t grace_deadline_ms; /* set at exit while pipes are still open */

    pthread_mutex_t stdin_lock;
    int stdin_fd;
};

struct sbx_proctab {
    sbx_sandbox *sb;
    sbx_proctab_cfg cfg;
    int epfd, ctl;
    pthread_t relay;
    bool stop; /* under lock */

    pthread_mutex_t lock; /* list, orphans */
    sbx_proc **procs;     /* oldest first */
    size_t nprocs, capprocs;
    sbx_exit orphans[MAX_ORPHAN_EXITS]; /* exits that arrived before their start returned */
    size_t norphans;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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
    if (p->stdin_fd >= 0)
        close(p->stdin_fd);
    free(p->out.buf);
    free(p->err.buf);
    free(p->tag);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->stdin_lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* ---------------------------------------------------------------- rings */

/* Appends n bytes to a stream's ring (caller holds p->lock). */
static void ring_append(stream *s, size_t max, const uint8_t *data, size_t n)
{
    if (n >= max) { /* only the newest max bytes can be held */
        data += n - max;
        s->end += n - max;
        n = max;
    }
    if (s->cap < max && s->end + n > s->cap) {
        /* still linear (nothing wrapped before the ring reached max): grow */
        size_t ncap = s->cap ? s->cap * 2 : 4096;
        while (ncap < s->end + n && ncap < max)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        uint8_t *nb = realloc(s->buf, ncap);
        if (nb) {
            s->buf = nb;
            s->cap = ncap;
        }
    }
    if (s->cap == 0)
        return;
    for (size_t done = 0; done < n;) {
        size_t at = (size_t)((s->end + done) % s->cap);
        size_t k = s->cap - at < n - done ? s->cap - at : n - done;
        memcpy(s->buf + at, data + done, k);
        done += k;
    }
    s->end += n;
}

static uint64_t ring_oldest(const stream *s)
{
    return s->end > s->cap ? s->end - s->cap : 0;
}

/* ---------------------------------------------------------------- relay */

static void stream_close(sbx_proctab *t, stream *s)
{
    if (s->fd < 0)
        return;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
}

/* caller holds p->lock */
static void check_finished(sbx_proc *p)
{
    if (!p->running && !p->finished && p->out.fd < 0 && p->err.fd < 0) {
        p->finished = true;
        pthread_cond_broadcast(&p->cond);
    }
}

static void relay_read(sbx_proctab *t, stream *s, uint8_t *chunk)
{
    sbx_proc *p = s->owner;
    bool kill_now = false;
    for (int i = 0; i < 16; i++) {
        size_t want = READ_CHUNK;
        if (p->backpressure) {
            pthread_mutex_lock(&p->lock);
            uint64_t unread = s->end - s->consumed;
            size_t ring = t->cfg.ring_bytes;
            /* past the per-stream cap bytes are dropped anyway: keep draining them */
            bool capped = p->max_stream && s->end >= p->max_stream;
            if (!capped && unread >= ring) {
                struct epoll_event ev = {.events = 0, .data.ptr = s};
                epoll_ctl(t->epfd, EPOLL_CTL_MOD, s->fd, &ev);
                s->paused = true;
                pthread_mutex_unlock(&p->lock);
                break;
            }
            if (!capped && ring - unread < want)
                want = ring - unread;
            pthread_mutex_unlock(&p->lock);
        }
        ssize_t n = read(s->fd, chunk, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        pthread_mutex_lock(&p->lock);
        if (n <= 0) {
            stream_close(t, s);
            check_finished(p);
            pthread_cond_broadcast(&p->cond);
            pthread_mutex_unlock(&p->lock);
            break;
        }
        size_t keep = (size_t)n;
        s->total += (uint64_t)n;
        if (p->max_stream) {
            uint64_t room = s->end < p->max_stream ? p->max_stream - s->end : 0;
            if (keep > room) {
                p->truncated = true;
                p->dropped += keep - room;
                keep = (size_t)room;
            }
        }
        if (p->max_output) {
            uint64_t used = p->out.end + p->err.end;
            uint64_t room = used < p->max_output ? p->max_output - used : 0;
            if (keep > room) {
                keep = (size_t)room;
                p->truncated = true;
                p->dropped += (uint64_t)n - keep;
                if (p->kill_on_cap && !p->cap_killed) {
                    p->cap_killed = true;
                    kill_now = true;
                }
            }
        }
        if (keep > 0) {
            ring_append(s, t->cfg.ring_bytes, chunk, keep);
            pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
    }
    if (kill_now)
        sbx_sandbox_kill_tree(t->sb, p->pid);
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
        p->grace_deadline_ms = now_ms() + t->cfg.drain_grace_ms;
    check_finished(p);
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

/* Closes pipes whose grace period ended; evicts the oldest finished processes. Returns the
 * epoll timeout until the next grace deadline. */
static int relay_housekeeping(sbx_proctab *t)
{
    uint64_t now = now_ms(), next = 0;
    size_t nfinished = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nprocs; i++) {
        sbx_proc *p = t->procs[i];
        pthread_mutex_lock(&p->lock);
        if (!p->running && !p->finished && p->grace_deadline_ms) {
            if (p->grace_deadline_ms <= now && (p->out.paused || p->err.paused)) {
                /* a paused stream still holds output the reader wants: wait for it */
                p->grace_deadline_ms = now + 50;
                if (!next || p->grace_deadline_ms < next)
                    next = p->grace_deadline_ms;
            } else if (p->grace_deadline_ms <= now) {
                stream_close(t, &p->out);
                stream_close(t, &p->err);
                check_finished(p);
            } else if (!next || p->grace_deadline_ms < next) {
                next = p->grace_deadline_ms;
            }
        }
        if (p->finished)
            nfinished++;
        pthread_mutex_unlock(&p->lock);
    }
    size_t w = 0;
    for (size_t i = 0; i < t->nprocs; i++) {
        sbx_proc *p = t->procs[i];
        bool fin = __atomic_load_n(&p->finished, __ATOMIC_RELAXED);
        if (fin && nfinished > t->cfg.max_finished) {
            nfinished--;
            sbx_proc_unref(p);
            continue;
        }
        t->procs[w++] = p;
    }
    t->nprocs = w;
    pthread_mutex_unlock(&t->lock);
    return next ? (int)(next - now) : -1;
}

static void *relay_main(void *arg)
{
    sbx_proctab *t = arg;
    uint8_t *chunk = malloc(READ_CHUNK);
    struct epoll_event ev[64];
    int timeout = -1;
    while (chunk) {
        int n = epoll_wait(t->epfd, ev, 64, timeout);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &t->ctl) {
                uint64_t v;
                if (read(t->ctl, &v, sizeof v) < 0 && errno != EAGAIN)
                    SBX_LOG_ERRNO(SBX_LOG_WARN, "proc", errno, "control eventfd");
            } else if (ev[i].data.ptr == t) {
                relay_exits(t);
            } else {
                relay_read(t, ev[i].data.ptr, chunk);
            }
        }
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

int sbx_proctab_create(sbx_sandbox *sb, const sbx_proctab_cfg *cfg, sbx_proctab **out)
{
    sbx_proctab *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->sb = sb;
    if (cfg)
        t->cfg = *cfg;
    if (!t->cfg.ring_bytes)
        t->cfg.ring_bytes = 1u << 20;
    if (!t->cfg.max_finished)
        t->cfg.max_finished = 64;
    if (!t->cfg.drain_grace_ms)
        t->cfg.drain_grace_ms = 200;
    pthread_mutex_init(&t->lock, NULL);
    int rc;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->ctl = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->epfd < 0 || t->ctl < 0) {
        rc = -errno;
        goto out_close;
    }
    struct epoll_event e1 = {.events = EPOLLIN, .data.ptr = &t->ctl};
    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = t};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->ctl, &e1) < 0 ||
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, sbx_sandbox_exit_fd(sb), &e2) < 0) {
        rc = -errno;
        goto out_close;
    }
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
        sbx_proc *p = t->procs[i];
        pthread_mutex_lock(&p->lock);
        stream_close(t, &p->out);
        stream_close(t, &p->err);
        if (p->running) {
            p->running = false;
            p->exit = (sbx_exit){.pid = p->pid, .signal = SIGKILL, .lost = true};
        }
        p->finished = true;
        p->tab = NULL;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        sbx_proc_unref(p);
    }
    free(t->procs);
    close(t->epfd);
    close(t->ctl);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static int watch_stream(sbx_proctab *t, stream *s)
{
    if (s->fd < 0)
        return 0;
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = s};
    return epoll_ctl(t->epfd, EPOLL_CTL_ADD, s->fd, &e) < 0 ? -errno : 0;
}

int sbx_proc_start(sbx_proctab *t, const sbx_proc_req *req, sbx_proc **out, const char **err_what)
{
    *out = NULL;
    sbx_proc *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->refs = 1;
    p->tab = t;
    p->out = (stream){.owner = p, .which = SBX_STREAM_STDOUT, .fd = -1};
    p->err = (stream){.owner = p, .which = SBX_STREAM_STDERR, .fd = -1};
    p->stdin_fd = -1;
    p->max_output = req->max_output_bytes;
    p->max_stream = req->max_stream_bytes;
    p->backpressure = req->backpressure;
    p->kill_on_cap = req->kill_on_output_cap;
    p->running = true;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stdin_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->tag = strdup(req->tag ? req->tag : "");
    if (!p->tag) {
        sbx_proc_unref(p);
        return -ENOMEM;
    }
    sbx_spawned sp;
    int rc = sbx_sandbox_spawn(t->sb, &req->spawn, &sp);
    if (err_what)
        *err_what = sp.err_what;
    if (rc < 0) {
        sbx_proc_unref(p);
        return rc;
    }
    p->pid = sp.pid;
    p->stdin_fd = sp.stdin_fd;
    p->out.fd = sp.stdout_fd;
    p->err.fd = sp.stderr_fd;

    pthread_mutex_lock(&t->lock);
    if (t->nprocs == t->capprocs) {
        size_t nc = t->capprocs ? t->capprocs * 2 : 16;
        sbx_proc **np = realloc(t->procs, nc * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&t->lock);
            sbx_sandbox_kill_tree(t->sb, sp.pid);
            sbx_proc_unref(p);
            return -ENOMEM;
        }
        t->procs = np;
        t->capprocs = nc;
    }
    t->procs[t->nprocs++] = p;
    sbx_proc_ref(p); /* the caller's */
    pthread_mutex_lock(&p->lock);
    rc = watch_stream(t, &p->out);
    if (rc == 0)
        rc = watch_stream(t, &p->err);
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
    pthread_mutex_unlock(&t->lock);
    if (rc < 0) /* epoll refused the fds: the output cannot be relayed */
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "proc", rc, "cannot watch output pid=%d", p->pid);
    wake_relay(t); /* recompute grace timers */
    *out = p;
    return 0;
}

sbx_proc *sbx_proc_find_pid(sbx_proctab *t, int pid)
{
    sbx_proc *best = NULL;
    pthread_mutex_lock(&t->lock);
    for (size_t i = t->nprocs; i-- > 0;) {
        sbx_proc *p = t->procs[i];
        if (p->pid != pid)
            continue;
        if (p->running) {
            best = p;
            break;
        }
        if (!best)
            best = p;
    }
    if (best)
        sbx_proc_ref(best);
    pthread_mutex_unlock(&t->lock);
    return best;
}

sbx_proc *sbx_proc_find_tag(sbx_proctab *t, const char *tag)
{
    sbx_proc *best = NULL;
    if (!tag || !tag[0])
        return NULL;
    pthread_mutex_lock(&t->lock);
    for (size_t i = t->nprocs; i-- > 0;) {
        sbx_proc *p = t->procs[i];
        if (strcmp(p->tag, tag) != 0)
            continue;
        if (p->running) {
            best = p;
            break;
        }
        if (!best)
            best = p;
    }
    if (best)
        sbx_proc_ref(best);
    pthread_mutex_unlock(&t->lock);
    return best;
}

size_t sbx_proctab_list(sbx_proctab *t, sbx_proc **out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nprocs && n < max; i++) {
        sbx_proc_ref(t->procs[i]);
        out[n++] = t->procs[i];
    }
    pthread_mutex_unlock(&t->lock);
    return n;
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
    st->out_oldest = ring_oldest(&p->out);
    st->err_oldest = ring_oldest(&p->err);
    pthread_mutex_unlock(&p->lock);
}

ssize_t sbx_proc_read(sbx_proc *p, int stream_id, uint64_t *offset, void *buf, size_t len)
{
    if (stream_id != SBX_STREAM_STDOUT && stream_id != SBX_STREAM_STDERR)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    stream *s = stream_id == SBX_STREAM_STDOUT ? &p->out : &p->err;
    uint64_t oldest = ring_oldest(s);
    if (*offset < oldest)
        *offset = oldest;
    size_t n = 0;
    if (*offset < s->end) {
        uint64_t avail = s->end - *offset;
        n = avail < len ? (size_t)avail : len;
        for (size_t done = 0; done < n;) {
            size_t at = (size_t)((*offset + done) % s->cap);
            size_t k = s->cap - at < n - done ? s->cap - at : n - done;
            memcpy((uint8_t *)buf + done, s->buf + at, k);
            done += k;
        }
    }
    if (p->backpressure && *offset + n > s->consumed) {
        s->consumed = *offset + n;
        if (s->paused && s->fd >= 0 && s->end - s->consumed < p->tab->cfg.ring_bytes) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
            epoll_ctl(p->tab->epfd, EPOLL_CTL_MOD, s->fd, &ev);
            s->paused = false;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return (ssize_t)n;
}

void sbx_proc_release_backpressure(sbx_proc *p)
{
    pthread_mutex_lock(&p->lock);
    p->backpressure = false;
    stream *ss[2] = {&p->out, &p->err};
    for (int i = 0; i < 2; i++)
        if (ss[i]->paused && ss[i]->fd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ss[i]};
            epoll_ctl(p->tab->epfd, EPOLL_CTL_MOD, ss[i]->fd, &ev);
            ss[i]->paused = false;
        }
    pthread_mutex_unlock(&p->lock);
}

int sbx_proc_wait(sbx_proc *p, uint64_t out_off, uint64_t err_off, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0)
        deadline_in(&dl, timeout_ms);
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

ssize_t sbx_proc_write_stdin(sbx_proc *p, const void *buf, size_t len, int timeout_ms)
{
    pthread_mutex_lock(&p->stdin_lock);
    if (p->stdin_fd < 0) {
        pthread_mutex_unlock(&p->stdin_lock);
        return -EPIPE;
    }
    int fl = fcntl(p->stdin_fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(p->stdin_fd, F_SETFL, fl | O_NONBLOCK);
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : 0;
    size_t done = 0;
    ssize_t rc = 0;
    while (done < len) {
        ssize_t n = write(p->stdin_fd, (const uint8_t *)buf + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN) {
            rc = errno == EPIPE ? -EPIPE : -errno;
            break;
        }
        int wait = -1;
        if (timeout_ms >= 0) {
            uint64_t now = now_ms();
            if (now >= deadline)
                break;
            wait = (int)(deadline - now);
        }
        struct pollfd pf = {.fd = p->stdin_fd, .events = POLLOUT};
        if (poll(&pf, 1, wait) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    pthread_mutex_unlock(&p->stdin_lock);
    return done > 0 ? (ssize_t)done : rc;
}

int sbx_proc_close_stdin(sbx_proc *p)
{
    pthread_mutex_lock(&p->stdin_lock);
    if (p->stdin_fd >= 0)
        close(p->stdin_fd);
    p->stdin_fd = -1;
    pthread_mutex_unlock(&p->stdin_lock);
    return 0;
}

int sbx_proc_signal(sbx_proc *p, int sig)
{
    pthread_mutex_lock(&p->lock);
    bool running = p->running;
    sbx_proctab *t = p->tab;
    pthread_mutex_unlock(&p->lock);
    if (!running || !t)
        return -ESRCH;
    return sbx_sandbox_signal(t->sb, p->pid, sig);
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
