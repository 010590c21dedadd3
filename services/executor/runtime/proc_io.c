/* proc_io.c: the bytes of the process table (see proc.h, proc_int.h). Output: each stream keeps
 * its first head_max bytes in a head buffer and the newest bytes after them in a ring; the relay
 * thread reads pipes into them, applies the caps (reading on and dropping past them, so a
 * command never blocks on a full pipe) and, with backpressure, pauses a pipe while the ring
 * holds a full ring of unread bytes. Input: writers queue bytes; only the relay thread writes
 * them into the pipe (so no caller blocks on a command that does not read, and SIGPIPE can only
 * reach the relay thread, which blocks it). A command on a terminal has one master fd for
 * output and a second one for input; closing its input types EOF instead, and its size is set
 * with TIOCSWINSZ.
 *
 * Threads: the relay thread calls sbx__proc_read_pipe / sbx__proc_write_pipe; readers and
 * writers call the public functions from any thread. Everything of one process is under its
 * lock (see proc_int.h for the order). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "clock.h"
#include "proc_int.h"

/* ---------------------------------------------------------------- output memory */

uint64_t sbx__proc_stream_oldest(const stream *s)
{
    if (s->head_max > 0)
        return 0;
    return s->end > s->cap ? s->end - s->cap : 0;
}

/* Oldest offset held in the ring (end when it holds nothing). */
static uint64_t ring_oldest(const stream *s)
{
    if (s->end <= s->head_max)
        return s->end;
    uint64_t in_ring = s->end - s->head_max;
    return in_ring > s->cap ? s->end - s->cap : s->head_max;
}

/* Grows a buffer to hold need bytes, doubling from 4096, at most max. */
static int grow(uint8_t **buf, size_t *cap, uint64_t need, uint64_t max)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4096;
    while (ncap < need && ncap < max)
        ncap *= 2;
    if (ncap > max)
        ncap = (size_t)max;
    uint8_t *nb = realloc(*buf, ncap);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* Appends n bytes of ring data (offsets >= head_max); only the newest max bytes can be held. */
static void ring_append(stream *s, size_t max, const uint8_t *data, size_t n)
{
    if (n >= max) {
        data += n - max;
        s->end += n - max;
        n = max;
    }
    uint64_t rel = s->end - s->head_max;
    /* still linear (nothing wrapped before the ring reached max): grow */
    if (s->cap < max && rel + n > s->cap)
        grow(&s->buf, &s->cap, rel + n, max);
    if (s->cap == 0)
        return;
    for (size_t done = 0; done < n;) {
        size_t at = (size_t)((rel + done) % s->cap);
        size_t k = s->cap - at < n - done ? s->cap - at : n - done;
        memcpy(s->buf + at, data + done, k);
        done += k;
    }
    s->end += n;
}

/* Appends n kept bytes: the head first, then the ring (caller holds p->lock). */
static void stream_append(stream *s, size_t ring_max, const uint8_t *data, size_t n)
{
    if (s->end < s->head_max) {
        size_t k = s->head_max - s->end < n ? (size_t)(s->head_max - s->end) : n;
        if (grow(&s->head, &s->head_cap, s->end + k, s->head_max) < 0)
            return; /* out of memory: these bytes are lost, offsets stay consistent */
        memcpy(s->head + s->end, data, k);
        s->end += k;
        data += k;
        n -= k;
    }
    if (n > 0)
        ring_append(s, ring_max, data, n);
}

int sbx__proc_stream_fill(stream *s, const void *d, size_t n)
{
    s->head_max = n;
    if (n == 0)
        return 0;
    if (!(s->head = malloc(n)))
        return -ENOMEM;
    memcpy(s->head, d, n);
    s->head_cap = n;
    s->end = s->total = n;
    return 0;
}

