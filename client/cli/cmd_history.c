/* cmd_history.c: `sbx history`: a project's executions newest first, `--follow` to stream new
 * ones (WatchExecutions, resumed by seq), and `history add` to record a command run elsewhere
 * (RecordExecution, optionally filling the cache). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void record_json(FILE *f, const sbx_record *r, bool output)
{
    fprintf(f, "{\"seq\":%" PRIu64 ",\"command\":", r->seq);
    json_cstr(f, r->command);
    fprintf(f, ",\"exit_code\":%d,\"duration_ms\":", r->exit_code);
    json_duration_ms(f, r->duration_us);
    fputs(",\"started_at\":", f);
    json_time(f, r->started_at_ms);
    fprintf(f, ",\"cached\":%s", r->cached ? "true" : "false");
    if (output) {
        fputs(",\"stdout\":", f);
        json_str(f, r->out, r->out_len);
        fputs(",\"stderr\":", f);
        json_str(f, r->err, r->err_len);
    }
    fputc('}', f);
}

static void record_text(FILE *f, const sbx_record *r, bool output)
{
    char t[48] = "-";
    if (r->started_at_ms)
        cli_rfc3339(r->started_at_ms, t, sizeof t);
    char status[32];
    if (r->timed_out)
        snprintf(status, sizeof status, "timeout");
    else if (r->signal)
        snprintf(status, sizeof status, "signal %d", r->signal);
    else
        snprintf(status, sizeof status, "exit %d", r->exit_code);
    fprintf(f, "%" PRIu64 "\t%s\t%s\t%" PRId64 ".%03" PRId64 "ms\t%s%s\n", r->seq, t, status,
            r->duration_us / 1000, r->duration_us % 1000, r->cached ? "[cached] " : "", r->command);
    if (output) {
        fwrite(r->out, 1, r->out_len, f);
        fwrite(r->err, 1, r->err_len, f);
    }
}

typedef struct watch_ctx {
    cli_args *a;
} watch_ctx;

static int on_record(const sbx_record *r, void *ud)
{
    watch_ctx *w = ud;
    if (w->a->json) {
        record_json(stdout, r, w->a->include_output);
        fputc('\n', stdout);
    } else {
        record_text(stdout, r, w->a->include_output);
    }
    fflush(stdout);
    return 0;
}

static int history_add(cli_args *a, sbx_client *c, const char *what)
{
    sbx_record_in r = {
        .record_id = a->record_id,
        .argv = (const char *const *)a->argv,
        .argc = a->argc,
        .cwd = a->cwd,
        .exit_code = a->exit_code,
        .out = a->out_text,
        .out_len = a->out_text ? strlen(a->out_text) : 0,
        .err = a->err_text,
        .err_len = a->err_text ? strlen(a->err_text) : 0,
        .duration_us = a->duration_ms * 1000,
        .tag = a->tag,
    };
    uint64_t seq = 0;
    bool dup = false;
    sbx_error *e = sbx_history_record(c, a->project, &r, a->cache_ttl_s, &seq, &dup);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"seq\":%" PRIu64 ",\"duplicate\":%s}\n", seq, dup ? "true" : "false");
    else
        fprintf(stdout, "%" PRIu64 "\n", seq);
    return 0;
}

/* Prints one record of the listing: JSON array elements, JSON Lines (--follow) or text. */
static void print_record(const cli_args *a, const sbx_record *r, bool first)
{
    bool lines = a->follow; /* --follow --json: one object per line (JSON Lines) */
    if (!a->json) {
        record_text(stdout, r, a->include_output);
        return;
    }
    if (!first && !lines)
        fputc(',', stdout);
    record_json(stdout, r, a->include_output);
    if (lines)
        fputc('\n', stdout);
}

