/* cmd_watch.c: `sbx watch`: streams file events under a directory of the project's sandbox,
 * one line each (`KIND PATH`, or a JSON object with --json), flushed as they come, until the
 * directory is deleted or the sandbox stops (exit 0), the stream fails, or we are killed. When
 * the watch is in place, "sbx: watching PATH" goes to stderr (scripts wait for it). */
#include <stdio.h>

#include "cli.h"

static const char *const kind_names[] = {
    [SBX_WATCH_READY] = "READY",
    [SBX_WATCH_CREATE] = "CREATE",
    [SBX_WATCH_MODIFY] = "MODIFY",
    [SBX_WATCH_DELETE] = "DELETE",
    [SBX_WATCH_RENAME_FROM] = "RENAME_FROM",
    [SBX_WATCH_RENAME_TO] = "RENAME_TO",
    [SBX_WATCH_OVERFLOW] = "OVERFLOW",
};

typedef struct watch_out {
    bool json;
    char root[4096]; /* the watched directory, from READY (what OVERFLOW asks to re-list) */
} watch_out;

static int on_event(const sbx_watch_event *ev, void *ud)
{
    watch_out *w = ud;
    if (ev->kind == SBX_WATCH_READY) {
        snprintf(w->root, sizeof w->root, "%s", ev->path);
        fprintf(stderr, "sbx: watching %s\n", ev->path);
        return 0;
    }
    /* OVERFLOW carries the watched directory: the tree to list again */
    const char *path = ev->kind == SBX_WATCH_OVERFLOW ? w->root : ev->path;
    if (w->json) {
        fprintf(stdout, "{\"kind\":\"%s\",\"path\":", kind_names[ev->kind]);
        json_cstr(stdout, path);
        fprintf(stdout, ",\"is_dir\":%s}\n", ev->is_dir ? "true" : "false");
    } else {
        fprintf(stdout, "%s %s\n", kind_names[ev->kind], path);
    }
    /* a reader that went away (sbx watch ... | head) ends the watch */
    return fflush(stdout) != 0 || ferror(stdout);
}

static int run_watch(cli_args *a, sbx_client *c)
{
    watch_out w = {.json = a->json};
    sbx_watch_opts o = {.recursive = a->recursive, .coalesce_ms = (uint32_t)a->coalesce_ms};
    sbx_error *e = sbx_watch_dir(c, a->project, a->path, &o, on_event, &w);
    if (e) {
        char what[4200];
        snprintf(what, sizeof what, "watch %s", a->path);
        return cli_fail(what, e);
    }
    return ferror(stdout) ? CLI_EXIT_REQUEST : 0;
}

static const cli_opt watch_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("recursive", 'r', recursive,
                 "subdirectories too, including the ones created later"),
    CLI_OPT_I64("coalesce-ms", 0, coalesce_ms, 1, 10000, "MS", "want milliseconds 1..10000",
                "merge one path's events within MS (default 50; 1 = as they come)"),
    CLI_OPT_END,
};

static int watch_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (cli_need_project(a, e) || cli_npos(e, np, 1, 1, "sbx watch -p PROJ PATH [--recursive]"))
        return -1;
    a->path = pos[0];
    return 0;
}

const cli_command cli_cmd_watch = {
    .name = "watch",
    .brief = "stream file events under a directory",
    .cmd = CMD_WATCH,
    .synopsis = "sbx watch -p PROJ PATH [--recursive] [--coalesce-ms MS] [--json]",
    .summary = "Prints one line per file event under PATH in the project's sandbox: \"KIND "
               "PATH\" with KIND in CREATE, MODIFY, DELETE, RENAME_FROM, RENAME_TO, OVERFLOW "
               "(events were lost: list the directory again; PATH is the watched directory), "
               "or with --json one object {\"kind\",\"path\",\"is_dir\"} per line. Events of one "
               "path are merged within --coalesce-ms. \"sbx: watching DIR\" goes to stderr once "
               "the watch is in place. Ends (exit 0) when the directory is deleted or the "
               "sandbox stops; reconnects after a lost connection (then prints OVERFLOW).",
    .opts = watch_opts,
    .finish = watch_finish,
    .run = run_watch,
};
