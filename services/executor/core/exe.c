/* exe.c: one execution (see exectab.h): its memory, its start (a process, or a finished
 * execution when the program cannot be executed), a cached answer, its output and stdin (both
 * through its process), and its finish, which turns the process's end into a ProcessExit and
 * records it.
 *
 * Threads: any; an execution's fields are under its mu (exectab_int.h). The handler that
 * started a foreground execution, or the monitor for a background one, finishes it; anyone may
 * read its output. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "exec_cmdkey.h"
#include "exectab_int.h"
#include "status.h"

/* ---------------------------------------------------------------- memory */

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

/* Copies the command of r into e; false when out of memory. */
static bool copy_command(sbx_exe *e, const Sbx__V1__ExecRequest *r)
{
    if (r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_SHELL)
        return (e->shell = strdup(r->shell)) != NULL;
    if (!r->argv)
        return true;
    e->argc = r->argv->n_args;
    e->argv = calloc(e->argc ? e->argc : 1, sizeof *e->argv);
    bool ok = e->argv != NULL;
    for (size_t i = 0; ok && i < e->argc; i++)
        ok = (e->argv[i] = strdup(r->argv->args[i])) != NULL;
    return ok;
}

sbx_exe *sbx__exe_new(sbx_execmon *mon, const sbx_exe_spec *s, sbx_box *b)
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
    p->mon = mon;
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
    bool ok = e->request_id && e->tag && e->cwd && copy_command(e, r);
    e->background = r->background;
    e->pty = r->pty != NULL;
    e->cache_ttl_s = r->background ? 0 : r->cache_ttl_s;
    e->cap = s->cap;
    e->head_limit = s->cap < EXE_HEAD_MAX ? (size_t)s->cap : EXE_HEAD_MAX;
    p->state = EXE_STARTING;
    p->started_ms = sbx_wall_ms();
    p->started_mono_us = sbx_mono_us();
    if (!ok) {
        sbx_exe_unref(e);
        return NULL;
    }
    return e;
}

sbx_exe_state sbx__exe_state(sbx_exe *e)
{
    pthread_mutex_lock(&e->priv->mu);
    sbx_exe_state s = e->priv->state;
    pthread_mutex_unlock(&e->priv->mu);
    return s;
}

/* ---------------------------------------------------------------- start */

/* Moves e to RUNNING with its process (a reference is taken over). */
static void set_running(sbx_exe *e, sbx_proc *proc)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_proc_status st;
    sbx_proc_status_get(proc, &st);
    pthread_mutex_lock(&p->mu);
    p->proc = proc;
    p->pid = st.pid;
    p->state = EXE_RUNNING;
    p->started_ms = sbx_wall_ms();
    p->started_mono_us = sbx_mono_us();
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* The program cannot be executed: a finished execution with 127 / 126 and the reason on
 * stderr. */
static int exec_failed(sbx_exe *e, const char *prog, int rc)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "sbx: %.400s: %s\n", prog, strerror(-rc));
    sbx_proc_done d = {.exit = {.exit_code = rc == -ENOENT ? 127 : 126},
                       .err = msg,
                       .err_len = n > 0 ? (size_t)n : 0};
    sbx_proc *proc = NULL;
    if (sbx_proc_new_done(&d, &proc) < 0)
        return SBX_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&e->priv->mu);
    e->priv->proc = proc;
    e->priv->state = EXE_RUNNING; /* sbx_exe_finish records it */
    pthread_cond_broadcast(&e->priv->cond);
    pthread_mutex_unlock(&e->priv->mu);
    sbx_exe_finish(e, true, -1);
    return SBX_OK;
}

/* The status and message of a failed start other than exec. */
static int start_error(sbx_box *b, sbx_exe *e, int rc, const char *what, char *err, size_t errlen)
{
    if (what && strcmp(what, "cwd") == 0) {
        snprintf(err, errlen, "cwd: %s: %s", e->cwd,
                 rc == -ENOTDIR  ? "not a directory"
                 : rc == -ENOENT ? "does not exist"
                                 : strerror(-rc));
        return SBX_FAILED_PRECONDITION;
    }
    if (what && strcmp(what, "pty") == 0) {
        if (rc == -ENOSPC) {
            snprintf(err, errlen,
                     "pty: the sandbox has the most terminals open at once that its "
                     "devpts allows (256)");
            return SBX_RESOURCE_EXHAUSTED;
        }
        snprintf(err, errlen, "pty: cannot open a terminal in the sandbox: %s", strerror(-rc));
        return SBX_INTERNAL;
    }
    if (rc == -EAGAIN) {
        snprintf(err, errlen, "pids: the sandbox cannot start another process (limits.pids %lld)",
                 (long long)sbx_box_limits(b)->pids);
        return SBX_RESOURCE_EXHAUSTED;
    }
    if (rc == -E2BIG || rc == -EMSGSIZE) {
        snprintf(err, errlen, "argv, env: too large for the sandbox init (%s)", strerror(-rc));
        return SBX_INVALID_ARGUMENT;
    }
    if (rc == -EPIPE || rc == -ECONNRESET) {
        snprintf(err, errlen, "sandbox %s died; retry to start a new one", sbx_box_id(b));
        sbx_box_mark_dead(b, "spawn: init socket broken");
        return SBX_UNAVAILABLE;
    }
    int code = sbx_status_from_errno(rc);
    snprintf(err, errlen, "cannot start the command (%s): %s", what ? what : "spawn",
             strerror(-rc));
    return code == SBX_OK || code == SBX_UNKNOWN ? SBX_INTERNAL : code;
}

