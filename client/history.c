/* history.c: a project's execution history on the store: ListExecutions pages, a resumable
 * WatchExecutions stream (reconnects from the last seq + 1 after UNAVAILABLE), and
 * RecordExecution for importing a command run elsewhere (optionally filling the cache). */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/store.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.StateStore/" m

static void record_clear(sbx_record *r)
{
    free(r->project_id);
    free(r->record_id);
    free(r->command);
    for (size_t i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r->cwd);
    free(r->out);
    free(r->err);
    free(r->sandbox_id);
    free(r->tag);
    free(r->command_key);
    memset(r, 0, sizeof *r);
}

static int record_fill(sbx_record *d, const Sbx__V1__ExecutionRecord *s)
{
    memset(d, 0, sizeof *d);
    d->seq = s->seq;
    d->exit_code = s->exit_code;
    d->signal = s->signal;
    d->timed_out = s->timed_out;
    d->output_truncated = s->output_truncated;
    d->cached = s->cached;
    d->started_at_ms = s->started_at_unix_ms;
    d->duration_us = s->duration_us;
    d->stdout_bytes = s->stdout_bytes;
    d->stderr_bytes = s->stderr_bytes;
    d->recorded_at_ms = s->recorded_at_unix_ms;
    d->project_id = sbx__strdup(s->project_id);
    d->record_id = sbx__strdup(s->record_id);
    d->cwd = sbx__strdup(s->cwd);
    d->sandbox_id = sbx__strdup(s->sandbox_id);
    d->tag = sbx__strdup(s->tag);
    d->command_key = sbx__strdup(s->command_key);
    d->out = sbx__memdup(s->stdout.data, s->stdout.len);
    d->out_len = s->stdout.len;
    d->err = sbx__memdup(s->stderr.data, s->stderr.len);
    d->err_len = s->stderr.len;
    if (s->n_argv) {
        d->argv = calloc(s->n_argv, sizeof *d->argv);
        if (!d->argv)
            return -1;
        for (size_t i = 0; i < s->n_argv; i++) {
            d->argv[i] = sbx__strdup(s->argv[i]);
            d->argc++;
            if (!d->argv[i])
                return -1;
        }
    }
    /* records written by older executors may lack the display form: derive it */
    if (s->command && *s->command)
        d->command = sbx__strdup(s->command);
    else
        d->command =
            s->n_argv ? sbx__join_argv((const char *const *)s->argv, s->n_argv) : sbx__strdup("");
    if (!d->project_id || !d->record_id || !d->cwd || !d->sandbox_id || !d->tag ||
        !d->command_key || !d->out || !d->err || !d->command)
        return -1;
    return 0;
}

void sbx_history_page_free(sbx_history_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++)
        record_clear(&p->records[i]);
    free(p->records);
    free(p->next_page_token);
    free(p);
}

sbx_error *sbx_history_list(sbx_client *c, const char *project_id, const sbx_history_query *q,
                            sbx_history_page **out)
{
    *out = NULL;
    sbx_history_query zero = {0};
    if (!q)
        q = &zero;
    Sbx__V1__ListExecutionsRequest req = SBX__V1__LIST_EXECUTIONS_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.limit = q->limit;
    req.page_token = (char *)sbx__nz(q->page_token);
    req.since_unix_ms = q->since_ms;
    req.until_unix_ms = q->until_ms;
    req.include_output = q->include_output;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("ListExecutions"), &req.base,
                       &sbx__v1__list_executions_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__ListExecutionsResponse *r = (void *)resp;
    sbx_history_page *p = calloc(1, sizeof *p);
    bool ok = p != NULL;
    if (ok && r->n_records)
        ok = (p->records = calloc(r->n_records, sizeof *p->records)) != NULL;
    for (size_t i = 0; ok && i < r->n_records; i++) {
        p->count++;
        ok = record_fill(&p->records[i], r->records[i]) == 0;
    }
    if (ok)
        ok = (p->next_page_token = sbx__strdup(r->next_page_token)) != NULL;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!ok) {
        sbx_history_page_free(p);
        return sbx__error_oom();
    }
    *out = p;
    return NULL;
}

/* Where a watch has got to, across resumed attempts. */
typedef struct watch_state {
    const char *project_id;
    uint64_t next; /* the seq to resume from (when have_next) */
    bool have_next;
    sbx_record_fn fn;
    void *ud;
} watch_state;

/* Hands the records of one WatchExecutions stream to fn. Returns the stream's status; *moved
 * when a record arrived; *stopped when fn asked to stop; *e when memory ran out. */
static int watch_records(watch_state *w, sbx_cstream *st, sbx_rpc_result *res, bool *moved,
                         bool *stopped, sbx_error **e)
{
    ProtobufCMessage *m = NULL;
    int rc = 0;
    while (!*stopped && !*e &&
           (rc = sbx_cstream_next(st, &sbx__v1__execution_record__descriptor, &m)) == 1) {
        *moved = true;
        sbx_record rec;
        const Sbx__V1__ExecutionRecord *er = (void *)m;
        int fill = record_fill(&rec, er);
        w->next = er->seq + 1;
        w->have_next = true;
        if (fill == 0 && !*rec.project_id) {
            free(rec.project_id);
            rec.project_id = sbx__strdup(w->project_id);
        }
        *stopped = fill == 0 && w->fn(&rec, w->ud) != 0;
        record_clear(&rec);
        protobuf_c_message_free_unpacked(m, NULL);
        if (fill != 0)
            *e = sbx__error_oom();
    }
    int code = sbx_cstream_finish(st, *e ? NULL : res);
    return rc < 0 ? SBX_CODE_INTERNAL : code;
}

