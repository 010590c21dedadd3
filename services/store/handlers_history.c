/* handlers_history.c: the History RPCs of sbx.v1.StateStore (AppendExecution,
 * ListExecutions, WatchExecutions) on the engine's sdb_hist_*, and the ExecutionRecord checks
 * and stored form that RecordExecution (handlers_cache.c) shares. Records are stored as packed
 * protobuf (forward compatible) with the server-owned fields (seq, recorded_at) cleared: the
 * engine keeps those and they are filled in on the way out. WatchExecutions streams heap
 * messages freed after each send, so a long watch does not grow the call arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

#define ARGV_MAX 4096
#define ARGV_TOTAL_MAX (256u << 10)
#define TEXT_MAX 4096 /* command, cwd */
#define SHORT_MAX 64  /* sandbox_id, tag */

int sh_check_record(sbx_ctx *ctx, const Sbx__V1__ExecutionRecord *r)
{
    int rc;
    if (!r)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "record: is required");
    const char *rid = r->record_id ? r->record_id : "";
    if ((rc = sh_check_len(ctx, "record.record_id", rid, 128)))
        return rc;
    for (const char *c = rid; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                                 "record.record_id: byte %zu (0x%02x) is not printable ASCII",
                                 (size_t)(c - rid), (unsigned char)*c);
    if ((rc = sh_check_len(ctx, "record.command", r->command, TEXT_MAX)) ||
        (rc = sh_check_len(ctx, "record.cwd", r->cwd, TEXT_MAX)) ||
        (rc = sh_check_len(ctx, "record.sandbox_id", r->sandbox_id, SHORT_MAX)) ||
        (rc = sh_check_len(ctx, "record.tag", r->tag, SHORT_MAX)) ||
        (rc = sh_check_len(ctx, "record.command_key", r->command_key, SDB_COMMAND_KEY_MAX)))
        return rc;
    if (r->n_argv > ARGV_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.argv: %zu entries exceeds the limit of %d", r->n_argv,
                             ARGV_MAX);
    size_t total = 0;
    for (size_t i = 0; i < r->n_argv; i++)
        total += r->argv[i] ? strlen(r->argv[i]) : 0;
    if (total > ARGV_TOTAL_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.argv: %zu bytes in total exceeds the limit of %u bytes", total,
                             ARGV_TOTAL_MAX);
    if (r->stdout.len > SH_OUTPUT_MAX || r->stderr.len > SH_OUTPUT_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.%s: %zu bytes exceeds the limit of %u bytes (the recorder "
                             "keeps the first 1 MiB and sets output_truncated)",
                             r->stdout.len > SH_OUTPUT_MAX ? "stdout" : "stderr",
                             r->stdout.len > SH_OUTPUT_MAX ? r->stdout.len : r->stderr.len,
                             SH_OUTPUT_MAX);
    if (r->started_at_unix_ms < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.started_at_unix_ms: %lld must not be negative",
                             (long long)r->started_at_unix_ms);
    if (r->duration_us < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.duration_us: %lld must not be negative",
                             (long long)r->duration_us);
    return SBX_OK;
}

/* The stored form of a record: server-owned fields cleared, started_at defaulted. */
sdb_slice sh_pack_record(sbx_ctx *ctx, sdb *db, const Sbx__V1__ExecutionRecord *in,
                         int64_t *started)
{
    Sbx__V1__ExecutionRecord r = *in;
    r.project_id = (char *)protobuf_c_empty_string;
    r.seq = 0;
    r.recorded_at_unix_ms = 0;
    if (!r.started_at_unix_ms)
        r.started_at_unix_ms = sdb_now_ms(db);
    if (r.stdout_bytes < r.stdout.len)
        r.stdout_bytes = r.stdout.len;
    if (r.stderr_bytes < r.stderr.len)
        r.stderr_bytes = r.stderr.len;
    *started = r.started_at_unix_ms;
    return sh_pack(ctx, &r.base);
}

/* A stored record back as a message (allocator NULL = heap: free with
 * protobuf_c_message_free_unpacked). */