int sbx_exe_spawn(sbx_box *b, sbx_exe *e, const sbx_proc_req *req, char *err, size_t errlen)
{
    sbx_proc_req pr = *req;
    pr.keep_head_bytes = e->head_limit;
    sbx_proc *proc = NULL;
    const char *what = NULL;
    int rc = sbx_proc_start(sbx_box_proctab(b), &pr, &proc, &what);
    if (rc == 0) {
        set_running(e, proc);
        return SBX_OK;
    }
    int code;
    if (what && strcmp(what, "exec") == 0) {
        if ((code = exec_failed(e, req->spawn.argv[0], rc)) == SBX_OK)
            return SBX_OK;
        snprintf(err, errlen, "out of memory");
    } else {
        code = start_error(b, e, rc, what, err, errlen);
    }
    pthread_mutex_lock(&e->priv->mu);
    e->priv->state = EXE_ABORTED;
    pthread_cond_broadcast(&e->priv->cond);
    pthread_mutex_unlock(&e->priv->mu);
    sbx__exe_remove(b, e);
    return code;
}

void sbx_exe_set_cached(sbx_exe *e, const Sbx__V1__CachedResult *c)
{
    struct sbx_exe_priv *p = e->priv;
    size_t no = c->stdout.len < e->head_limit ? c->stdout.len : e->head_limit;
    size_t ne = c->stderr.len < e->head_limit ? c->stderr.len : e->head_limit;
    sbx_proc_done d = {.exit = {.exit_code = c->exit_code, .signal = c->signal},
                       .out = c->stdout.data,
                       .out_len = no,
                       .err = c->stderr.data,
                       .err_len = ne};
    sbx_proc *proc = NULL;
    sbx_proc_new_done(&d, &proc); /* out of memory: the answer carries no output */
    pthread_mutex_lock(&p->mu);
    p->proc = proc;
    p->end[0] = c->stdout.len;
    p->end[1] = c->stderr.len;
    p->exit.exit_code = c->exit_code;
    p->exit.signal = c->signal;
    p->exit.timed_out = c->timed_out;
    p->exit.output_truncated =
        c->output_truncated || c->stdout.len > e->cap || c->stderr.len > e->cap;
    p->exit.cached = true;
    p->exit.duration_us = c->duration_us;
    p->exit.stdout_bytes = c->stdout_bytes > c->stdout.len ? c->stdout_bytes : c->stdout.len;
    p->exit.stderr_bytes = c->stderr_bytes > c->stderr.len ? c->stderr_bytes : c->stderr.len;
    p->exit.finished_ms = sbx_wall_ms();
    p->exit_given = true;
    p->pid = 0;
    p->state = EXE_RUNNING;
    pthread_mutex_unlock(&p->mu);
    sbx_exe_finish(e, true, -1);
}

sbx_exe_state sbx_exe_wait_started(sbx_exe *e, int timeout_ms)
{
    struct sbx_exe_priv *p = e->priv;
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms);
    pthread_mutex_lock(&p->mu);
    while (p->state == EXE_STARTING)
        if (pthread_cond_timedwait(&p->cond, &p->mu, &dl) == ETIMEDOUT)
            break;
    sbx_exe_state s = p->state;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* ---------------------------------------------------------------- output, input */

sbx_proc *sbx_exe_proc(sbx_exe *e)
{
    pthread_mutex_lock(&e->priv->mu);
    sbx_proc *p = e->priv->proc;
    if (p)
        sbx_proc_ref(p);
    pthread_mutex_unlock(&e->priv->mu);
    return p;
}

void sbx_exe_info_get(sbx_exe *e, sbx_exe_info *info)
{
    struct sbx_exe_priv *p = e->priv;
    memset(info, 0, sizeof *info);
    pthread_mutex_lock(&p->mu);
    info->state = p->state;
    info->pid = p->pid;
    info->started_ms = p->started_ms;
    info->exit = p->exit;
    info->out_end = p->end[0];
    info->err_end = p->end[1];
    bool given = p->exit_given;
    sbx_proc *proc = p->proc;
    if (proc)
        sbx_proc_ref(proc);
    pthread_mutex_unlock(&p->mu);
    if (!proc) /* nothing is held any more */
        return;
    sbx_proc_status st;
    sbx_proc_status_get(proc, &st);
    sbx_proc_unref(proc);
    info->stdin_open = st.stdin_open && info->state == EXE_RUNNING;
    info->pty = st.pty;
    info->cols = st.cols;
    info->rows = st.rows;
    if (!given) { /* a cached answer's process holds its first bytes only */
        info->out_end = st.out_end;
        info->err_end = st.err_end;
    }
    info->out_oldest = st.out_oldest;
    info->err_oldest = st.err_oldest;
}

