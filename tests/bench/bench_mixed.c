/* bench_mixed.c: `sbx-bench --scenario mixed`. Many projects (default 64), each doing what an
 * editor or agent does in a loop, through libsbx so every request goes to the instance that
 * owns its project: an uncached exec ("echo mixed-run K", acknowledged ones are written to
 * --acked for the exactly-once check), a cached exec, WriteFile + ReadFile of 1 KiB (content
 * checked), a history page, a project update and KV incr + get. Reports per operation the
 * count, p50/p99 and errors by status; --json prints one object. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_mixed.h"
#include "sbx.h"

enum { OP_EXEC, OP_CACHED, OP_WRITE, OP_READ, OP_HISTORY, OP_PROJECT, OP_KV, OP_N };
static const char *const op_names[OP_N] = {"exec",    "exec_cached", "write_file", "read_file",
                                           "history", "project",     "kv"};
#define N_CODES 17

typedef struct opstat {
    uint32_t *lat_us; /* successful calls only */
    size_t n, cap;
    uint64_t codes[N_CODES];
} opstat;

#define MAX_TARGETS 16
typedef struct target_count {
    char addr[96]; /* "" = a local error (no service answered) */
    uint64_t n;
} target_count;

typedef struct worker {
    const sbx_mixed_opts *o;
    sbx_client *c;
    size_t first; /* projects first, first + stride, ... */
    size_t stride;
    opstat ops[OP_N];
    char *acked; /* "project k\n" lines */
    size_t acked_len, acked_cap;
    target_count failed_at[MAX_TARGETS]; /* failed calls by the address that answered */
    int bad;                             /* an unexpected status was seen */
} worker;

static _Atomic int stop_flag;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "sbx-bench: out of memory\n");
        exit(1);
    }
    return q;
}

/* Accounts one call: its latency when it succeeded, its status either way. Takes err. */
/* Counts a failure against the address that answered (the last slot takes the overflow). */
static void count_target(target_count *t, const char *addr, uint64_t n)
{
    addr = addr ? addr : "";
    int i = 0;
    while (i < MAX_TARGETS - 1 && t[i].n && strcmp(t[i].addr, addr))
        i++;
    if (!t[i].n)
        snprintf(t[i].addr, sizeof t[i].addr, "%s", addr);
    t[i].n += n;
}

static void account(worker *w, int op, int64_t t0, sbx_error *err)
{
    opstat *s = &w->ops[op];
    int code = err ? err->code : 0;
    s->codes[code >= 0 && code < N_CODES ? code : SBX_CODE_UNKNOWN]++;
    if (!err) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 1024;
            s->lat_us = xrealloc(s->lat_us, s->cap * sizeof *s->lat_us);
        }
        int64_t d = now_us() - t0;
        s->lat_us[s->n++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        sbx_error_free(err);
        return;
    }
    count_target(w->failed_at, err->target, 1);
    if (code != SBX_CODE_UNAVAILABLE && code != SBX_CODE_DEADLINE_EXCEEDED) {
        if (!w->bad)
            fprintf(stderr, "sbx-bench: %s: %s: %s\n", op_names[op], err->name, err->message);
        w->bad = 1;
    }
    sbx_error_free(err);
}

static void note_acked(worker *w, const char *project, size_t k)
{
    char line[160];
    int n = snprintf(line, sizeof line, "%s %zu\n", project, k);
    if (w->acked_len + (size_t)n + 1 > w->acked_cap) {
        w->acked_cap = (w->acked_cap + (size_t)n + 1) * 2;
        w->acked = xrealloc(w->acked, w->acked_cap);
    }
    memcpy(w->acked + w->acked_len, line, (size_t)n);
    w->acked_len += (size_t)n;
}

static void do_exec(worker *w, const char *project, size_t k, int cached)
{
    char shell[64];
    if (cached)
        snprintf(shell, sizeof shell, "echo mixed-cached");
    else
        snprintf(shell, sizeof shell, "echo mixed-run %zu", k);
    sbx_exec_req r = {.project_id = project, .shell = shell, .cache_ttl_s = cached ? 3600 : 0};
    sbx_exec_result res = {0};
    int64_t t0 = now_us();
    sbx_error *e = sbx_exec(w->c, &r, NULL, NULL, NULL, &res);
    if (!e && (!res.exited || res.exit_code != 0))
        e = sbx_error_new(SBX_CODE_UNKNOWN, "exit %d", res.exit_code);
    if (!e && !cached)
        note_acked(w, project, k);
    account(w, cached ? OP_CACHED : OP_EXEC, t0, e);
    sbx_exec_result_clear(&res);
}

