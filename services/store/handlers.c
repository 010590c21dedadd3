/* handlers.c: the sbx.v1.StateStore RPCs on the storage engine. Each handler validates the
 * proto-level limits the engine does not know (ExecutionRecord fields, printable record ids),
 * converts between protobuf-c messages and engine calls, and passes the engine's status and
 * message through unchanged. History records and cached results are stored as packed protobuf
 * (forward compatible); the server-owned fields (seq, recorded_at, created/expires) live in the
 * engine and are filled in on the way out. Responses come from the call arena; WatchExecutions
 * streams heap messages freed after each send so a long watch does not grow the arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "sbx/v1/store.pb-c.h"

#define ERRLEN 512
#define OUTPUT_MAX (1u << 20)
#define ARGV_MAX 4096
#define ARGV_TOTAL_MAX (256u << 10)
#define TEXT_MAX 4096 /* command, cwd */
#define SHORT_MAX 64  /* sandbox_id, tag */
#define DIR_MAX 4096

static sdb_slice str(const char *s)
{
    return sdb_slice_c(s ? s : "");
}

static int fail(sbx_ctx *ctx, int rc, const char *err)
{
    return sbx_ctx_error(ctx, rc, "%s", err[0] ? err : sbx_status_desc(rc));
}

/* protobuf-c allocations from the call arena (freed with the call) */
static void *arena_alloc(void *data, size_t n)
{
    return sbx_ctx_alloc(data, n ? n : 1);
}
static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static sdb_slice pack(sbx_ctx *ctx, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sbx_ctx_alloc(ctx, n ? n : 1);
    protobuf_c_message_pack(m, buf);
    return sdb_slice_n(buf, n);
}

/* ---- validation of proto-level limits ---- */

static int check_len(sbx_ctx *ctx, const char *field, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "%s: %zu bytes exceeds the limit of %zu bytes", field, n, max);
    return SBX_OK;
}