/* Copies from offset off (held) into buf; returns bytes copied. */
static size_t stream_copy(const stream *s, uint64_t off, uint8_t *buf, size_t len)
{
    size_t n = 0;
    uint64_t hend = s->end < s->head_max ? s->end : s->head_max;
    if (off < hend) {
        n = hend - off < len ? (size_t)(hend - off) : len;
        memcpy(buf, s->head + off, n);
        off += n;
        if (n == len || ring_oldest(s) > off)
            return n; /* full, or a gap after the head */
    }
    uint64_t avail = s->end > off ? s->end - off : 0;
    size_t m = avail < len - n ? (size_t)avail : len - n;
    for (size_t done = 0; done < m;) {
        size_t at = (size_t)((off - s->head_max + done) % s->cap);
        size_t k = s->cap - at < m - done ? s->cap - at : m - done;
        memcpy(buf + n + done, s->buf + at, k);
        done += k;
    }
    return n + m;
}

/* The offset the ring can reach without overwriting unread bytes (backpressure). */
static uint64_t unread_limit(const stream *s, size_t ring)
{
    uint64_t base = s->consumed > s->head_max ? s->consumed : s->head_max;
    return base + ring;
}

static void stream_watch(sbx_proctab *t, stream *s, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->tag};
    epoll_ctl(t->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->fd, &ev);
    s->paused = !on;
}

void sbx__proc_stream_close(sbx_proctab *t, stream *s)
{
    if (s->fd < 0)
        return;
    if (!s->paused)
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    s->paused = false;
}

/* ---------------------------------------------------------------- relay: output */

/* How much to read now; 0 when backpressure pauses the stream (caller holds p->lock). */
static size_t read_budget(sbx_proctab *t, sbx_proc *p, stream *s, size_t want)
{
    if (!p->backpressure)
        return want;
    /* past the per-stream cap bytes are dropped anyway: keep draining them */
    if (p->max_stream && s->end >= p->max_stream)
        return want;
    uint64_t limit = unread_limit(s, t->cfg.ring_bytes);
    if (s->end >= limit) {
        stream_watch(t, s, false);
        return 0;
    }
    return limit - s->end < want ? (size_t)(limit - s->end) : want;
}

/* Keeps what the caps allow of n bytes just read; returns true when the tree must be killed
 * (caller holds p->lock). */
static bool keep_read(sbx_proctab *t, sbx_proc *p, stream *s, const uint8_t *chunk, size_t n)
{
    bool kill_now = false;
    size_t keep = n;
    s->total += n;
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
            p->dropped += n - keep;
            if (p->kill_on_cap && !p->cap_killed)
                kill_now = p->cap_killed = true;
        }
    }
    if (keep > 0) {
        stream_append(s, t->cfg.ring_bytes, chunk, keep);
        pthread_cond_broadcast(&p->cond);
    }
    return kill_now;
}