static Sbx__V1__ExecutionRecord *unpack_record(ProtobufCAllocator *a, const sdb_hist_rec *h,
                                               bool include_output)
{
    Sbx__V1__ExecutionRecord *r =
        sbx__v1__execution_record__unpack(a, h->data.n, (const uint8_t *)h->data.p);
    if (!r)
        return NULL;
    r->seq = h->seq;
    r->recorded_at_unix_ms = h->recorded_ms;
    if (!include_output) {
        r->stdout.len = 0;
        r->stderr.len = 0;
    }
    return r;
}

static size_t record_size(const Sbx__V1__ExecutionRecord *r)
{
    return protobuf_c_message_get_packed_size(&r->base) + 16;
}

/* ---- the RPCs ---- */

typedef struct {
    sh_write w;
    sdb_hist_entry e;
    sdb_hist_result res;
} append_call;

static ProtobufCMessage *append_reply(sh_write *w)
{
    append_call *c = (append_call *)w;
    Sbx__V1__AppendExecutionResponse *r =
        (void *)sbx_ctx_new_msg(w->ctx, &sbx__v1__append_execution_response__descriptor);
    r->seq = c->res.seq;
    r->duplicate = c->res.duplicate;
    return &r->base;
}

int sh_append_execution(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    sdb *db = data;
    const Sbx__V1__AppendExecutionRequest *q = (const void *)req;
    int rc = sh_check_record(ctx, q->record);
    if (rc)
        return rc;
    append_call *c = sbx_ctx_alloc(ctx, sizeof *c);
    c->w = (sh_write){ctx, append_reply};
    int64_t started;
    c->e = (sdb_hist_entry){
        sh_str(q->project_id), sh_str(q->record->record_id), {0}, 0, q->record->exit_code};
    c->e.data = sh_pack_record(ctx, db, q->record, &started);
    c->e.time_ms = started;
    char err[SH_ERRLEN] = "";
    bool async = sdb_async_writes(db);
    rc = async ? sdb_hist_append_async(db, sh_tenant(ctx), &c->e, &c->res, sh_write_done, &c->w,
                                       err, sizeof err)
               : sdb_hist_append(db, sh_tenant(ctx), &c->e, &c->res, err, sizeof err);
    return sh_write_end(&c->w, async, rc, err, resp);
}

typedef struct {
    sbx_ctx *ctx;
    const char *project;
    bool include_output;
    ProtobufCAllocator alloc;
    Sbx__V1__ExecutionRecord **recs;
    size_t n, bytes;
    int rc;
} list_exec_state;

static int list_exec_cb(void *arg, const sdb_hist_rec *h)
{
    list_exec_state *s = arg;
    Sbx__V1__ExecutionRecord *r = unpack_record(&s->alloc, h, s->include_output);
    if (!r) {
        s->rc = sbx_ctx_error(s->ctx, SBX_DATA_LOSS, "history record %llu does not decode",
                              (unsigned long long)h->seq);
        return SBX_DATA_LOSS;
    }
    size_t sz = record_size(r);
    if (s->n > 0 && s->bytes + sz > SBX_STORE_RESPONSE_BUDGET)
        return SDB_PAGE_FULL;
    r->project_id = (char *)s->project;
    s->recs[s->n++] = r;
    s->bytes += sz;
    return 0;
}

int sh_list_executions(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    sdb *db = data;
    const Sbx__V1__ListExecutionsRequest *q = (const void *)req;
    sdb_hist_query hq = {
        .project = sh_str(q->project_id),
        .has_limit = q->limit != 0,
        .limit = q->limit,
        .page_token = sh_str(q->page_token),
        .since_ms = q->since_unix_ms,
        .until_ms = q->until_unix_ms,
    };
    list_exec_state s = {ctx,
                         sbx_ctx_strdup(ctx, q->project_id ? q->project_id : ""),
                         q->include_output,
                         sh_arena_allocator(ctx),
                         NULL,
                         0,
                         0,
                         SBX_OK};
    s.recs = sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof *s.recs);
    sdb_page pg;
    char err[SH_ERRLEN] = "";
    int rc = sdb_hist_list(db, sh_tenant(ctx), &hq, list_exec_cb, &s, &pg, err, sizeof err);
    if (s.rc)
        return s.rc;
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__ListExecutionsResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__list_executions_response__descriptor);
    r->n_records = s.n;
    r->records = s.recs;
    r->next_page_token = sbx_ctx_strdup(ctx, pg.next_token);
    r->limit_applied = (int32_t)pg.applied_limit;
    *resp = &r->base;
    return SBX_OK;
}