static int check_record(sbx_ctx *ctx, const Sbx__V1__ExecutionRecord *r)
{
    int rc;
    if (!r)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "record: is required");
    const char *rid = r->record_id ? r->record_id : "";
    if ((rc = check_len(ctx, "record.record_id", rid, 128)))
        return rc;
    for (const char *c = rid; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                                 "record.record_id: byte %zu (0x%02x) is not printable ASCII",
                                 (size_t)(c - rid), (unsigned char)*c);
    if ((rc = check_len(ctx, "record.command", r->command, TEXT_MAX)) ||
        (rc = check_len(ctx, "record.cwd", r->cwd, TEXT_MAX)) ||
        (rc = check_len(ctx, "record.sandbox_id", r->sandbox_id, SHORT_MAX)) ||
        (rc = check_len(ctx, "record.tag", r->tag, SHORT_MAX)) ||
        (rc = check_len(ctx, "record.command_key", r->command_key, SDB_COMMAND_KEY_MAX)))
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
    if (r->stdout.len > OUTPUT_MAX || r->stderr.len > OUTPUT_MAX)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.%s: %zu bytes exceeds the limit of %u bytes (the recorder "
                             "keeps the first 1 MiB and sets output_truncated)",
                             r->stdout.len > OUTPUT_MAX ? "stdout" : "stderr",
                             r->stdout.len > OUTPUT_MAX ? r->stdout.len : r->stderr.len,
                             OUTPUT_MAX);
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
static sdb_slice pack_record(sbx_ctx *ctx, sdb *db, const Sbx__V1__ExecutionRecord *in,
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
    return pack(ctx, &r.base);
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

/* ---- history ---- */

static int h_append(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__AppendExecutionRequest *q = (const void *)req;
    int rc = check_record(ctx, q->record);
    if (rc)
        return rc;
    int64_t started;
    sdb_hist_entry e = {
        str(q->project_id), str(q->record->record_id), {0}, 0, q->record->exit_code};
    e.data = pack_record(ctx, db, q->record, &started);
    e.time_ms = started;
    sdb_hist_result res;
    char err[ERRLEN] = "";
    rc = sdb_hist_append(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &e, &res, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__AppendExecutionResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__append_execution_response__descriptor);
    r->seq = res.seq;
    r->duplicate = res.duplicate;
    *resp = &r->base;
    return SBX_OK;
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

static int h_list_executions(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                             void *data)
{
    sdb *db = data;
    const Sbx__V1__ListExecutionsRequest *q = (const void *)req;
    sdb_hist_query hq = {
        .project = str(q->project_id),
        .has_limit = q->limit != 0,
        .limit = q->limit,
        .page_token = str(q->page_token),
        .since_ms = q->since_unix_ms,
        .until_ms = q->until_unix_ms,
    };
    list_exec_state s = {ctx,
                         sbx_ctx_strdup(ctx, q->project_id ? q->project_id : ""),
                         q->include_output,
                         {arena_alloc, arena_free, ctx},
                         NULL,
                         0,
                         0,
                         SBX_OK};
    s.recs = sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof *s.recs);
    sdb_page pg;
    char err[ERRLEN] = "";
    int rc = sdb_hist_list(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &hq, list_exec_cb, &s, &pg, err,
                           sizeof err);
    if (s.rc)
        return s.rc;
    if (rc)
        return fail(ctx, rc, err);
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

static int h_watch(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    (void)resp;
    sdb *db = data;
    const Sbx__V1__WatchExecutionsRequest *q = (const void *)req;
    sdb_slice tenant = sdb_slice_c(sbx_ctx_tenant(ctx)), project = str(q->project_id);
    char err[ERRLEN] = "";
    uint64_t after = 0;
    int rc;
    if (q->from_seq == 0) {
        /* only records appended after the call */
        if ((rc = sdb_hist_last_seq(db, tenant, project, &after, err, sizeof err)))
            return fail(ctx, rc, err);
    } else {
        after = q->from_seq - 1;
    }
    int64_t incarnation = 0;
    if ((rc = sdb_proj_incarnation(db, tenant, project, &incarnation, err, sizeof err)))
        return fail(ctx, rc, err);
    watch_state w = {ctx, sbx_ctx_strdup(ctx, q->project_id), q->include_output, SBX_OK};
    for (;;) {
        if (sbx_ctx_cancelled(ctx))
            return sbx_ctx_error(ctx, SBX_CANCELLED, "the watch was cancelled");
        if (sbx_ctx_server_stopping(ctx))
            return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "the store is shutting down: watch again from seq %llu",
                                 (unsigned long long)after + 1);
        uint64_t ticket = sdb_hist_watch_ticket(db, tenant, project);
        uint64_t last = after;
        rc = sdb_hist_read_after(db, tenant, project, after, 64, watch_cb, &w, &last, err,
                                 sizeof err);
        if (w.rc)
            return w.rc == SBX_CANCELLED ? sbx_ctx_error(ctx, SBX_CANCELLED, "the client went away")
                                         : w.rc;
        if (rc)
            return fail(ctx, rc, err);
        if (last != after) {
            after = last;
            continue; /* more may be there: read again before sleeping */
        }
        /* nothing new: was the project deleted (or deleted and re-created)? */
        int64_t now_inc = 0;
        if ((rc = sdb_proj_incarnation(db, tenant, project, &now_inc, err, sizeof err)))
            return fail(ctx, rc, err);
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

/* ---- cache ---- */

static int h_get_cached(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    sdb *db = data;
    const Sbx__V1__GetCachedResultRequest *q = (const void *)req;
    sdb_cache_entry e;
    char err[ERRLEN] = "";
    int rc = sdb_cache_get(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->project_id),
                           str(q->command_key), &e, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__GetCachedResultResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__get_cached_result_response__descriptor);
    r->expired = e.expired;
    if (e.found) {
        ProtobufCAllocator a = {arena_alloc, arena_free, ctx};
        Sbx__V1__CachedResult *c = sbx__v1__cached_result__unpack(&a, e.len, e.data);
        if (!c) {
            sdb_cache_entry_clear(&e);
            return sbx_ctx_error(ctx, SBX_DATA_LOSS, "cached result does not decode");
        }
        c->project_id = sbx_ctx_strdup(ctx, q->project_id ? q->project_id : "");
        c->command_key = sbx_ctx_strdup(ctx, q->command_key ? q->command_key : "");
        c->created_at_unix_ms = e.created_ms;
        c->expires_at_unix_ms = e.expires_ms;
        c->seq = e.seq;
        r->found = true;
        r->result = c;
    }
    sdb_cache_entry_clear(&e);
    *resp = &r->base;
    return SBX_OK;
}

static int check_result(sbx_ctx *ctx, const Sbx__V1__CachedResult *c)
{
    if (!c)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "result: is required");
    if (c->stdout.len > OUTPUT_MAX || c->stderr.len > OUTPUT_MAX)
        return sbx_ctx_error(
            ctx, SBX_INVALID_ARGUMENT, "result.%s: %zu bytes exceeds the limit of %u bytes",
            c->stdout.len > OUTPUT_MAX ? "stdout" : "stderr",
            c->stdout.len > OUTPUT_MAX ? c->stdout.len : c->stderr.len, OUTPUT_MAX);
    if (c->duration_us < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "result.duration_us: %lld must not be negative",
                             (long long)c->duration_us);
    return SBX_OK;
}

/* The stored form of a cached result: what the engine keeps itself is cleared. */
static sdb_slice pack_result(sbx_ctx *ctx, Sbx__V1__CachedResult c)
{
    c.project_id = (char *)protobuf_c_empty_string;
    c.command_key = (char *)protobuf_c_empty_string;
    c.created_at_unix_ms = 0;
    c.expires_at_unix_ms = 0;
    c.seq = 0;
    if (c.stdout_bytes < c.stdout.len)
        c.stdout_bytes = c.stdout.len;
    if (c.stderr_bytes < c.stderr.len)
        c.stderr_bytes = c.stderr.len;
    return pack(ctx, &c.base);
}

static int h_put_cached(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    sdb *db = data;
    const Sbx__V1__PutCachedResultRequest *q = (const void *)req;
    int rc = check_result(ctx, q->result);
    if (rc)
        return rc;
    if (q->ttl_s < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "ttl_s: %lld must be 0 (default 3600) or 1..2592000",
                             (long long)q->ttl_s);
    char err[ERRLEN] = "";
    int64_t exp = 0;
    rc = sdb_cache_put(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->project_id),
                       str(q->result->command_key), pack_result(ctx, *q->result), q->ttl_s, &exp,
                       err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__PutCachedResultResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__put_cached_result_response__descriptor);
    r->expires_at_unix_ms = exp;
    *resp = &r->base;
    return SBX_OK;
}

