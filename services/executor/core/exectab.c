/* exectab.c: the per-sandbox table of executions (see exectab.h): attached to each box by the
 * registry hooks, it deduplicates by request_id, keeps tags unique among running commands,
 * answers lookups by pid and tag, and prunes finished executions (the newest keep their output
 * ring, those with a request_id keep their head for replays, the oldest go).
 *
 * Threads: any (handlers, the monitor, the registry's reaper through sbx_exectab_running).
 * Locks: the table's mu, then an execution's mu (exectab_int.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "exectab_int.h"
#include "status.h"

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

int sbx_exectab_running(void *mon, sbx_box *b)
{
    (void)mon;
    sbx_exectab *t = tab_of(b);
    if (!t)
        return 0;
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        sbx_exe_state s = sbx__exe_state(t->v[i]);
        if (s == EXE_STARTING || s == EXE_RUNNING)
            n++;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* ---------------------------------------------------------------- retention */

/* An old finished execution keeps less: its ring goes; without a request_id (nobody replays
 * it) its whole output goes. */
static void shrink(sbx_exe *e)
{
    struct sbx_exe_priv *p = e->priv;
    pthread_mutex_lock(&p->mu);
    sbx_proc *pr = p->proc;
    if (!e->request_id[0])
        p->proc = NULL;
    pthread_mutex_unlock(&p->mu);
    if (e->request_id[0])
        sbx_proc_drop_ring(pr);
    else
        sbx_proc_unref(pr);
}

/* Drops old finished executions and shrinks all but the newest few (caller holds t->mu). */
static void prune(sbx_exectab *t)
{
    int64_t now = (int64_t)sbx_mono_ms();
    size_t finished = 0;
    for (size_t i = 0; i < t->n; i++)
        if (sbx__exe_state(t->v[i]) >= EXE_DONE)
            finished++;
    size_t seen = 0, w = 0;
    for (size_t i = 0; i < t->n; i++) {
        sbx_exe *e = t->v[i];
        struct sbx_exe_priv *p = e->priv;
        pthread_mutex_lock(&p->mu);
        sbx_exe_state st = p->state;
        int64_t age = now - p->done_mono_ms;
        pthread_mutex_unlock(&p->mu);
        if (st >= EXE_DONE) {
            size_t newer = finished - seen - 1; /* finished executions newer than this one */
            seen++;
            bool keep = st == EXE_DONE && (newer < EXE_KEEP_MIN || age < EXE_KEEP_RECENT_MS) &&
                        newer < EXE_KEEP_MAX;
            if (!keep) {
                sbx_exe_unref(e);
                continue;
            }
            if (newer >= EXE_KEEP_PROCS)
                shrink(e);
        }
        t->v[w++] = e;
    }
    t->n = w;
}

/* ---------------------------------------------------------------- begin */

/* The execution a retry with this request_id means, as a reference; NULL when none, or
 * ALREADY_EXISTS through *code when it names another command (caller holds t->mu). */
static sbx_exe *find_request(sbx_exectab *t, const sbx_exe_spec *spec, int *code, char *err,
                             size_t errlen)
{
    const char *rid = spec->req->request_id;
    *code = SBX_OK;
    if (!rid || !rid[0])
        return NULL;
    for (size_t i = t->n; i-- > 0;) {
        sbx_exe *e = t->v[i];
        if (strcmp(e->request_id, rid) != 0 || sbx__exe_state(e) == EXE_ABORTED)
            continue;
        if (strcmp(e->fingerprint, spec->fingerprint ? spec->fingerprint : "") != 0) {
            snprintf(err, errlen,
                     "request_id: \"%s\" was already used in this sandbox for a "
                     "different command",
                     rid);
            *code = SBX_ALREADY_EXISTS;
            return NULL;
        }
        sbx_exe_ref(e);
        return e;
    }
    return NULL;
}

/* ALREADY_EXISTS when a running command has this tag (caller holds t->mu). */
static int check_tag(sbx_exectab *t, const char *tag, char *err, size_t errlen)
{
    if (!tag || !tag[0])
        return SBX_OK;
    for (size_t i = 0; i < t->n; i++) {
        sbx_exe *e = t->v[i];
        sbx_exe_state s = sbx__exe_state(e);
        if ((s == EXE_STARTING || s == EXE_RUNNING) && strcmp(e->tag, tag) == 0) {
            snprintf(err, errlen, "tag: \"%s\" is used by running process %d", tag, e->priv->pid);
            return SBX_ALREADY_EXISTS;
        }
    }
    return SBX_OK;
}

/* Adds a new execution of spec (caller holds t->mu). */
static int add_new(sbx_exectab *t, sbx_box *b, const sbx_exe_spec *spec, sbx_exe **out, char *err,
                   size_t errlen)
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 32;
        sbx_exe **nv = realloc(t->v, nc * sizeof *nv);
        if (!nv) {
            snprintf(err, errlen, "out of memory");
            return SBX_RESOURCE_EXHAUSTED;
        }
        t->v = nv;
        t->cap = nc;
    }
    sbx_exe *e = sbx__exe_new(t->mon, spec, b);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return SBX_RESOURCE_EXHAUSTED;
    }
    snprintf(e->id, sizeof e->id, "%s.%llu", t->sandbox_id, (unsigned long long)++t->seq);
    t->v[t->n++] = e;
    sbx_exe_ref(e); /* the caller's */
    *out = e;
    return SBX_OK;
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
    int code;
    pthread_mutex_lock(&t->mu);
    *existing = find_request(t, spec, &code, err, errlen);
    if (code == SBX_OK && !*existing)
        code = check_tag(t, spec->req->tag, err, errlen);
    if (code == SBX_OK && !*existing) {
        prune(t);
        code = add_new(t, b, spec, out, err, errlen);
    }
    pthread_mutex_unlock(&t->mu);
    return code;
}

void sbx__exe_remove(sbx_box *b, sbx_exe *e)
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
        sbx_exe_state s = sbx__exe_state(t->v[i]);
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