typedef struct {
    sbx_ctx *ctx;
    char *project;
    bool include_output;
    int rc;
} watch_state;

static int watch_cb(void *arg, const sdb_hist_rec *h)
{
    watch_state *w = arg;
    Sbx__V1__ExecutionRecord *r = unpack_record(NULL, h, w->include_output);
    if (!r) {
        w->rc = sbx_ctx_error(w->ctx, SBX_DATA_LOSS, "history record %llu does not decode",
                              (unsigned long long)h->seq);
        return SBX_DATA_LOSS;
    }
    /* protobuf_c_message_free_unpacked frees project_id with the heap allocator: swap in our
     * string only for the send */
    char *own = r->project_id;
    r->project_id = w->project;
    int sent = sbx_stream_send(w->ctx, &r->base);
    r->project_id = own;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (sent != 0) {
        w->rc = SBX_CANCELLED;
        return SBX_CANCELLED;
    }
    return 0;
}

int sh_watch_executions(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    (void)resp;
    sdb *db = data;
    const Sbx__V1__WatchExecutionsRequest *q = (const void *)req;
    sdb_slice tenant = sh_tenant(ctx), project = sh_str(q->project_id);
    char err[SH_ERRLEN] = "";
    uint64_t after = 0;
    int rc;
    if (q->from_seq == 0) {
        /* only records appended after the call */
        if ((rc = sdb_hist_last_seq(db, tenant, project, &after, err, sizeof err)))
            return sh_fail(ctx, rc, err);
    } else {
        after = q->from_seq - 1;
    }
    int64_t incarnation = 0;
    if ((rc = sdb_proj_incarnation(db, tenant, project, &incarnation, err, sizeof err)))
        return sh_fail(ctx, rc, err);
    watch_state w = {ctx, sbx_ctx_strdup(ctx, q->project_id), q->include_output, SBX_OK};
    for (;;) {
        /* gRPC cancels the call when its deadline passes: say which it was */
        if (sbx_ctx_remaining_ms(ctx) <= 0)
            return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED, "the deadline passed");
        if (sbx_ctx_cancelled(ctx))
            return sbx_ctx_error(ctx, SBX_CANCELLED, "the watch was cancelled");
        if (sbx_ctx_server_stopping(ctx))
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE,
                                 "the store is shutting down: watch again from seq %llu",
                                 (unsigned long long)after + 1);
        uint64_t ticket = sdb_hist_watch_ticket(db, tenant, project);
        uint64_t last = after;
        rc = sdb_hist_read_after(db, tenant, project, after, 64, watch_cb, &w, &last, err,
                                 sizeof err);
        if (w.rc == SBX_CANCELLED && sbx_ctx_remaining_ms(ctx) <= 0)
            return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED, "the deadline passed");
        if (w.rc)
            return w.rc == SBX_CANCELLED ? sbx_ctx_error(ctx, SBX_CANCELLED, "the client went away")
                                         : w.rc;
        if (rc)
            return sh_fail(ctx, rc, err);
        if (last != after) {
            after = last;
            continue; /* more may be there: read again before sleeping */
        }
        /* nothing new: was the project deleted (or deleted and re-created)? */
        int64_t now_inc = 0;
        if ((rc = sdb_proj_incarnation(db, tenant, project, &now_inc, err, sizeof err)))
            return sh_fail(ctx, rc, err);
        if (incarnation && now_inc != incarnation)
            return sbx_ctx_error(ctx, SBX_NOT_FOUND, "project_id: '%s' was deleted while watching",
                                 w.project);
        incarnation = now_inc;
        int64_t left = sbx_ctx_remaining_ms(ctx);
        int wait = left < SBX_STORE_WATCH_POLL_MS ? (int)left : SBX_STORE_WATCH_POLL_MS;
        if (wait <= 0)
            return sbx_ctx_error(ctx, SBX_DEADLINE_EXCEEDED, "the deadline passed");
        rc = sdb_hist_watch_wait(db, tenant, project, ticket, wait);
        if (rc == SBX_UNAVAILABLE)
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "the store is shutting down");
    }
}