struct src {
    const char *p;
    size_t len, off;
};
static long src_read(void *buf, size_t cap, void *ud)
{
    struct src *s = ud;
    size_t n = s->len - s->off < cap ? s->len - s->off : cap;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (long)n;
}
static int src_rewind(void *ud)
{
    ((struct src *)ud)->off = 0;
    return 0;
}
struct sink {
    char buf[2048];
    size_t len;
};
static int sink_put(const void *data, size_t len, void *ud)
{
    struct sink *s = ud;
    if (len > sizeof s->buf - s->len)
        return 1;
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

static void do_files(worker *w, const char *project, size_t k)
{
    char body[1024];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + (k + i) % 26);
    struct src s = {body, sizeof body, 0};
    int64_t t0 = now_us();
    sbx_error *e =
        sbx_file_write(w->c, project, "mixed.txt", NULL, src_read, src_rewind, &s, NULL, NULL);
    bool written = !e; /* after a failed write the file may hold the previous loop's bytes */
    account(w, OP_WRITE, t0, e);
    struct sink out = {.len = 0};
    t0 = now_us();
    e = sbx_file_read(w->c, project, "mixed.txt", 0, 0, sink_put, &out, NULL);
    if (!e && written && (out.len != sizeof body || memcmp(out.buf, body, sizeof body)))
        e = sbx_error_new(SBX_CODE_DATA_LOSS, "read back %zu bytes, not what was written", out.len);
    account(w, OP_READ, t0, e);
}

static void do_store_ops(worker *w, const char *project, size_t k)
{
    sbx_history_page *pg = NULL;
    sbx_history_query q = {.limit = 20};
    int64_t t0 = now_us();
    account(w, OP_HISTORY, t0, sbx_history_list(w->c, project, &q, &pg));
    sbx_history_page_free(pg);

    char v[32];
    snprintf(v, sizeof v, "%zu", k);
    sbx_field f = {(char *)"loop", v};
    sbx_project_update u = {.set = &f, .n_set = 1};
    t0 = now_us();
    account(w, OP_PROJECT, t0, sbx_project_update_fields(w->c, project, &u, NULL));

    char key[160];
    snprintf(key, sizeof key, "mixed/%s", project);
    int64_t val = 0;
    sbx_kv_entry *ent = NULL;
    t0 = now_us();
    sbx_error *e = sbx_kv_incr(w->c, key, 1, &val, NULL);
    if (!e)
        e = sbx_kv_get(w->c, key, &ent);
    account(w, OP_KV, t0, e);
    sbx_kv_entry_free(ent);
}

static void *work(void *arg)
{
    worker *w = arg;
    const sbx_mixed_opts *o = w->o;
    for (size_t k = 0; !atomic_load(&stop_flag) && (!o->loops || k < o->loops); k++)
        for (size_t p = w->first; p < o->projects && !atomic_load(&stop_flag); p += w->stride) {
            char project[128];
            snprintf(project, sizeof project, "%s-%03zu", o->prefix, p);
            do_exec(w, project, k, 0);
            do_exec(w, project, k, 1);
            do_files(w, project, k);
            do_store_ops(w, project, k);
        }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const opstat *s, double p)
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->lat_us[i] / 1000.0;
}

/* Merges every worker's stats into ws[0]. */
static void merge(worker *ws, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (int op = 0; op < OP_N; op++) {
            opstat *d = &ws[0].ops[op], *s = &ws[i].ops[op];
            if (s->n) {
                d->lat_us = xrealloc(d->lat_us, (d->n + s->n) * sizeof *d->lat_us);
                memcpy(d->lat_us + d->n, s->lat_us, s->n * sizeof *s->lat_us);
                d->n += s->n;
                d->cap = d->n;
            }
            for (int c = 0; c < N_CODES; c++)
                d->codes[c] += s->codes[c];
        }
    for (size_t i = 1; i < n; i++)
        for (int t = 0; t < MAX_TARGETS && ws[i].failed_at[t].n; t++)
            count_target(ws[0].failed_at, ws[i].failed_at[t].addr, ws[i].failed_at[t].n);
    for (int op = 0; op < OP_N; op++)
        if (ws[0].ops[op].n > 1)
            qsort(ws[0].ops[op].lat_us, ws[0].ops[op].n, sizeof(uint32_t), cmp_u32);
}

