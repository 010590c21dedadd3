/* exe_record.c: the history record of a finished execution (a RecordExecutionRequest: the
 * command as argv and as a shell-quoted display string, the first bytes of its output from its
 * process's head, exit, timing, cacheability), packed once and appended to the outbox, whose
 * sender delivers those bytes to the store unchanged.
 *
 * Threads: whoever finishes the execution (a handler or the monitor). The record borrows the
 * execution's strings; what it allocates is freed before sbx__exe_record returns. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exectab_int.h"
#include "log.h"

#define DISPLAY_MAX 4096 /* bytes of the display command */

/* Writes a in shell quoting into out (room bytes); returns the length it needs. */
static size_t quote_arg(char *out, size_t room, const char *a)
{
    bool plain = a[0] != 0;
    for (const char *s = a; *s && plain; s++)
        plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                strchr("-_./=:,+@%", *s);
    size_t o = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 < room)                                                                          \
            out[o] = (c);                                                                          \
        o++;                                                                                       \
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

/* "cmd 'arg with space'": argv joined with shell quoting, at most DISPLAY_MAX bytes, never
 * ending inside a UTF-8 sequence (malloc'd). */
static char *display_command(const sbx_exe *e)
{
    size_t room = DISPLAY_MAX + 1;
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
    size_t l = strlen(out);
    if (l == room - 1)
        while (l > 0 && ((unsigned char)out[l - 1] & 0xc0) == 0x80)
            out[--l] = 0;
    if (l > 0 && (unsigned char)out[l - 1] >= 0xc0)
        out[--l] = 0;
    return out;
}

/* The first min(end, head_limit) bytes of a stream (malloc'd; NULL with *len 0 when none). */
static uint8_t *read_head(sbx_exe *e, int stream, uint64_t end, size_t *len)
{
    size_t want = end < e->head_limit ? (size_t)end : e->head_limit;
    uint8_t *buf = want ? malloc(want) : NULL;
    *len = buf ? sbx_exe_read_head(e, stream, buf, want) : 0;
    return buf;
}

/* The argv of the record: the shell wrapped as /bin/sh -c (pointers into e; the array is
 * malloc'd). */
static char **record_argv(sbx_exe *e, size_t *n)
{
    static char sh[] = "/bin/sh", dashc[] = "-c";
    size_t na = e->shell ? 3 : e->argc;
    char **v = calloc(na ? na : 1, sizeof *v);
    if (!v) {
        *n = 0;
        return NULL;
    }
    if (e->shell) {
        v[0] = sh;
        v[1] = dashc;
        v[2] = e->shell;
    } else {
        for (size_t i = 0; i < na; i++)
            v[i] = e->argv[i];
    }
    *n = na;
    return v;
}

/* Fills rec's outcome from the execution (its exit, its output head). */
static void record_outcome(sbx_exe *e, Sbx__V1__ExecutionRecord *rec, bool *cacheable)
{
    struct sbx_exe_priv *p = e->priv;
    sbx_exe_info in;
    sbx_exe_info_get(e, &in);
    rec->stdout.data = read_head(e, SBX_STREAM_STDOUT, in.out_end, &rec->stdout.len);
    rec->stderr.data = read_head(e, SBX_STREAM_STDERR, in.err_end, &rec->stderr.len);
    pthread_mutex_lock(&p->mu);
    rec->exit_code = p->exit.exit_code;
    rec->signal = p->exit.signal;
    rec->timed_out = p->exit.timed_out;
    rec->cached = p->exit.cached;
    rec->output_truncated = p->exit.output_truncated || p->exit.stdout_bytes > rec->stdout.len ||
                            p->exit.stderr_bytes > rec->stderr.len;
    rec->started_at_unix_ms = p->started_ms;
    rec->duration_us = p->exit.duration_us;
    rec->stdout_bytes = p->exit.stdout_bytes;
    rec->stderr_bytes = p->exit.stderr_bytes;
    *cacheable = e->cache_ttl_s > 0 && !p->exit.timed_out && !p->exit.cached;
    pthread_mutex_unlock(&p->mu);
}

/* The outcome of an execution that was running when the executor died (exe_journal.c): killed
 * (SIGKILL, 137) with its output lost; the duration is filled in when it is found. */
static void record_killed(sbx_exe *e, Sbx__V1__ExecutionRecord *rec)
{
    struct sbx_exe_priv *p = e->priv;
    rec->exit_code = 128 + SIGKILL;
    rec->signal = SIGKILL;
    rec->output_truncated = true;
    pthread_mutex_lock(&p->mu);
    rec->started_at_unix_ms = p->started_ms;
    pthread_mutex_unlock(&p->mu);
}

uint8_t *sbx__exe_record_pack(sbx_exe *e, bool killed, size_t *len)
{
    Sbx__V1__RecordExecutionRequest req = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    Sbx__V1__ExecutionRecord rec = SBX__V1__EXECUTION_RECORD__INIT;
    req.record = &rec;
    req.project_id = e->project;
    rec.record_id = e->id;
    rec.command = display_command(e);
    rec.argv = record_argv(e, &rec.n_argv);
    rec.cwd = e->cwd;
    rec.sandbox_id = e->sandbox_id;
    rec.tag = e->tag;
    rec.command_key = e->cmdkey;
    bool cacheable = false;
    if (killed)
        record_killed(e, &rec);
    else
        record_outcome(e, &rec, &cacheable);
    req.cache_ttl_s = cacheable && e->cmdkey[0] ? e->cache_ttl_s : 0;
    uint8_t *buf = NULL;
    if (rec.command && (rec.argv || !rec.n_argv)) {
        *len = sbx__v1__record_execution_request__get_packed_size(&req);
        if ((buf = malloc(*len ? *len : 1)))
            sbx__v1__record_execution_request__pack(&req, buf);
    }
    free(rec.command);
    free(rec.argv);
    free(rec.stdout.data);
    free(rec.stderr.data);
    return buf;
}

int sbx__exe_record_queue(sbx_execmon *m, const char *tenant, const char *project,
                          const uint8_t *req, size_t len)
{
    return m->stores ? sbx_stores_append(m->stores, tenant, project, req, len) : -ENOTCONN;
}

void sbx__exe_record(sbx_exe *e)
{
    sbx_execmon *m = e->priv->mon;
    if (!m || !m->stores)
        return;
    size_t len = 0;
    uint8_t *buf = sbx__exe_record_pack(e, false, &len);
    if (!buf) {
        SBX_LOG_ERROR("exec", "cannot build the history record (out of memory) id=%s", e->id);
        return;
    }
    int rc = sbx__exe_record_queue(m, e->tenant, e->project, buf, len);
    if (rc < 0)
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "exec", rc, "cannot queue the history record id=%s", e->id);
    else if (e->background)
        sbx__exe_journal_done(e); /* recorded: nothing left to recover at the next start */
    free(buf);
}