size_t sbx_exe_read(sbx_exe *e, int stream, uint64_t *off, void *buf, size_t len)
{
    sbx_proc *p = sbx_exe_proc(e);
    ssize_t n = p ? sbx_proc_read(p, stream, off, buf, len) : 0;
    sbx_proc_unref(p);
    return n > 0 ? (size_t)n : 0;
}

size_t sbx_exe_read_head(sbx_exe *e, int stream, void *buf, size_t len)
{
    if (len > e->head_limit)
        len = e->head_limit;
    size_t n = 0;
    while (n < len) {
        uint64_t off = n;
        size_t k = sbx_exe_read(e, stream, &off, (uint8_t *)buf + n, len - n);
        if (k == 0 || off != n)
            break; /* the end, or the head was not kept (out of memory) */
        n += k;
    }
    return n;
}

ssize_t sbx_exe_write_input(sbx_exe *e, const void *buf, size_t len, int timeout_ms)
{
    if (sbx__exe_state(e) != EXE_RUNNING)
        return -EPIPE;
    sbx_proc *p = sbx_exe_proc(e);
    ssize_t n = p ? sbx_proc_write_stdin(p, buf, len, timeout_ms) : -EPIPE;
    sbx_proc_unref(p);
    return n;
}

void sbx_exe_close_input(sbx_exe *e)
{
    sbx_proc *p = sbx_exe_proc(e);
    if (p)
        sbx_proc_close_stdin(p);
    sbx_proc_unref(p);
}

int sbx_exe_resize(sbx_exe *e, uint16_t cols, uint16_t rows)
{
    if (!e->pty)
        return -ENOTTY;
    if (sbx__exe_state(e) != EXE_RUNNING)
        return -ESRCH;
    sbx_proc *p = sbx_exe_proc(e);
    int rc = p ? sbx_proc_resize(p, cols, rows) : -ESRCH;
    sbx_proc_unref(p);
    return rc;
}

/* ---------------------------------------------------------------- finish */

/* Fills the exit from the process's status (caller holds p->mu; the execution runs). */
static void exit_from_proc(sbx_exe *e, const sbx_proc_status *st, int64_t oom_kills)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_exit x = st->exit;
    if (st->running) /* forced while still running: the sandbox is gone */
        x = (sbx_exit){.pid = st->pid, .signal = SIGKILL, .lost = true};
    p->exit.signal = x.signal;
    p->exit.exit_code = x.signal ? 128 + x.signal : x.exit_code;
    p->exit.timed_out = x.timed_out;
    p->exit.duration_us =
        x.duration_us ? (int64_t)x.duration_us : (int64_t)(sbx_mono_us() - p->started_mono_us);
    p->exit.stdout_bytes = st->out_total > st->out_end ? st->out_total : st->out_end;
    p->exit.stderr_bytes = st->err_total > st->err_end ? st->err_total : st->err_end;
    p->exit.output_truncated = p->exit.stdout_bytes > e->cap || p->exit.stderr_bytes > e->cap;
    p->exit.finished_ms = sbx_wall_ms();
    /* a shell reports its child's SIGKILL as exit status 137 */
    p->exit.oom_killed = (x.signal == SIGKILL || (!x.signal && x.exit_code == 128 + SIGKILL)) &&
                         !x.timed_out && oom_kills > 0;
    p->end[0] = st->out_end;
    p->end[1] = st->err_end;
}

/* Moves a started execution to DONE; returns true when it still has to be recorded. */
static bool mark_done(struct sbx_exe_priv *p)
{
    if (p->state != EXE_RUNNING && p->state != EXE_STARTING)
        return false;
    if (!p->exit.duration_us && !p->exit.cached)
        p->exit.duration_us = (int64_t)(sbx_mono_us() - p->started_mono_us);
    if (!p->exit.finished_ms)
        p->exit.finished_ms = sbx_wall_ms();
    p->state = EXE_DONE;
    p->done_mono_ms = (int64_t)sbx_mono_ms();
    bool todo = !p->recorded;
    p->recorded = true;
    return todo;
}

bool sbx_exe_finish(sbx_exe *e, bool force, int64_t oom_kills)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_proc *proc = sbx_exe_proc(e);
    sbx_proc_status st = {0};
    if (proc)
        sbx_proc_status_get(proc, &st);
    sbx_proc_unref(proc);
    if (proc && !st.finished && !force)
        return false;
    pthread_mutex_lock(&p->mu);
    if (proc && p->state == EXE_RUNNING && !p->exit_given)
        exit_from_proc(e, &st, oom_kills);
    bool do_record = mark_done(p);
    pthread_mutex_unlock(&p->mu);
    if (do_record)
        sbx__exe_record(e);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    return true;
}

int sbx_exe_wait_done(sbx_exe *e, int timeout_ms)
{
    struct sbx_exe_priv *p = e->priv;
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms);
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