static int h_clear_cache(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sdb *db = data;
    const Sbx__V1__ClearCacheRequest *q = (const void *)req;
    uint64_t n = 0;
    char err[ERRLEN] = "";
    int rc = sdb_cache_clear(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->project_id),
                             str(q->command_key), &n, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__ClearCacheResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__clear_cache_response__descriptor);
    r->whole_project = str(q->command_key).n == 0;
    r->cleared = n;
    *resp = &r->base;
    return SBX_OK;
}

static int h_record(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__RecordExecutionRequest *q = (const void *)req;
    int rc = check_record(ctx, q->record);
    if (rc)
        return rc;
    if (q->cache_ttl_s < 0 || q->cache_ttl_s > 2592000)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "cache_ttl_s: %lld must be 0 (do not cache) or 1..2592000",
                             (long long)q->cache_ttl_s);
    const Sbx__V1__ExecutionRecord *in = q->record;
    if (q->cache_ttl_s > 0 && str(in->command_key).n == 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "record.command_key: must not be empty when cache_ttl_s > 0");
    int64_t started;
    sdb_record_exec x = {.hist = {str(q->project_id), str(in->record_id), {0}, 0, in->exit_code}};
    x.hist.data = pack_record(ctx, db, in, &started);
    x.hist.time_ms = started;
    if (q->cache_ttl_s > 0) {
        Sbx__V1__CachedResult c = SBX__V1__CACHED_RESULT__INIT;
        c.exit_code = in->exit_code;
        c.signal = in->signal;
        c.timed_out = in->timed_out;
        c.output_truncated = in->output_truncated;
        c.stdout = in->stdout;
        c.stderr = in->stderr;
        c.duration_us = in->duration_us;
        c.stdout_bytes = in->stdout_bytes;
        c.stderr_bytes = in->stderr_bytes;
        x.command_key = str(in->command_key);
        x.cache_data = pack_result(ctx, c);
        x.ttl_s = q->cache_ttl_s;
    }
    sdb_hist_result res;
    int64_t exp = 0;
    char err[ERRLEN] = "";
    rc =
        sdb_record_execution(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &x, &res, &exp, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__RecordExecutionResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__record_execution_response__descriptor);
    r->seq = res.seq;
    r->duplicate = res.duplicate;
    r->cache_expires_at_unix_ms = exp;
    *resp = &r->base;
    return SBX_OK;
}

