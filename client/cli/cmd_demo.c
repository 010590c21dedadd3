/* cmd_demo.c: `sbx demo`, the main job end to end, narrated step by step: health of both
 * services, a new project with metadata, a small Python project generated in a temp dir and
 * uploaded all-or-nothing, commands run (and a non-zero exit observed), a cached rerun answered
 * from the cache, the history the executor recorded, a KV counter, a dev server started with
 * `serve` semantics and a page fetched from its URL with libcurl, then clean-up. Exits 0 only if
 * every step worked. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct demo {
    sbx_client *c;
    char project[64];
    char dir[256];
    int step;
    int failed_rc; /* first failure's exit status */
} demo;

typedef struct buf {
    char *p;
    size_t len;
} buf;

static int collect(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)off;
    buf *b = &((buf *)ud)[s == SBX_STDOUT ? 0 : 1];
    char *np = realloc(b->p, b->len + n + 1);
    if (!np)
        return -1;
    memcpy(np + b->len, d, n);
    b->len += n;
    np[b->len] = 0;
    b->p = np;
    return 0;
}

static void say(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(demo *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "[%d] ", ++d->step);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("    ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

/* Records a failure; returns false so callers can `return fail(...)`. */
static bool failed(demo *d, const char *what, sbx_error *e)
{
    fprintf(stdout, "    FAILED\n");
    fflush(stdout);
    int rc = e ? cli_fail(what, e) : (fprintf(stderr, "sbx: demo: %s\n", what), CLI_EXIT_REQUEST);
    if (!d->failed_rc)
        d->failed_rc = rc ? rc : CLI_EXIT_REQUEST;
    return false;
}

static int write_file(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    if (fclose(f) != 0 || !ok)
        return -1;
    return chmod(path, mode);
}

static bool make_project_tree(demo *d)
{
    snprintf(d->dir, sizeof d->dir, "%s/sbx-demo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(d->dir))
        return false;
    char lib[300];
    snprintf(lib, sizeof lib, "%s/lib", d->dir);
    if (mkdir(lib, 0755) != 0)
        return false;
    return write_file(d->dir, "app.py",
                      "import sys\n"
                      "from lib.greet import greet\n"
                      "print(greet(sys.argv[1] if len(sys.argv) > 1 else 'sandbox'))\n"
                      "print('sum of squares 1..100 =', sum(i * i for i in range(1, 101)))\n",
                      0644) == 0 &&
           write_file(d->dir, "lib/__init__.py", "", 0644) == 0 &&
           write_file(d->dir, "lib/greet.py", "def greet(name):\n    return 'hello, ' + name + '!'\n", 0644) == 0 &&
           write_file(d->dir, "slow.py",
                      "import time\ntime.sleep(1.0)\nprint('an expensive answer: 42')\n", 0644) == 0 &&
           write_file(d->dir, "index.html",
                      "<!doctype html><title>sbx demo</title><h1>hello from an sbx sandbox</h1>\n", 0644) == 0 &&
           write_file(d->dir, "setup.sh", "#!/bin/sh\necho installing: nothing to install\n", 0755) == 0;
}

static void rm_tree(const char *dir)
{
    const char *files[] = {"app.py", "lib/__init__.py", "lib/greet.py", "slow.py", "index.html", "setup.sh"};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/lib/__pycache__", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/lib", dir);
    rmdir(p);
    rmdir(dir);
}

static sbx_error *run(demo *d, const char *const *argv, size_t argc, int64_t cache_ttl, sbx_exec_result *res,
                      buf out[2])
{
    sbx_exec_req r = {.project_id = d->project, .argv = argv, .argc = argc, .cache_ttl_s = cache_ttl,
                      .timeout_ms = 60000};
    memset(out, 0, 2 * sizeof *out);
    return sbx_exec(d->c, &r, NULL, collect, out, res);
}

/* s without its trailing newlines, for inline display (modifies s). */
static const char *chomp(char *s)
{
    if (!s)
        return "";
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static size_t curl_sink(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    size_t len = size * n;
    char *np = realloc(b->p, b->len + len + 1);
    if (!np)
        return 0;
    memcpy(np + b->len, p, len);
    b->len += len;
    np[b->len] = 0;
    b->p = np;
    return len;
}

static bool steps(demo *d)
{
    sbx_error *e;
    /* 1. health */
    say(d, "checking that both services are up");
    for (int svc = 0; svc < 2; svc++) {
        for (size_t i = 0; i < sbx_client_addr_count(d->c, (sbx_service)svc); i++) {
            int st = 0;
            const char *name = svc == SBX_SERVICE_EXECUTOR ? "executor" : "store";
            if ((e = sbx_health_check(d->c, (sbx_service)svc, i, &st)))
                return failed(d, "demo: health", e);
            detail("%s %s: %s", name, sbx_client_addr(d->c, (sbx_service)svc, i), st == 1 ? "SERVING" : "not serving");
            if (st != 1)
                return failed(d, "a service is not SERVING", NULL);
        }
    }

    /* 2. project */
    char rid[37];
    sbx_request_id_new(rid);
    snprintf(d->project, sizeof d->project, "demo-%.8s", rid);
    say(d, "creating project %s with metadata", d->project);
    sbx_field f[] = {{(char *)"purpose", (char *)"sbx demo"}, {(char *)"language", (char *)"python"}};
    sbx_project_update u = {.set = f, .n_set = 2, .check_version = true, .expected_version = 0};
    sbx_project *p = NULL;
    if ((e = sbx_project_update_fields(d->c, d->project, &u, &p)))
        return failed(d, "demo: project set", e);
    detail("version %" PRIu64 ", %zu fields (store %s)", p->version, p->n_fields,
           sbx_client_route(d->c, SBX_SERVICE_STORE, d->project));
    sbx_project_free(p);

    /* 3. upload */
    say(d, "generating a small Python project and uploading it (all-or-nothing)");
    if (!make_project_tree(d))
        return failed(d, "cannot create the local project in a temp dir", NULL);
    sbx_upload_result up;
    if ((e = sbx_upload_dir(d->c, d->project, d->dir, "app", true, NULL, NULL, &up)))
        return failed(d, "demo: setup", e);
    detail("%u files, %" PRIu64 " bytes -> %s (executor %s)", up.files_written, up.bytes_written, up.dest_dir,
           sbx_client_route(d->c, SBX_SERVICE_EXECUTOR, d->project));
    sbx_upload_result_clear(&up);

    /* 4. run */
    say(d, "running: python3 app.py world");
    const char *app[] = {"python3", "app/app.py", "world"};
    sbx_exec_result res;
    buf out[2];
    if ((e = run(d, app, 3, 0, &res, out)))
        return failed(d, "demo: exec", e);
    detail("exit %d in %" PRId64 " ms, stdout:", res.exit_code, res.duration_us / 1000);
    fputs(out[0].p ? out[0].p : "", stdout);
    bool ok = res.exit_code == 0 && out[0].p && strstr(out[0].p, "hello, world!") && strstr(out[0].p, "338350");
    free(out[0].p);
    free(out[1].p);
    sbx_exec_result_clear(&res);
    if (!ok)
        return failed(d, "app.py did not print what was expected", NULL);

    /* 5. a failing command: exit statuses come through */
    say(d, "running a command that fails: sh -c 'echo oops >&2; exit 3'");
    const char *bad[] = {"sh", "-c", "echo oops >&2; exit 3"};
    if ((e = run(d, bad, 3, 0, &res, out)))
        return failed(d, "demo: exec", e);
    detail("exit %d, stderr: %s", res.exit_code, chomp(out[1].p));
    ok = res.exit_code == 3;
    free(out[0].p);
    free(out[1].p);
    sbx_exec_result_clear(&res);
    if (!ok)
        return failed(d, "the failing command did not report exit 3", NULL);

    /* 6. cached rerun */
    say(d, "running a slow command twice with --cache=600");
    const char *slow[] = {"python3", "app/slow.py"};
    int64_t durations[2];
    bool cached[2];
    char *first_out = NULL;
    for (int i = 0; i < 2; i++) {
        int64_t t0 = (int64_t)time(NULL);
        (void)t0;
        struct timespec a0, a1;
        clock_gettime(CLOCK_MONOTONIC, &a0);
        if ((e = run(d, slow, 2, 600, &res, out))) {
            free(first_out);
            return failed(d, "demo: exec --cache", e);
        }
        clock_gettime(CLOCK_MONOTONIC, &a1);
        durations[i] = (a1.tv_sec - a0.tv_sec) * 1000 + (a1.tv_nsec - a0.tv_nsec) / 1000000;
        cached[i] = res.cached;
        detail("run %d: exit %d, cached=%s, %" PRId64 " ms round trip, stdout: %s", i + 1, res.exit_code,
               res.cached ? "true" : "false", durations[i], chomp(out[0].p));
        if (i == 0) {
            first_out = out[0].p;
            /* the executor records a finished command in the store through its durable outbox,
               right after answering: wait until run 1 is there, so run 2 can be answered from it */
            size_t want = 3; /* app.py, the failing command, run 1 */
            bool recorded = false;
            struct timespec w0, w1;
            clock_gettime(CLOCK_MONOTONIC, &w0);
            for (int tries = 0; tries < 400 && !recorded; tries++) {
                sbx_history_page *hp = NULL;
                sbx_history_query q = {.limit = 10};
                if ((e = sbx_history_list(d->c, d->project, &q, &hp))) {
                    free(first_out);
                    sbx_exec_result_clear(&res);
                    free(out[1].p);
                    return failed(d, "demo: history", e);
                }
                recorded = hp->count >= want;
                sbx_history_page_free(hp);
                if (!recorded)
                    usleep(5 * 1000);
            }
            clock_gettime(CLOCK_MONOTONIC, &w1);
            detail("run 1 is in the store's history and cache (%" PRId64 " ms after it finished)",
                   (int64_t)((w1.tv_sec - w0.tv_sec) * 1000 + (w1.tv_nsec - w0.tv_nsec) / 1000000));
            if (!recorded) {
                free(first_out);
                sbx_exec_result_clear(&res);
                free(out[1].p);
                return failed(d, "the executor did not record run 1 in the store within 2 s", NULL);
            }
        } else {
            ok = cached[1] && first_out && out[0].p && strcmp(first_out, out[0].p) == 0;
            free(out[0].p);
        }
        free(out[1].p);
        sbx_exec_result_clear(&res);
    }
    free(first_out);
    if (!ok)
        return failed(d, "the rerun was not answered from the cache with the same output", NULL);

    /* 7. history (recorded by the executor through its outbox: poll briefly) */
    say(d, "reading the project's history, newest first");
    sbx_history_page *h = NULL;
    for (int tries = 0; tries < 50; tries++) {
        sbx_history_query q = {.limit = 20};
        if ((e = sbx_history_list(d->c, d->project, &q, &h)))
            return failed(d, "demo: history", e);
        if (h->count >= 4)
            break;
        sbx_history_page_free(h);
        h = NULL;
        usleep(100 * 1000);
    }
    if (!h)
        return failed(d, "the executor did not record 4 executions in the store within 5 s", NULL);
    for (size_t i = 0; i < h->count; i++) {
        char t[48];
        cli_rfc3339(h->records[i].started_at_ms, t, sizeof t);
        detail("#%" PRIu64 " %s exit %d %s%s", h->records[i].seq, t, h->records[i].exit_code,
               h->records[i].cached ? "[cached] " : "", h->records[i].command);
    }
    sbx_history_page_free(h);

    /* 8. kv */
    say(d, "counting demo runs in the KV space");
    int64_t runs = 0;
    if ((e = sbx_kv_incr(d->c, "sbx-demo:runs", 1, &runs, NULL)))
        return failed(d, "demo: kv incr", e);
    detail("sbx-demo:runs = %" PRId64, runs);

    /* 9. dev server + libcurl */
    say(d, "starting a dev server (python3 -m http.server 8000) and waiting until it answers");
    const char *srv[] = {"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"};
    sbx_dev_server_req sr = {.project_id = d->project, .argv = srv, .argc = 6, .cwd = "app", .port = 8000,
                             .ready_path = "/", .ready_timeout_ms = 20000, .tag = "demo-web"};
    sbx_dev_server *ds = NULL;
    if ((e = sbx_dev_server_start(d->c, &sr, &ds)))
        return failed(d, "demo: serve", e);
    detail("%s (pid %d, ready after %" PRId64 " ms)", ds->url, ds->pid, ds->ready_after_ms);
    say(d, "fetching %sindex.html with libcurl", ds->url);
    char url[600];
    snprintf(url, sizeof url, "%sindex.html", ds->url);
    sbx_dev_server_free(ds);
    CURL *cu = curl_easy_init();
    if (!cu)
        return failed(d, "curl_easy_init failed", NULL);
    buf body = {0};
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(cu, CURLOPT_NOPROXY, "*");
    CURLcode cc = curl_easy_perform(cu);
    long status = 0;
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(cu);
    if (cc != CURLE_OK) {
        free(body.p);
        char msg[1024];
        snprintf(msg, sizeof msg, "fetching %s: %s", url, curl_easy_strerror(cc));
        return failed(d, msg, NULL);
    }
    size_t blen = body.len;
    detail("HTTP %ld, %zu bytes: %s", status, blen, chomp(body.p));
    ok = status == 200 && body.p && strstr(body.p, "hello from an sbx sandbox");
    free(body.p);
    if (!ok)
        return failed(d, "the page did not come back as uploaded", NULL);
    return true;
}

int cmd_demo(cli_args *a, sbx_client *c)
{
    demo d = {.c = c};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bool ok = steps(&d);
    if (d.project[0] && !a->keep) {
        say(&d, "cleaning up (sandbox, project data); --keep leaves them");
        sbx_proc_sel web = {.tag = "demo-web"};
        sbx_error_free(sbx_proc_signal(c, d.project, web, 9));
        sbx_error *e = sbx_sandbox_kill(c, d.project, true, NULL);
        if (e && e->code != SBX_CODE_NOT_FOUND)
            ok = failed(&d, "demo: sandbox kill", e);
        else
            sbx_error_free(e);
        if ((e = sbx_project_delete(c, d.project, NULL)))
            ok = failed(&d, "demo: project delete", e);
    } else if (d.project[0]) {
        detail("kept project %s", d.project);
    }
    if (d.dir[0])
        rm_tree(d.dir);
    curl_global_cleanup();
    fprintf(stdout, ok ? "demo: every step worked\n" : "demo: FAILED\n");
    return ok ? 0 : (d.failed_rc ? d.failed_rc : CLI_EXIT_REQUEST);
}