void sbx__proc_read_pipe(sbx_proctab *t, stream *s, uint8_t *chunk, size_t chunk_len)
{
    sbx_proc *p = s->tag.owner;
    bool kill_now = false;
    for (int i = 0; i < 16; i++) {
        pthread_mutex_lock(&p->lock);
        size_t want = s->fd >= 0 ? read_budget(t, p, s, chunk_len) : 0;
        pthread_mutex_unlock(&p->lock);
        if (want == 0)
            break;
        ssize_t n = read(s->fd, chunk, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        pthread_mutex_lock(&p->lock);
        if (n <= 0) {
            sbx__proc_stream_close(t, s);
            sbx__proc_check_finished(p);
            pthread_cond_broadcast(&p->cond);
            pthread_mutex_unlock(&p->lock);
            break;
        }
        kill_now |= keep_read(t, p, s, chunk, (size_t)n);
        pthread_mutex_unlock(&p->lock);
    }
    if (kill_now)
        sbx_sandbox_kill_tree(t->sb, p->pid);
}

/* ---------------------------------------------------------------- readers */

ssize_t sbx_proc_read(sbx_proc *p, int stream_id, uint64_t *offset, void *buf, size_t len)
{
    if (stream_id != SBX_STREAM_STDOUT && stream_id != SBX_STREAM_STDERR)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    stream *s = stream_id == SBX_STREAM_STDOUT ? &p->out : &p->err;
    uint64_t hend = s->end < s->head_max ? s->end : s->head_max;
    if (*offset >= hend && *offset < ring_oldest(s))
        *offset = ring_oldest(s);
    size_t n = *offset < s->end ? stream_copy(s, *offset, buf, len) : 0;
    if (p->backpressure && *offset + n > s->consumed) {
        s->consumed = *offset + n;
        if (s->paused && s->fd >= 0 && p->tab && s->end < unread_limit(s, p->tab->cfg.ring_bytes))
            stream_watch(p->tab, s, true);
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
        if (ss[i]->paused && ss[i]->fd >= 0 && p->tab)
            stream_watch(p->tab, ss[i], true);
    pthread_mutex_unlock(&p->lock);
}

void sbx_proc_drop_ring(sbx_proc *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->finished) {
        stream *ss[2] = {&p->out, &p->err};
        for (int i = 0; i < 2; i++) {
            free(ss[i]->buf);
            ss[i]->buf = NULL;
            ss[i]->cap = 0;
        }
    }
    pthread_mutex_unlock(&p->lock);
}

/* ---------------------------------------------------------------- input */

/* Puts stdin in the relay's epoll set while input is queued (caller holds p->lock). */
static void input_arm(sbx_proc *p, bool on)
{
    input *in = &p->in;
    if (in->fd < 0 || !p->tab || in->armed == on)
        return;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &in->tag};
    if (epoll_ctl(p->tab->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, in->fd, &ev) == 0 || !on)
        in->armed = on;
}

static void input_drop_queue(input *in)
{
    free(in->q);
    in->q = NULL;
    in->off = in->len = 0;
}