/* ---- projects ---- */

static char *arena_str(sbx_ctx *ctx, sdb_slice s)
{
    char *p = sbx_ctx_alloc(ctx, s.n + 1);
    memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    return p;
}

static Sbx__V1__Project *to_project(sbx_ctx *ctx, const sdb_project *p)
{
    Sbx__V1__Project *r = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__project__descriptor);
    r->project_id = arena_str(ctx, p->id);
    r->n_fields = p->n_fields;
    r->fields = sbx_ctx_alloc(ctx, (p->n_fields ? p->n_fields : 1) * sizeof *r->fields);
    for (size_t i = 0; i < p->n_fields; i++) {
        Sbx__V1__Project__FieldsEntry *f =
            (void *)sbx_ctx_new_msg(ctx, &sbx__v1__project__fields_entry__descriptor);
        f->key = arena_str(ctx, p->fields[i].key);
        f->value = arena_str(ctx, p->fields[i].value);
        r->fields[i] = f;
    }
    r->version = p->version;
    r->created_at_unix_ms = p->created_ms;
    r->updated_at_unix_ms = p->updated_ms;
    r->execution_count = p->execution_count;
    r->last_execution_seq = p->last_seq;
    r->last_execution_at_unix_ms = p->last_execution_ms;
    r->last_exit_code = p->last_exit_code;
    Sbx__V1__RetentionPolicy *ret =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__retention_policy__descriptor);
    ret->max_records = p->retention_max_records;
    ret->max_age_s = p->retention_max_age_s;
    r->retention = ret;
    return r;
}

static int h_get_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         void *data)
{
    sdb *db = data;
    const Sbx__V1__GetProjectRequest *q = (const void *)req;
    sdb_project *p = NULL;
    char err[ERRLEN] = "";
    int rc =
        sdb_proj_get(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->project_id), &p, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    *resp = &to_project(ctx, p)->base;
    sdb_project_free(p);
    return SBX_OK;
}

static int h_update_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                            void *data)
{
    sdb *db = data;
    const Sbx__V1__UpdateProjectRequest *q = (const void *)req;
    sdb_field *set = sbx_ctx_alloc(ctx, (q->n_set_fields ? q->n_set_fields : 1) * sizeof *set);
    for (size_t i = 0; i < q->n_set_fields; i++) {
        set[i].key = str(q->set_fields[i]->key);
        set[i].value = str(q->set_fields[i]->value);
    }
    sdb_slice *rm = sbx_ctx_alloc(ctx, (q->n_remove_fields ? q->n_remove_fields : 1) * sizeof *rm);
    for (size_t i = 0; i < q->n_remove_fields; i++)
        rm[i] = str(q->remove_fields[i]);
    if (q->retention && q->retention->max_age_s < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "retention.max_age_s: %lld must not be negative",
                             (long long)q->retention->max_age_s);
    sdb_proj_patch u = {
        .project = str(q->project_id),
        .set = set,
        .n_set = q->n_set_fields,
        .remove = rm,
        .n_remove = q->n_remove_fields,
        .has_expected_version = q->expected != NULL,
        .expected_version = q->expected ? q->expected->version : 0,
        .has_retention = q->retention != NULL,
        .retention_max_records = q->retention ? q->retention->max_records : 0,
        .retention_max_age_s = q->retention ? q->retention->max_age_s : 0,
    };
    sdb_project *p = NULL;
    char err[ERRLEN] = "";
    int rc = sdb_proj_update(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &u, &p, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    *resp = &to_project(ctx, p)->base;
    sdb_project_free(p);
    return SBX_OK;
}

typedef struct {
    sbx_ctx *ctx;
    Sbx__V1__Project **items;
    size_t n, bytes;
} list_proj_state;

static int list_proj_cb(void *arg, const sdb_project *p)
{
    list_proj_state *s = arg;
    Sbx__V1__Project *m = to_project(s->ctx, p);
    size_t sz = protobuf_c_message_get_packed_size(&m->base) + 16;
    if (s->n > 0 && s->bytes + sz > SBX_STORE_RESPONSE_BUDGET)
        return SDB_PAGE_FULL;
    s->items[s->n++] = m;
    s->bytes += sz;
    return 0;
}

static int h_list_projects(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                           void *data)
{
    sdb *db = data;
    const Sbx__V1__ListProjectsRequest *q = (const void *)req;
    list_proj_state s = {ctx, sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof(Sbx__V1__Project *)), 0, 0};
    sdb_page pg;
    char err[ERRLEN] = "";
    int rc = sdb_proj_list(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->prefix), q->limit != 0,
                           q->limit, str(q->page_token), list_proj_cb, &s, &pg, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__ListProjectsResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__list_projects_response__descriptor);
    r->n_projects = s.n;
    r->projects = s.items;
    r->next_page_token = sbx_ctx_strdup(ctx, pg.next_token);
    *resp = &r->base;
    return SBX_OK;
}