/* Prints up to --limit (default 50) records, newest first; *max_seq: the newest seq seen. */
static sbx_error *history_list(cli_args *a, sbx_client *c, uint64_t *max_seq)
{
    int64_t want = a->limit ? a->limit : 50;
    char *token = NULL;
    bool first = true;
    while (want > 0) {
        sbx_history_query q = {.limit = want < 1000 ? (int)want : 1000,
                               .page_token = token,
                               .include_output = a->include_output};
        sbx_history_page *p = NULL;
        sbx_error *e = sbx_history_list(c, a->project, &q, &p);
        free(token);
        token = NULL;
        if (e)
            return e;
        for (size_t i = 0; i < p->count && want > 0; i++, want--) {
            if (p->records[i].seq > *max_seq)
                *max_seq = p->records[i].seq;
            print_record(a, &p->records[i], first);
            first = false;
        }
        if (*p->next_page_token && want > 0)
            token = strdup(p->next_page_token);
        sbx_history_page_free(p);
        if (!token)
            break;
    }
    return NULL;
}

static int run_history(cli_args *a, sbx_client *c)
{
    char what[256];
    snprintf(what, sizeof what, "history%s%s -p %s", *a->sub ? " " : "", a->sub, a->project);
    if (strcmp(a->sub, "add") == 0)
        return history_add(a, c, what);
    bool array = a->json && !a->follow;
    if (array)
        fputc('[', stdout);
    uint64_t max_seq = 0;
    sbx_error *e = history_list(a, c, &max_seq);
    if (array)
        fputs("]\n", stdout);
    if (e)
        return cli_fail(what, e);
    if (!a->follow)
        return 0;
    fflush(stdout);
    watch_ctx w = {.a = a};
    /* from max_seq + 1 (or 1 for an empty history) so nothing appended meanwhile is missed */
    e = sbx_history_watch(c, a->project, max_seq + 1, a->include_output,
                          a->deadline_set ? a->deadline_ms : 0, on_record, &w);
    return e ? cli_fail(what, e) : 0;
}

/* ---- the command line */
static const cli_opt history_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_LIMIT("at most N records (default 50)"),
    CLI_OPT_FLAG("follow", 0, follow, "then stream new records as they are appended"),
    CLI_OPT_FLAG("output", 0, include_output, "with each record's stdout and stderr"),
    CLI_OPT_INT("exit-code", 0, exit_code, 0, 255, "N", "want 0..255", "add: the exit status"),
    CLI_OPT_I64("duration-ms", 0, duration_ms, 0, INT64_MAX / 1000, "MS", "want milliseconds",
                "add: how long it ran"),
    CLI_OPT_STR("stdout", 0, out_text, "S", "add: its stdout"),
    CLI_OPT_STR("stderr", 0, err_text, "S", "add: its stderr"),
    CLI_OPT_STR("record-id", 0, record_id, "ID",
                "add: idempotency id (a replay returns the first seq)"),
    CLI_OPT_I64("cache-ttl", 0, cache_ttl_s, 0, 2592000, "S", "want seconds 0..2592000",
                "add: also cache the result for S seconds"),
    CLI_OPT_CWD("add: its working directory"),
    CLI_OPT_TAG("add: its tag"),
    CLI_OPT_END,
};

/* history is "trailing" for the sake of `history add ... -- CMD`; plain history takes none. */
static int history_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    (void)np;
    if (cli_need_project(a, e))
        return -1;
    bool add = strcmp(a->sub, "add") == 0;
    if (add && a->argc == 0)
        return cli_bad(e, "missing the command (usage: sbx history add -p PROJ [flags] -- CMD...)");
    if (!add && a->argc)
        return cli_bad(e, "unexpected argument \"%s\"", a->argv[0]);
    return 0;
}

const cli_command cli_cmd_history = {
    .name = "history",
    .brief = "a project's executions; record one",
    .cmd = CMD_HISTORY,
    .subs = "?add",
    .trailing = true,
    .synopsis = "sbx history -p PROJ [--limit N] [--follow] [--output]\n"
                "sbx history add -p PROJ [--exit-code N] [--duration-ms MS] [--stdout S]\n"
                "  [--stderr S] [--record-id ID] [--cache-ttl S] [--cwd D] [--tag T] [--] CMD...",
    .summary = "A project's executions, newest first (--follow streams new ones); `add` "
               "records a command run elsewhere and prints its seq.",
    .opts = history_opts,
    .finish = history_finish,
    .run = run_history,
};