sbx_error *sbx_history_watch(sbx_client *c, const char *project_id, uint64_t from_seq,
                             bool include_output, int64_t deadline_ms, sbx_record_fn fn, void *ud)
{
    size_t shard = sbx__shard_for(c, SBX_SERVICE_STORE, project_id);
    sbx__shard *s = &c->shards[SBX_SERVICE_STORE][shard];
    int64_t deadline_abs = deadline_ms > 0 ? sbx__mono_ms() + deadline_ms : 0;
    watch_state w = {
        .project_id = project_id, .next = from_seq, .have_next = from_seq > 0, .fn = fn, .ud = ud};
    for (int attempt = 1;; attempt++) {
        Sbx__V1__WatchExecutionsRequest req = SBX__V1__WATCH_EXECUTIONS_REQUEST__INIT;
        req.project_id = (char *)sbx__nz(project_id);
        req.from_seq = w.have_next ? w.next : 0;
        req.include_output = include_output;
        int64_t left = deadline_abs ? deadline_abs - sbx__mono_ms() : 0;
        if (deadline_abs && left <= 0)
            return sbx_error_new(SBX_CODE_DEADLINE_EXCEEDED, "deadline passed while watching");
        sbx_cstream *st = NULL;
        sbx_rpc_result res = {0};
        int code = sbx_call_server_stream(s->ch, M("WatchExecutions"), &req.base, left, &st, &res);
        if (code != SBX_CODE_OK) {
            sbx_error *e = sbx__error_rpc(&res, code, s->addr);
            sbx_rpc_result_clear(&res);
            return e;
        }
        bool moved = false, stopped = false;
        sbx_error *e = NULL;
        code = watch_records(&w, st, &res, &moved, &stopped, &e);
        if (e || stopped || code == SBX_CODE_OK) { /* OK: the server ended the stream */
            sbx_rpc_result_clear(&res);
            return e;
        }
        if (moved)
            attempt = 0; /* progress was made: a fresh retry budget */
        if (!sbx__stream_retry(c, &res, code, s->addr, true, attempt ? attempt : 1, deadline_abs,
                               &e))
            return e;
    }
}

sbx_error *sbx_history_record(sbx_client *c, const char *project_id, const sbx_record_in *r,
                              int64_t cache_ttl_s, uint64_t *seq, bool *duplicate)
{
    if (seq)
        *seq = 0;
    if (duplicate)
        *duplicate = false;
    Sbx__V1__ExecutionRecord rec = SBX__V1__EXECUTION_RECORD__INIT;
    Sbx__V1__RecordExecutionRequest req = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    char *joined = NULL;
    char key[65];
    rec.record_id = (char *)sbx__nz(r->record_id);
    if (r->command)
        rec.command = (char *)r->command;
    else
        rec.command = joined = sbx__join_argv(r->argv, r->argc);
    if (!rec.command)
        return sbx__error_oom();
    rec.n_argv = r->argc;
    rec.argv = (char **)r->argv;
    rec.cwd = (char *)sbx__nz(r->cwd);
    rec.exit_code = r->exit_code;
    rec.signal = r->signal;
    rec.timed_out = r->timed_out;
    rec.output_truncated = r->output_truncated;
    rec.stdout.data = (uint8_t *)r->out;
    rec.stdout.len = r->out ? r->out_len : 0;
    rec.stderr.data = (uint8_t *)r->err;
    rec.stderr.len = r->err ? r->err_len : 0;
    rec.stdout_bytes = rec.stdout.len;
    rec.stderr_bytes = rec.stderr.len;
    rec.started_at_unix_ms = r->started_at_ms;
    rec.duration_us = r->duration_us;
    rec.sandbox_id = (char *)sbx__nz(r->sandbox_id);
    rec.tag = (char *)sbx__nz(r->tag);
    if (r->command_key)
        rec.command_key = (char *)r->command_key;
    else {
        sbx_command_key(r->argv, r->argc, NULL, r->cwd, NULL, 0, NULL, 0, key);
        rec.command_key = key;
    }
    req.project_id = (char *)sbx__nz(project_id);
    req.record = &rec;
    req.cache_ttl_s = cache_ttl_s;
    ProtobufCMessage *resp = NULL;
    bool idem = r->record_id && *r->record_id;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("RecordExecution"), &req.base,
                       &sbx__v1__record_execution_response__descriptor, &resp, idem);
    free(joined);
    if (e)
        return e;
    Sbx__V1__RecordExecutionResponse *rr = (void *)resp;
    if (seq)
        *seq = rr->seq;
    if (duplicate)
        *duplicate = rr->duplicate;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}
