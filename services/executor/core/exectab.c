/* exectab.c: per-sandbox executions, their capture and recording, and the background monitor
 * (see exectab.h). */
#include "exectab.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec_cmdkey.h"
#include "log.h"
#include "status.h"

struct sbx_exe_priv {
    int refs; /* atomic */
    sbx_execmon *mon;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sbx_exe_state state;
    int pid;
    sbx_proc *proc;
    bool stdin_open;
    int64_t started_ms;
    uint64_t started_mono_us;
    sbx_exe_exit exit;
    bool recorded;
    int64_t done_mono_ms;
    uint8_t *cap[2];  /* stdout, stderr */
    size_t caplen[2]; /* bytes captured from offset 0 */
    bool capgap[2];   /* the ring dropped bytes before they were captured */
    uint64_t end[2];  /* last seen stream ends (for info after the ring is released) */
};

struct sbx_exectab {
    sbx_execmon *mon;
    pthread_mutex_t mu;
    sbx_exe **v; /* oldest first */
    size_t n, cap;
    uint64_t seq;
    char sandbox_id[EXV_ID_MAX + 1];
    int64_t oom_seen;
};

struct sbx_execmon {
    sbx_outbox *ob;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sbx_exe **v;
    size_t n, cap;
    bool stop;
    pthread_t thr;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
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

/* ---------------------------------------------------------------- exe memory */

void sbx_exe_ref(sbx_exe *e)
{
    __atomic_add_fetch(&e->priv->refs, 1, __ATOMIC_RELAXED);
}

void sbx_exe_unref(sbx_exe *e)
{
    if (!e || __atomic_sub_fetch(&e->priv->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    struct sbx_exe_priv *p = e->priv;
    sbx_proc_unref(p->proc);
    free(p->cap[0]);
    free(p->cap[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
    for (size_t i = 0; e->argv && i < e->argc; i++)
        free(e->argv[i]);
    free(e->argv);
    free(e->shell);
    free(e->cwd);
    free(e->tag);
    free(e->request_id);
    free(e);
}

static sbx_exe *exe_new(sbx_exectab *t, const sbx_exe_spec *s, sbx_box *b)
{
    const Sbx__V1__ExecRequest *r = s->req;
    sbx_exe *e = calloc(1, sizeof *e);
    struct sbx_exe_priv *p = calloc(1, sizeof *p);
    if (!e || !p) {
        free(e);
        free(p);
        return NULL;
    }
    e->priv = p;
    p->refs = 1;
    p->mon = t->mon;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(e->tenant, sizeof e->tenant, "%s", sbx_box_tenant(b));
    snprintf(e->project, sizeof e->project, "%s", sbx_box_project(b));
    snprintf(e->sandbox_id, sizeof e->sandbox_id, "%s", sbx_box_id(b));
    e->request_id = strdup(r->request_id ? r->request_id : "");
    snprintf(e->fingerprint, sizeof e->fingerprint, "%s", s->fingerprint ? s->fingerprint : "");
    snprintf(e->cmdkey, sizeof e->cmdkey, "%s", s->cmdkey ? s->cmdkey : "");
    e->tag = strdup(r->tag ? r->tag : "");
    e->cwd = exk_normalize_cwd(r->cwd);
    bool ok = e->request_id && e->tag && e->cwd;
    if (r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_SHELL) {
        ok = ok && (e->shell = strdup(r->shell));
    } else if (r->argv) {
        e->argc = r->argv->n_args;
        e->argv = calloc(e->argc ? e->argc : 1, sizeof *e->argv);
        ok = ok && e->argv;
        for (size_t i = 0; ok && i < e->argc; i++)
            ok = (e->argv[i] = strdup(r->argv->args[i])) != NULL;
    }
    e->background = r->background;
    e->cache_ttl_s = r->background ? 0 : r->cache_ttl_s;
    e->cap = s->cap;
    e->capture_limit = s->cap < EXE_CAPTURE_MAX ? (size_t)s->cap : EXE_CAPTURE_MAX;
    p->state = EXE_STARTING;
    p->started_ms = sbx_now_unix_ms();
    p->started_mono_us = mono_us();
    if (!ok) {
        sbx_exe_unref(e);
        return NULL;
    }
    return e;
}

/* ---------------------------------------------------------------- table */

static sbx_exectab *tab_of(sbx_box *b)
{
    return sbx_box_ext(b);
}

int sbx_exectab_attach(void *mon, sbx_box *b)
{
    sbx_exectab *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->mon = mon;
    pthread_mutex_init(&t->mu, NULL);
    snprintf(t->sandbox_id, sizeof t->sandbox_id, "%s", sbx_box_id(b));
    sbx_sandbox_stats st;
    t->oom_seen = sbx_sandbox_read_stats(sbx_box_sandbox(b), &st) == 0 ? (int64_t)st.oom_kills : -1;
    sbx_box_set_ext(b, t);
    return 0;
}

void sbx_exectab_detach(void *mon, sbx_box *b)
{
    (void)mon;
    sbx_exectab *t = tab_of(b);
    if (!t)
        return;
    sbx_box_set_ext(b, NULL);
    /* foreground executions are driven by handlers, which hold uses (so none runs here);
       background ones stay with the monitor, which finishes them once the table is gone */
    for (size_t i = 0; i < t->n; i++)
        sbx_exe_unref(t->v[i]);
    free(t->v);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static sbx_exe_state exe_state(sbx_exe *e)
{
    pthread_mutex_lock(&e->priv->mu);
    sbx_exe_state s = e->priv->state;
    pthread_mutex_unlock(&e->priv->mu);
    return s;
}

int sbx_exectab_running(void *mon, sbx_box *b)
{
    (void)mon;
    sbx_exectab *t = tab_of(b);
    if (!t)
        return 0;
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        sbx_exe_state s = exe_state(t->v[i]);
        if (s == EXE_STARTING || s == EXE_RUNNING)
            n++;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Drops old finished executions and the rings of all but the newest few (caller holds t->mu). */
static void prune(sbx_exectab *t)
{
    int64_t now = (int64_t)(mono_us() / 1000);
    size_t finished = 0;
    for (size_t i = 0; i < t->n; i++)
        if (exe_state(t->v[i]) >= EXE_DONE)
            finished++;
    size_t seen = 0, w = 0;
    for (size_t i = 0; i < t->n; i++) {
        sbx_exe *e = t->v[i];
        struct sbx_exe_priv *p = e->priv;
        pthread_mutex_lock(&p->mu);
        bool done = p->state >= EXE_DONE;
        int64_t age = now - p->done_mono_ms;
        pthread_mutex_unlock(&p->mu);
        if (done) {
            size_t newer = finished - seen - 1; /* finished executions newer than this one */
            seen++;
            bool keep = p->state == EXE_DONE &&
                        (newer < EXE_KEEP_MIN || age < EXE_KEEP_RECENT_MS) && newer < EXE_KEEP_MAX;
            if (!keep) {
                sbx_exe_unref(e);
                continue;
            }
            if (newer >= EXE_KEEP_PROCS) {
                pthread_mutex_lock(&p->mu);
                sbx_proc *pr = p->proc;
                p->proc = NULL;
                /* without a request_id nobody replays the capture any more */
                if (!e->request_id[0] && p->recorded) {
                    free(p->cap[0]);
                    free(p->cap[1]);
                    p->cap[0] = p->cap[1] = NULL;
                    p->caplen[0] = p->caplen[1] = 0;
                }
                pthread_mutex_unlock(&p->mu);
                sbx_proc_unref(pr);
            }
        }
        t->v[w++] = e;
    }
    t->n = w;
}

int sbx_exe_begin(sbx_box *b, const sbx_exe_spec *spec, sbx_exe **out, sbx_exe **existing,
                  char *err, size_t errlen)
{
    *out = NULL;
    *existing = NULL;
    sbx_exectab *t = tab_of(b);
    if (!t) {
        snprintf(err, errlen, "sandbox %s is stopping", sbx_box_id(b));
        return SBX_UNAVAILABLE;
    }
    const Sbx__V1__ExecRequest *r = spec->req;
    pthread_mutex_lock(&t->mu);
    if (r->request_id && r->request_id[0]) {
        for (size_t i = t->n; i-- > 0;) {
            sbx_exe *e = t->v[i];
            if (strcmp(e->request_id, r->request_id) != 0 || exe_state(e) == EXE_ABORTED)
                continue;
            if (strcmp(e->fingerprint, spec->fingerprint ? spec->fingerprint : "") != 0) {
                pthread_mutex_unlock(&t->mu);
                snprintf(err, errlen, "request_id: \"%s\" was already used in this sandbox for a "
                         "different command", r->request_id);
                return SBX_ALREADY_EXISTS;
            }
            sbx_exe_ref(e);
            pthread_mutex_unlock(&t->mu);
            *existing = e;
            return SBX_OK;
        }
    }
    if (r->tag && r->tag[0]) {
        for (size_t i = 0; i < t->n; i++) {
            sbx_exe *e = t->v[i];
            sbx_exe_state s = exe_state(e);
            if ((s == EXE_STARTING || s == EXE_RUNNING) && strcmp(e->tag, r->tag) == 0) {
                pthread_mutex_unlock(&t->mu);
                snprintf(err, errlen, "tag: \"%s\" is used by running process %d", r->tag,
                         e->priv->pid);
                return SBX_ALREADY_EXISTS;
            }
        }
    }
    prune(t);
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 32;
        sbx_exe **nv = realloc(t->v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&t->mu);
            snprintf(err, errlen, "out of memory");
            return SBX_RESOURCE_EXHAUSTED;
        }
        t->v = nv;
        t->cap = nc;
    }
    sbx_exe *e = exe_new(t, spec, b);
    if (!e) {
        pthread_mutex_unlock(&t->mu);
        snprintf(err, errlen, "out of memory");
        return SBX_RESOURCE_EXHAUSTED;
    }
    snprintf(e->id, sizeof e->id, "%s.%llu", t->sandbox_id, (unsigned long long)++t->seq);
    t->v[t->n++] = e;
    sbx_exe_ref(e); /* the caller's */
    pthread_mutex_unlock(&t->mu);
    *out = e;
    return SBX_OK;
}

static void remove_from_table(sbx_box *b, sbx_exe *e)
{
    sbx_exectab *t = tab_of(b);
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] == e) {
            memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof *t->v);
            t->n--;
            sbx_exe_unref(e);
            break;
        }
    pthread_mutex_unlock(&t->mu);
}

/* ---------------------------------------------------------------- start */

static void append_capture(struct sbx_exe_priv *p, int s, size_t limit, const void *d, size_t n)
{
    if (p->caplen[s] >= limit || n == 0 || !d)
        return;
    if (!p->cap[s] && !(p->cap[s] = malloc(limit ? limit : 1)))
        return;
    size_t k = limit - p->caplen[s] < n ? limit - p->caplen[s] : n;
    memcpy(p->cap[s] + p->caplen[s], d, k);
    p->caplen[s] += k;
}

int sbx_exe_spawn(sbx_box *b, sbx_exe *e, const sbx_proc_req *req, char *err, size_t errlen)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_proc *proc = NULL;
    const char *what = NULL;
    int rc = sbx_proc_start(sbx_box_proctab(b), req, &proc, &what);
    if (rc == 0) {
        pthread_mutex_lock(&p->mu);
        p->proc = proc;
        sbx_proc_status st;
        sbx_proc_status_get(proc, &st);
        p->pid = st.pid;
        p->stdin_open = req->spawn.want_stdin;
        p->state = EXE_RUNNING;
        p->started_ms = sbx_now_unix_ms();
        p->started_mono_us = mono_us();
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
        return SBX_OK;
    }
    if (what && strcmp(what, "exec") == 0) {
        /* the program cannot be executed: a finished execution with 127 / 126 */
        const char *prog = req->spawn.argv[0];
        char msg[512];
        int n = snprintf(msg, sizeof msg, "sbx: %.400s: %s\n", prog, strerror(-rc));
        pthread_mutex_lock(&p->mu);
        append_capture(p, 1, e->capture_limit, msg, (size_t)n);
        p->end[1] = (uint64_t)n;
        p->exit.exit_code = rc == -ENOENT ? 127 : 126;
        p->exit.stderr_bytes = (uint64_t)n;
        p->exit.finished_ms = sbx_now_unix_ms();
        p->exit.output_truncated = (uint64_t)n > e->cap;
        p->state = EXE_RUNNING; /* sbx_exe_finish records it */
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
        sbx_exe_finish(e, true, -1);
        return SBX_OK;
    }
    int code;
    if (what && strcmp(what, "cwd") == 0) {
        code = SBX_FAILED_PRECONDITION;
        snprintf(err, errlen, "cwd: %s: %s", e->cwd, rc == -ENOTDIR ? "not a directory"
                                                       : rc == -ENOENT ? "does not exist"
                                                                       : strerror(-rc));
    } else if (rc == -EAGAIN) {
        code = SBX_RESOURCE_EXHAUSTED;
        snprintf(err, errlen, "pids: the sandbox cannot start another process (limits.pids %lld)",
                 (long long)sbx_box_limits(b)->pids);
    } else if (rc == -E2BIG || rc == -EMSGSIZE) {
        code = SBX_INVALID_ARGUMENT;
        snprintf(err, errlen, "argv, env: too large for the sandbox init (%s)", strerror(-rc));
    } else if (rc == -EPIPE || rc == -ECONNRESET) {
        code = SBX_UNAVAILABLE;
        snprintf(err, errlen, "sandbox %s died; retry to start a new one", sbx_box_id(b));
        sbx_box_mark_dead(b, "spawn: init socket broken");
    } else {
        code = sbx_status_from_errno(rc);
        if (code == SBX_OK || code == SBX_UNKNOWN)
            code = SBX_INTERNAL;
        snprintf(err, errlen, "cannot start the command (%s): %s", what ? what : "spawn",
                 strerror(-rc));
    }
    pthread_mutex_lock(&p->mu);
    p->state = EXE_ABORTED;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    remove_from_table(b, e);
    return code;
}

void sbx_exe_set_cached(sbx_exe *e, const Sbx__V1__CachedResult *c)
{
    struct sbx_exe_priv *p = e->priv;
    pthread_mutex_lock(&p->mu);
    append_capture(p, 0, e->capture_limit, c->stdout.data, c->stdout.len);
    append_capture(p, 1, e->capture_limit, c->stderr.data, c->stderr.len);
    p->end[0] = c->stdout.len;
    p->end[1] = c->stderr.len;
    p->exit.exit_code = c->exit_code;
    p->exit.signal = c->signal;
    p->exit.timed_out = c->timed_out;
    p->exit.output_truncated = c->output_truncated || c->stdout.len > e->cap || c->stderr.len > e->cap;
    p->exit.cached = true;
    p->exit.duration_us = c->duration_us;
    p->exit.stdout_bytes = c->stdout_bytes > c->stdout.len ? c->stdout_bytes : c->stdout.len;
    p->exit.stderr_bytes = c->stderr_bytes > c->stderr.len ? c->stderr_bytes : c->stderr.len;
    p->exit.finished_ms = sbx_now_unix_ms();
    p->pid = 0;
    p->state = EXE_RUNNING;
    pthread_mutex_unlock(&p->mu);
    sbx_exe_finish(e, true, -1);
}

sbx_exe_state sbx_exe_wait_started(sbx_exe *e, int timeout_ms)
{
    struct sbx_exe_priv *p = e->priv;
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    pthread_mutex_lock(&p->mu);
    while (p->state == EXE_STARTING)
        if (pthread_cond_timedwait(&p->cond, &p->mu, &dl) == ETIMEDOUT)
            break;
    sbx_exe_state s = p->state;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* ---------------------------------------------------------------- output */

void sbx_exe_info_get(sbx_exe *e, sbx_exe_info *info)
{
    struct sbx_exe_priv *p = e->priv;
    memset(info, 0, sizeof *info);
    pthread_mutex_lock(&p->mu);
    info->state = p->state;
    info->pid = p->pid;
    info->stdin_open = p->stdin_open && p->state == EXE_RUNNING;
    info->started_ms = p->started_ms;
    info->exit = p->exit;
    sbx_proc *proc = p->proc;
    if (proc)
        sbx_proc_ref(proc);
    info->out_end = p->end[0];
    info->err_end = p->end[1];
    pthread_mutex_unlock(&p->mu);
    if (proc) {
        sbx_proc_status st;
        sbx_proc_status_get(proc, &st);
        info->out_end = st.out_end;
        info->err_end = st.err_end;
        info->out_oldest = st.out_oldest;
        info->err_oldest = st.err_oldest;
        sbx_proc_unref(proc);
    } else {
        /* only the capture is left: it starts at 0; bytes after it are gone */
        info->out_oldest = 0;
        info->err_oldest = 0;
    }
}

sbx_proc *sbx_exe_proc(sbx_exe *e)
{
    pthread_mutex_lock(&e->priv->mu);
    sbx_proc *p = e->priv->proc;
    if (p)
        sbx_proc_ref(p);
    pthread_mutex_unlock(&e->priv->mu);
    return p;
}

size_t sbx_exe_capture_len(sbx_exe *e, int stream)
{
    int s = stream == SBX_STREAM_STDERR;
    pthread_mutex_lock(&e->priv->mu);
    size_t n = e->priv->caplen[s];
    pthread_mutex_unlock(&e->priv->mu);
    return n;
}

size_t sbx_exe_capture_read(sbx_exe *e, int stream, uint64_t off, void *buf, size_t len)
{
    int s = stream == SBX_STREAM_STDERR;
    struct sbx_exe_priv *p = e->priv;
    pthread_mutex_lock(&p->mu);
    size_t n = 0;
    if (off < p->caplen[s] && p->cap[s]) {
        n = p->caplen[s] - (size_t)off < len ? p->caplen[s] - (size_t)off : len;
        memcpy(buf, p->cap[s] + off, n);
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

void sbx_exe_pull(sbx_exe *e)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_proc *proc = sbx_exe_proc(e);
    if (!proc)
        return;
    uint8_t buf[16384];
    for (int s = 0; s < 2; s++) {
        int stream = s ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT;
        for (;;) {
            pthread_mutex_lock(&p->mu);
            uint64_t off = p->caplen[s];
            bool full = p->caplen[s] >= e->capture_limit || p->capgap[s];
            pthread_mutex_unlock(&p->mu);
            if (full)
                break;
            uint64_t want = off;
            size_t room = e->capture_limit - (size_t)off;
            ssize_t n = sbx_proc_read(proc, stream, &want, buf, room < sizeof buf ? room : sizeof buf);
            if (n <= 0)
                break;
            pthread_mutex_lock(&p->mu);
            if (want != off) {
                p->capgap[s] = true; /* the ring dropped the start: keep what we have */
            } else if (p->caplen[s] == off) {
                append_capture(p, s, e->capture_limit, buf, (size_t)n);
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
    sbx_proc_unref(proc);
}

/* ---------------------------------------------------------------- finish + record */

static size_t quote_arg(char *out, size_t room, const char *a)
{
    bool plain = a[0] != 0;
    for (const char *s = a; *s && plain; s++)
        plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                strchr("-_./=:,+@%", *s);
    size_t o = 0;
#define PUT(c)                                                                                   \
    do {                                                                                         \
        if (o + 1 < room)                                                                        \
            out[o] = (c);                                                                        \
        o++;                                                                                     \
    } while (0)
    if (plain) {
        for (const char *s = a; *s; s++)
            PUT(*s);
    } else {
        PUT('\'');
        for (const char *s = a; *s; s++) {
            if (*s == '\'') {
                PUT('\'');
                PUT('\\');
                PUT('\'');
                PUT('\'');
            } else {
                PUT(*s);
            }
        }
        PUT('\'');
    }
#undef PUT
    return o;
}

char *sbx_exe_display_command(const sbx_exe *e)
{
    size_t room = 4097;
    char *out = calloc(1, room);
    if (!out)
        return NULL;
    if (e->shell) {
        snprintf(out, room, "%s", e->shell);
        return out;
    }
    size_t o = 0;
    for (size_t i = 0; i < e->argc && o < room - 1; i++) {
        if (i)
            out[o++] = ' ';
        if (o >= room - 1)
            break;
        size_t n = quote_arg(out + o, room - o, e->argv[i]);
        o = o + n < room - 1 ? o + n : room - 1;
    }
    out[o < room ? o : room - 1] = 0;
    /* do not end inside a UTF-8 sequence cut by the limit */
    size_t l = strlen(out);
    if (l == room - 1)
        while (l > 0 && ((unsigned char)out[l - 1] & 0xc0) == 0x80)
            out[--l] = 0;
    if (l > 0 && (unsigned char)out[l - 1] >= 0xc0)
        out[--l] = 0;
    return out;
}

Sbx__V1__RecordExecutionRequest *sbx_exe_record_build(sbx_exe *e)
{
    struct sbx_exe_priv *p = e->priv;
    Sbx__V1__RecordExecutionRequest *req = calloc(1, sizeof *req);
    Sbx__V1__ExecutionRecord *rec = calloc(1, sizeof *rec);
    if (!req || !rec) {
        free(req);
        free(rec);
        return NULL;
    }
    sbx__v1__record_execution_request__init(req);
    sbx__v1__execution_record__init(rec);
    req->record = rec;
    req->project_id = e->project;
    rec->record_id = e->id;
    rec->command = sbx_exe_display_command(e);
    if (!rec->command)
        rec->command = strdup("");
    static char sh[] = "/bin/sh", dashc[] = "-c";
    size_t na = e->shell ? 3 : e->argc;
    rec->argv = calloc(na ? na : 1, sizeof(char *)); /* pointers into e; freed with the record */
    if (rec->argv) {
        rec->n_argv = na;
        if (e->shell) {
            rec->argv[0] = sh;
            rec->argv[1] = dashc;
            rec->argv[2] = e->shell;
        } else {
            for (size_t i = 0; i < na; i++)
                rec->argv[i] = e->argv[i];
        }
    }
    rec->cwd = e->cwd;
    pthread_mutex_lock(&p->mu);
    rec->exit_code = p->exit.exit_code;
    rec->signal = p->exit.signal;
    rec->timed_out = p->exit.timed_out;
    rec->cached = p->exit.cached;
    rec->stdout.data = p->cap[0];
    rec->stdout.len = p->caplen[0];
    rec->stderr.data = p->cap[1];
    rec->stderr.len = p->caplen[1];
    rec->output_truncated = p->exit.output_truncated || p->exit.stdout_bytes > p->caplen[0] ||
                            p->exit.stderr_bytes > p->caplen[1];
    rec->started_at_unix_ms = p->started_ms;
    rec->duration_us = p->exit.duration_us;
    rec->stdout_bytes = p->exit.stdout_bytes;
    rec->stderr_bytes = p->exit.stderr_bytes;
    bool cacheable = e->cache_ttl_s > 0 && !p->exit.timed_out && !p->exit.cached;
    pthread_mutex_unlock(&p->mu);
    rec->sandbox_id = e->sandbox_id;
    rec->tag = e->tag;
    rec->command_key = e->cmdkey;
    req->cache_ttl_s = cacheable && e->cmdkey[0] ? e->cache_ttl_s : 0;
    return req;
}

void sbx_exe_record_free(Sbx__V1__RecordExecutionRequest *r)
{
    if (!r)
        return;
    if (r->record) {
        free(r->record->command);
        free(r->record->argv);
        free(r->record);
    }
    free(r);
}

static void record(sbx_exe *e)
{
    sbx_execmon *m = e->priv->mon;
    if (!m || !m->ob)
        return;
    Sbx__V1__RecordExecutionRequest *r = sbx_exe_record_build(e);
    if (!r) {
        SBX_LOG_ERROR("exec", "cannot build the history record (out of memory) id=%s", e->id);
        return;
    }
    size_t len = sbx__v1__record_execution_request__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        sbx__v1__record_execution_request__pack(r, buf);
        int rc = sbx_outbox_append(m->ob, e->tenant, buf, len);
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "exec", rc, "cannot queue the history record id=%s", e->id);
        free(buf);
    }
    sbx_exe_record_free(r);
}

bool sbx_exe_finish(sbx_exe *e, bool force, int64_t oom_kills)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_proc *proc = sbx_exe_proc(e);
    if (proc) {
        sbx_proc_status st;
        sbx_proc_status_get(proc, &st);
        if (!st.finished && !force) {
            sbx_proc_unref(proc);
            return false;
        }
        sbx_exe_pull(e);
        pthread_mutex_lock(&p->mu);
        if (p->state == EXE_RUNNING) {
            sbx_exit x = st.exit;
            if (st.running) /* forced while still running: the sandbox is gone */
                x = (sbx_exit){.pid = st.pid, .signal = SIGKILL, .lost = true};
            p->exit.signal = x.signal;
            p->exit.exit_code = x.signal ? 128 + x.signal : x.exit_code;
            p->exit.timed_out = x.timed_out;
            p->exit.duration_us = x.duration_us ? (int64_t)x.duration_us
                                                : (int64_t)(mono_us() - p->started_mono_us);
            p->exit.stdout_bytes = st.out_total > st.out_end ? st.out_total : st.out_end;
            p->exit.stderr_bytes = st.err_total > st.err_end ? st.err_total : st.err_end;
            p->exit.output_truncated = p->exit.stdout_bytes > e->cap || p->exit.stderr_bytes > e->cap;
            p->exit.finished_ms = sbx_now_unix_ms();
            p->exit.oom_killed = x.signal == SIGKILL && !x.timed_out && oom_kills > 0;
            p->end[0] = st.out_end;
            p->end[1] = st.err_end;
        }
        pthread_mutex_unlock(&p->mu);
        sbx_proc_unref(proc);
    }
    pthread_mutex_lock(&p->mu);
    bool do_record = false;
    if (p->state == EXE_RUNNING || p->state == EXE_STARTING) {
        if (!p->exit.duration_us)
            p->exit.duration_us = p->exit.cached ? p->exit.duration_us
                                                 : (int64_t)(mono_us() - p->started_mono_us);
        if (!p->exit.finished_ms)
            p->exit.finished_ms = sbx_now_unix_ms();
        p->state = EXE_DONE;
        p->stdin_open = false;
        p->done_mono_ms = (int64_t)(mono_us() / 1000);
        do_record = !p->recorded;
        p->recorded = true;
    }
    pthread_mutex_unlock(&p->mu);
    if (do_record)
        record(e);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    return true;
}

int sbx_exe_wait_done(sbx_exe *e, int timeout_ms)
{
    struct sbx_exe_priv *p = e->priv;
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    while (p->state < EXE_DONE)
        if (pthread_cond_timedwait(&p->cond, &p->mu, &dl) == ETIMEDOUT) {
            rc = p->state < EXE_DONE ? -ETIMEDOUT : 0;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void sbx_exe_stdin_closed(sbx_exe *e)
{
    pthread_mutex_lock(&e->priv->mu);
    e->priv->stdin_open = false;
    pthread_mutex_unlock(&e->priv->mu);
}

int64_t sbx_exe_oom_kills(sbx_box *b)
{
    sbx_exectab *t = tab_of(b);
    sbx_sandbox_stats st;
    if (!t || sbx_sandbox_read_stats(sbx_box_sandbox(b), &st) < 0)
        return -1;
    pthread_mutex_lock(&t->mu);
    int64_t delta = t->oom_seen >= 0 ? (int64_t)st.oom_kills - t->oom_seen : 0;
    t->oom_seen = (int64_t)st.oom_kills;
    pthread_mutex_unlock(&t->mu);
    return delta;
}

/* ---------------------------------------------------------------- lookups */

static sbx_exe *find_by(sbx_box *b, int pid, const char *tag)
{
    sbx_exectab *t = tab_of(b);
    if (!t)
        return NULL;
    sbx_exe *best = NULL;
    pthread_mutex_lock(&t->mu);
    for (size_t i = t->n; i-- > 0;) {
        sbx_exe *e = t->v[i];
        struct sbx_exe_priv *p = e->priv;
        pthread_mutex_lock(&p->mu);
        bool match = tag ? strcmp(e->tag, tag) == 0 : (p->pid == pid && p->pid > 0);
        bool running = p->state == EXE_RUNNING;
        bool ok = p->state == EXE_RUNNING || p->state == EXE_DONE;
        pthread_mutex_unlock(&p->mu);
        if (!match || !ok)
            continue;
        if (running) {
            best = e;
            break;
        }
        if (!best)
            best = e;
    }
    if (best)
        sbx_exe_ref(best);
    pthread_mutex_unlock(&t->mu);
    return best;
}

sbx_exe *sbx_exe_find_pid(sbx_box *b, int pid)
{
    return find_by(b, pid, NULL);
}

sbx_exe *sbx_exe_find_tag(sbx_box *b, const char *tag)
{
    return find_by(b, 0, tag);
}

size_t sbx_exe_list(sbx_box *b, bool include_exited, sbx_exe ***out)
{
    *out = NULL;
    sbx_exectab *t = tab_of(b);
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    sbx_exe **v = t->n ? calloc(t->n, sizeof *v) : NULL;
    size_t n = 0;
    for (size_t i = 0; v && i < t->n; i++) {
        sbx_exe_state s = exe_state(t->v[i]);
        if (s == EXE_STARTING || s == EXE_ABORTED || (s == EXE_DONE && !include_exited))
            continue;
        sbx_exe_ref(t->v[i]);
        v[n++] = t->v[i];
    }
    pthread_mutex_unlock(&t->mu);
    *out = v;
    return n;
}

void sbx_exe_list_free(sbx_exe **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sbx_exe_unref(v[i]);
    free(v);
}

/* ---------------------------------------------------------------- monitor */

void sbx_exe_follow_in_background(sbx_box *b, sbx_exe *e)
{
    (void)b;
    sbx_execmon *m = e->priv->mon;
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 32;
        sbx_exe **nv = realloc(m->v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&m->mu);
            SBX_LOG_ERROR("exec", "cannot follow a background command (out of memory) id=%s", e->id);
            return;
        }
        m->v = nv;
        m->cap = nc;
    }
    sbx_exe_ref(e);
    m->v[m->n++] = e;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

static void *monitor_main(void *arg)
{
    sbx_execmon *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        if (m->n == 0) {
            pthread_cond_wait(&m->cond, &m->mu);
            continue;
        }
        size_t n = m->n;
        sbx_exe **v = malloc(n * sizeof *v);
        if (v) {
            memcpy(v, m->v, n * sizeof *v);
            for (size_t i = 0; i < n; i++)
                sbx_exe_ref(v[i]);
        }
        pthread_mutex_unlock(&m->mu);
        for (size_t i = 0; v && i < n; i++) {
            sbx_exe_pull(v[i]);
            if (sbx_exe_finish(v[i], false, -1)) {
                pthread_mutex_lock(&m->mu);
                for (size_t k = 0; k < m->n; k++)
                    if (m->v[k] == v[i]) {
                        m->v[k] = m->v[--m->n];
                        sbx_exe_unref(v[i]);
                        break;
                    }
                pthread_mutex_unlock(&m->mu);
            }
            sbx_exe_unref(v[i]);
        }
        free(v);
        pthread_mutex_lock(&m->mu);
        if (m->stop)
            break;
        struct timespec dl;
        deadline_in(&dl, 25);
        pthread_cond_timedwait(&m->cond, &m->mu, &dl);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

sbx_execmon *sbx_execmon_new(sbx_outbox *ob)
{
    sbx_execmon *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->ob = ob;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thr, NULL, monitor_main, m) != 0) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cond);
        free(m);
        return NULL;
    }
    return m;
}

void sbx_execmon_free(sbx_execmon *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thr, NULL);
    for (size_t i = 0; i < m->n; i++) {
        sbx_exe_finish(m->v[i], true, -1); /* the sandboxes are gone: record what is known */
        sbx_exe_unref(m->v[i]);
    }
    free(m->v);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    free(m);
}