static int h_delete_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                            void *data)
{
    sdb *db = data;
    const Sbx__V1__DeleteProjectRequest *q = (const void *)req;
    bool existed = false;
    char err[ERRLEN] = "";
    int rc = sdb_proj_delete(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->project_id), &existed,
                             err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__DeleteProjectResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__delete_project_response__descriptor);
    r->existed = existed;
    *resp = &r->base;
    return SBX_OK;
}

/* ---- kv ---- */

static int h_kv_set(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvSetRequest *q = (const void *)req;
    sdb_kv_set_req s = {
        .key = str(q->key),
        .value = sdb_slice_n(q->value.data, q->value.len),
        .ttl_s = q->ttl_s,
        .expires_at_ms = q->expires_at_unix_ms,
        .has_expected_version = q->expected != NULL,
        .expected_version = q->expected ? q->expected->version : 0,
    };
    sdb_kv_meta m;
    char err[ERRLEN] = "";
    int rc = sdb_kv_set(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &s, &m, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__KvSetResponse *r = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_set_response__descriptor);
    r->version = m.version;
    r->expires_at_unix_ms = m.expires_ms;
    *resp = &r->base;
    return SBX_OK;
}

static int h_kv_get(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvGetRequest *q = (const void *)req;
    char *v = NULL;
    size_t n = 0;
    sdb_kv_meta m;
    char err[ERRLEN] = "";
    int rc =
        sdb_kv_get(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->key), &v, &n, &m, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    sbx_ctx_defer(ctx, free, v); /* no copy: freed with the call, after packing */
    Sbx__V1__KvGetResponse *r = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_get_response__descriptor);
    r->key = sbx_ctx_strdup(ctx, q->key ? q->key : "");
    r->value.data = (uint8_t *)v;
    r->value.len = n;
    r->version = m.version;
    r->expires_at_unix_ms = m.expires_ms;
    *resp = &r->base;
    return SBX_OK;
}

static int h_kv_delete(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    sdb *db = data;
    const Sbx__V1__KvDeleteRequest *q = (const void *)req;
    bool existed = false;
    char err[ERRLEN] = "";
    int rc =
        sdb_kv_delete(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->key), &existed, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__KvDeleteResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_delete_response__descriptor);
    r->existed = existed;
    *resp = &r->base;
    return SBX_OK;
}

static int h_kv_incr(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvIncrRequest *q = (const void *)req;
    int64_t v = 0;
    sdb_kv_meta m;
    char err[ERRLEN] = "";
    int rc = sdb_kv_incr(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->key), q->delta, &v, &m, err,
                         sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__KvIncrResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_incr_response__descriptor);
    r->value = v;
    r->version = m.version;
    *resp = &r->base;
    return SBX_OK;
}

typedef struct {
    sbx_ctx *ctx;
    Sbx__V1__KvEntry **items;
    size_t n, bytes;
} list_kv_state;

static int list_kv_cb(void *arg, const sdb_kv_item *it)
{
    list_kv_state *s = arg;
    size_t sz = it->key.n + it->value.n + 32;
    if (s->n > 0 && s->bytes + sz > SBX_STORE_RESPONSE_BUDGET)
        return SDB_PAGE_FULL;
    Sbx__V1__KvEntry *e = (void *)sbx_ctx_new_msg(s->ctx, &sbx__v1__kv_entry__descriptor);
    e->key = arena_str(s->ctx, it->key);
    if (it->value.n) {
        e->value.data = sbx_ctx_memdup(s->ctx, it->value.p, it->value.n);
        e->value.len = it->value.n;
    }
    e->version = it->meta.version;
    e->expires_at_unix_ms = it->meta.expires_ms;
    s->items[s->n++] = e;
    s->bytes += sz;
    return 0;
}