void sbx__proc_input_close(sbx_proc *p)
{
    input *in = &p->in;
    input_arm(p, false);
    if (in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    input_drop_queue(in);
    pthread_cond_broadcast(&p->cond);
}

static int input_queue(input *in, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (in->off > 0) { /* compact what is written */
        memmove(in->q, in->q + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    uint8_t *nq = realloc(in->q, in->len + len);
    if (!nq)
        return -ENOMEM;
    memcpy(nq + in->len, buf, len);
    in->q = nq;
    in->len += len;
    in->last = ((const uint8_t *)buf)[len - 1];
    return 0;
}

size_t sbx__proc_pty_eof(sbx_proc *p, uint8_t eof[2])
{
    struct termios t;
    int fd = p->in.fd >= 0 ? p->in.fd : p->out.fd;
    if (fd < 0 || tcgetattr(fd, &t) < 0) { /* the kernel's defaults */
        t.c_lflag = ICANON;
        t.c_cc[VEOF] = 4;
        t.c_cc[VEOL] = t.c_cc[VEOL2] = 0;
    }
    uint8_t c = t.c_cc[VEOF] ? t.c_cc[VEOF] : 4; /* _POSIX_VDISABLE: ^D all the same */
    int last = p->in.last;
    bool partial = (t.c_lflag & ICANON) && last >= 0 && last != '\n' && last != '\r' && last != c &&
                   (!t.c_cc[VEOL] || last != t.c_cc[VEOL]) &&
                   (!t.c_cc[VEOL2] || last != t.c_cc[VEOL2]);
    eof[0] = eof[1] = c;
    return partial ? 2 : 1;
}

int sbx__proc_input_start(sbx_proc *p, int fd, const sbx_proc_req *req)
{
    input *in = &p->in;
    in->fd = fd;
    in->last = -1;
    if (fd < 0)
        return 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (input_queue(in, req->stdin_data, req->stdin_len) < 0)
        return -ENOMEM;
    if (p->pty) { /* EOF is typed; the terminal stays */
        uint8_t eof[2];
        size_t n = req->stdin_close ? sbx__proc_pty_eof(p, eof) : 0;
        if (n && input_queue(in, eof, n) < 0)
            return -ENOMEM;
        input_arm(p, in->len > 0);
        return 0;
    }
    if (req->stdin_close && in->len == 0)
        sbx__proc_input_close(p);
    in->close_after = req->stdin_close;
    input_arm(p, in->len > 0);
    return 0;
}

void sbx__proc_write_pipe(sbx_proc *p, uint32_t events)
{
    pthread_mutex_lock(&p->lock);
    input *in = &p->in;
    while (in->fd >= 0 && in->off < in->len) {
        ssize_t n = write(in->fd, in->q + in->off, in->len - in->off);
        if (n > 0) {
            in->off += (size_t)n;
            in->written += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else { /* EPIPE: nothing reads stdin any more */
            sbx__proc_input_close(p);
        }
    }
    if (in->fd >= 0 && in->off == in->len) {
        input_drop_queue(in);
        input_arm(p, false);
        if (in->close_after)
            sbx__proc_input_close(p);
    } else if (in->fd >= 0 && (events & (EPOLLERR | EPOLLHUP))) {
        sbx__proc_input_close(p);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Waits until written reaches target, stdin closed, or the deadline (caller holds p->lock). */
static void input_wait(sbx_proc *p, uint64_t target, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0)
        sbx_deadline_in(&dl, timeout_ms);
    while (p->in.fd >= 0 && p->in.written < target) {
        if (timeout_ms < 0)
            pthread_cond_wait(&p->cond, &p->lock);
        else if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) == ETIMEDOUT)
            break;
    }
}

ssize_t sbx_proc_write_stdin(sbx_proc *p, const void *buf, size_t len, int timeout_ms)
{
    pthread_mutex_lock(&p->stdin_lock);
    pthread_mutex_lock(&p->lock);
    input *in = &p->in;
    ssize_t rc = -EPIPE;
    if (in->fd >= 0 && !in->close_after) {
        uint64_t start = in->written + (in->len - in->off); /* where these bytes begin */
        rc = input_queue(in, buf, len);
        if (rc == 0) {
            input_arm(p, in->len > in->off);
            input_wait(p, start + len, timeout_ms);
            uint64_t done = in->written > start ? in->written - start : 0;
            if (done > len)
                done = len;
            if (done < len && in->fd >= 0) /* the deadline passed: withdraw the rest */
                in->len -= (size_t)(len - done);
            if (in->fd >= 0 && in->len == in->off) {
                input_drop_queue(in);
                input_arm(p, false);
            }
            rc = done > 0 || in->fd >= 0 ? (ssize_t)done : -EPIPE;
        }
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->stdin_lock);
    return rc;
}

int sbx_proc_close_stdin(sbx_proc *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->pty) {
        uint8_t eof[2];
        size_t n = sbx__proc_pty_eof(p, eof);
        bool open = p->in.fd >= 0;
        pthread_mutex_unlock(&p->lock);
        /* queued behind what writers queued, never withdrawn by their timeouts */
        ssize_t w = open ? sbx_proc_write_stdin(p, eof, n, 5000) : -EPIPE;
        return w < 0 ? (int)w : 0;
    }
    if (p->in.off < p->in.len)
        p->in.close_after = true;
    else
        sbx__proc_input_close(p);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* ---------------------------------------------------------------- terminal */

int sbx_proc_resize(sbx_proc *p, uint16_t cols, uint16_t rows)
{
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    int fd = p->out.fd >= 0 ? p->out.fd : p->in.fd;
    if (!p->pty) {
        rc = -ENOTTY;
    } else if (fd < 0 || p->finished) {
        rc = -ESRCH;
    } else {
        struct winsize ws = {.ws_row = rows, .ws_col = cols};
        if (ioctl(fd, TIOCSWINSZ, &ws) < 0) {
            rc = -errno;
        } else {
            p->cols = cols;
            p->rows = rows;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}