static void report(const sbx_mixed_opts *o, const worker *w, double secs, size_t n_exec,
                   size_t n_store)
{
    uint64_t total = 0;
    for (int op = 0; op < OP_N; op++)
        for (int c = 0; c < N_CODES; c++)
            total += w->ops[op].codes[c];
    if (o->json)
        printf("{\"scenario\":\"mixed\",\"projects\":%zu,\"concurrency\":%zu,\"executors\":%zu,"
               "\"stores\":%zu,\"seconds\":%.3f,\"calls\":%" PRIu64 ",\"rps\":%.1f,\"ops\":{",
               o->projects, o->concurrency, n_exec, n_store, secs, total, total / secs);
    else
        printf("mixed: %zu projects, %zu workers, %zu executor(s), %zu store(s), %.1f s: %" PRIu64
               " calls, %.1f calls/s\n%-12s %8s %9s %9s  errors\n",
               o->projects, o->concurrency, n_exec, n_store, secs, total, total / secs, "operation",
               "ok", "p50 ms", "p99 ms");
    for (int op = 0; op < OP_N; op++) {
        const opstat *s = &w->ops[op];
        if (o->json)
            printf("%s\"%s\":{\"ok\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"errors\":{",
                   op ? "," : "", op_names[op], s->n, pct(s, 0.5), pct(s, 0.99));
        else
            printf("%-12s %8zu %9.3f %9.3f ", op_names[op], s->n, pct(s, 0.5), pct(s, 0.99));
        int first = 1;
        for (int c = 1; c < N_CODES; c++)
            if (s->codes[c]) {
                if (o->json)
                    printf("%s\"%s\":%" PRIu64, first ? "" : ",", sbx_code_name(c), s->codes[c]);
                else
                    printf(" %s=%" PRIu64, sbx_code_name(c), s->codes[c]);
                first = 0;
            }
        printf(o->json ? "}}" : "%s\n", first && !o->json ? " -" : "");
    }
    printf(o->json ? "},\"errors_by_target\":{" : "errors by target:");
    for (int t = 0; t < MAX_TARGETS && w->failed_at[t].n; t++)
        printf(o->json ? "%s\"%s\":%" PRIu64 : "%s %s=%" PRIu64, t && o->json ? "," : "",
               *w->failed_at[t].addr ? w->failed_at[t].addr : "local", w->failed_at[t].n);
    printf(o->json ? "}}\n" : "%s\n", w->failed_at[0].n ? "" : " none");
}

static int write_acked(const sbx_mixed_opts *o, worker *ws, size_t n)
{
    if (!o->acked)
        return 0;
    FILE *f = fopen(o->acked, "w");
    if (!f) {
        fprintf(stderr, "sbx-bench: --acked: %s: %s\n", o->acked, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (ws[i].acked_len)
            fwrite(ws[i].acked, 1, ws[i].acked_len, f);
    return fclose(f) ? 1 : 0;
}

int sbx_mixed_run(const sbx_mixed_opts *o)
{
    sbx_config cfg = {.executor = o->executor, .store = o->store, .api_key = o->api_key};
    sbx_client *c = NULL;
    sbx_error *e = sbx_client_new(&cfg, &c);
    if (e) {
        fprintf(stderr, "sbx-bench: %s\n", e->message);
        sbx_error_free(e);
        return 2;
    }
    worker *ws = calloc(o->concurrency, sizeof *ws);
    pthread_t *th = calloc(o->concurrency, sizeof *th);
    if (!ws || !th) {
        fprintf(stderr, "sbx-bench: out of memory\n");
        exit(1);
    }
    int64_t t0 = now_us();
    for (size_t i = 0; i < o->concurrency; i++) {
        ws[i] = (worker){.o = o, .c = c, .first = i, .stride = o->concurrency};
        if (pthread_create(&th[i], NULL, work, &ws[i])) {
            fprintf(stderr, "sbx-bench: pthread_create failed\n");
            exit(1);
        }
    }
    if (!o->loops) {
        struct timespec ts = {(time_t)o->duration_s,
                              (long)((o->duration_s - (double)(time_t)o->duration_s) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
        atomic_store(&stop_flag, 1);
    }
    int bad = 0;
    for (size_t i = 0; i < o->concurrency; i++) {
        pthread_join(th[i], NULL);
        bad |= ws[i].bad;
    }
    double secs = (now_us() - t0) / 1e6;
    bad |= write_acked(o, ws, o->concurrency);
    merge(ws, o->concurrency);
    report(o, &ws[0], secs, sbx_client_addr_count(c, SBX_SERVICE_EXECUTOR),
           sbx_client_addr_count(c, SBX_SERVICE_STORE));
    for (size_t i = 0; i < o->concurrency; i++) {
        for (int op = 0; op < OP_N; op++)
            free(ws[i].ops[op].lat_us);
        free(ws[i].acked);
    }
    free(ws);
    free(th);
    sbx_client_free(c);
    return bad;
}