static int h_kv_list(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__KvListRequest *q = (const void *)req;
    list_kv_state s = {ctx, sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof(Sbx__V1__KvEntry *)), 0, 0};
    sdb_page pg;
    char err[ERRLEN] = "";
    int rc =
        sdb_kv_list(db, sdb_slice_c(sbx_ctx_tenant(ctx)), str(q->prefix), q->limit != 0, q->limit,
                    str(q->cursor), q->keys_only, list_kv_cb, &s, &pg, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__KvListResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_list_response__descriptor);
    r->n_entries = s.n;
    r->entries = s.items;
    r->next_cursor = sbx_ctx_strdup(ctx, pg.next_token);
    *resp = &r->base;
    return SBX_OK;
}

static int h_kv_flush(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      void *data)
{
    (void)req;
    sdb *db = data;
    uint64_t n = 0;
    char err[ERRLEN] = "";
    int rc = sdb_kv_flush(db, sdb_slice_c(sbx_ctx_tenant(ctx)), &n, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__KvFlushResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__kv_flush_response__descriptor);
    r->deleted = n;
    *resp = &r->base;
    return SBX_OK;
}

/* ---- admin ---- */

static int h_checkpoint(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        void *data)
{
    sdb *db = data;
    const Sbx__V1__CheckpointRequest *q = (const void *)req;
    if (!sbx_ctx_is_service(ctx))
        return sbx_ctx_error(ctx, SBX_PERMISSION_DENIED,
                             "Checkpoint: only a service principal may call it");
    int rc = check_len(ctx, "dir", q->dir, DIR_MAX);
    if (rc)
        return rc;
    uint64_t seq = 0;
    int64_t us = 0;
    char err[ERRLEN] = "";
    rc = sdb_checkpoint(db, str(q->dir), &seq, &us, err, sizeof err);
    if (rc)
        return fail(ctx, rc, err);
    Sbx__V1__CheckpointResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__checkpoint_response__descriptor);
    r->dir = sbx_ctx_strdup(ctx, q->dir);
    r->sequence_number = seq;
    r->took_us = us;
    *resp = &r->base;
    return SBX_OK;
}

/* ---- the method table ---- */

static const sbx_method store_methods[] = {
    {"AppendExecution", SBX_UNARY, 0, h_append},
    {"ListExecutions", SBX_UNARY, SBX_RUN_INLINE, h_list_executions},
    {"WatchExecutions", SBX_SERVER_STREAM, 0, h_watch},
    {"GetCachedResult", SBX_UNARY, SBX_RUN_INLINE, h_get_cached},
    {"PutCachedResult", SBX_UNARY, 0, h_put_cached},
    {"ClearCache", SBX_UNARY, 0, h_clear_cache},
    {"RecordExecution", SBX_UNARY, 0, h_record},
    {"GetProject", SBX_UNARY, SBX_RUN_INLINE, h_get_project},
    {"UpdateProject", SBX_UNARY, 0, h_update_project},
    {"ListProjects", SBX_UNARY, SBX_RUN_INLINE, h_list_projects},
    {"DeleteProject", SBX_UNARY, 0, h_delete_project},
    {"Set", SBX_UNARY, 0, h_kv_set},
    {"Get", SBX_UNARY, SBX_RUN_INLINE, h_kv_get},
    {"Delete", SBX_UNARY, 0, h_kv_delete},
    {"Incr", SBX_UNARY, 0, h_kv_incr},
    {"List", SBX_UNARY, SBX_RUN_INLINE, h_kv_list},
    {"Flush", SBX_UNARY, 0, h_kv_flush},
    {"Checkpoint", SBX_UNARY, SBX_SERVICE_ONLY, h_checkpoint},
};

static sbx_service_def store_service;

const sbx_service_def *sbx_store_service(sdb *db)
{
    store_service.desc = &sbx__v1__state_store__descriptor;
    store_service.methods = store_methods;
    store_service.n_methods = sizeof store_methods / sizeof *store_methods;
    store_service.data = db;
    return &store_service;
}
