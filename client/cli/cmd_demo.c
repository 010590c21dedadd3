/* cmd_demo.c: `sbx demo`, the main job end to end, narrated step by step: health of both
 * services, a new project with metadata, a small Python project generated in a temp dir and
 * uploaded all-or-nothing, commands run (and a non-zero exit observed), a cached rerun answered
 * from the cache, the history the executor recorded, a KV counter, a dev server started with
 * `serve` semantics and a page fetched from its URL with libcurl, network egress (a refusal by
 * the sandbox's filtering proxy, then an `npm install` through it from the registry npm is
 * configured with, allowed by the sandbox's policy; skipped, and said so, when no registry is
 * reachable), then clean-up. Exits 0 only if every step worked. */
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
    char page_url[600]; /* the dev server's index.html (serve -> fetch) */
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
    snprintf(d->dir, sizeof d->dir, "%s/sbx-demo-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
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
           write_file(d->dir, "lib/greet.py",
                      "def greet(name):\n    return 'hello, ' + name + '!'\n", 0644) == 0 &&
           write_file(d->dir, "slow.py",
                      "import time\ntime.sleep(1.0)\nprint('an expensive answer: 42')\n",
                      0644) == 0 &&
           write_file(d->dir, "index.html",
                      "<!doctype html><title>sbx demo</title><h1>hello from an sbx sandbox</h1>\n",
                      0644) == 0 &&
           write_file(d->dir, "setup.sh", "#!/bin/sh\necho installing: nothing to install\n",
                      0755) == 0;
}

static void rm_tree(const char *dir)
{
    const char *files[] = {"app.py",  "lib/__init__.py", "lib/greet.py",
                           "slow.py", "index.html",      "setup.sh"};
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

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs argv once in the project's sandbox; out[0], out[1]: its stdout and stderr. Release with
 * run_done (also after an error). */
static sbx_error *run(demo *d, const char *const *argv, size_t argc, int64_t cache_ttl,
                      sbx_exec_result *res, buf out[2])
{
    sbx_exec_req r = {.project_id = d->project,
                      .argv = argv,
                      .argc = argc,
                      .cache_ttl_s = cache_ttl,
                      .timeout_ms = 60000};
    memset(out, 0, 2 * sizeof *out);
    return sbx_exec(d->c, &r, NULL, collect, out, res);
}

static void run_done(sbx_exec_result *res, buf out[2])
{
    free(out[0].p);
    free(out[1].p);
    sbx_exec_result_clear(res);
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

/* ---- the steps, in order (steps[] below) */
static bool step_health(demo *d)
{
    say(d, "checking that both services are up");
    for (int svc = 0; svc < 2; svc++) {
        const char *name = svc == SBX_SERVICE_EXECUTOR ? "executor" : "store";
        for (size_t i = 0; i < sbx_client_addr_count(d->c, (sbx_service)svc); i++) {
            int st = 0;
            sbx_error *e = sbx_health_check(d->c, (sbx_service)svc, i, &st);
            if (e)
                return failed(d, "demo: health", e);
            detail("%s %s: %s", name, sbx_client_addr(d->c, (sbx_service)svc, i),
                   st == 1 ? "SERVING" : "not serving");
            if (st != 1)
                return failed(d, "a service is not SERVING", NULL);
        }
    }
    return true;
}

static bool step_project(demo *d)
{
    char rid[37];
    sbx_request_id_new(rid);
    snprintf(d->project, sizeof d->project, "demo-%.8s", rid);
    say(d, "creating project %s with metadata", d->project);
    sbx_field f[] = {{(char *)"purpose", (char *)"sbx demo"},
                     {(char *)"language", (char *)"python"}};
    sbx_project_update u = {.set = f, .n_set = 2, .check_version = true, .expected_version = 0};
    sbx_project *p = NULL;
    sbx_error *e = sbx_project_update_fields(d->c, d->project, &u, &p);
    if (e)
        return failed(d, "demo: project set", e);
    detail("version %" PRIu64 ", %zu fields (store %s)", p->version, p->n_fields,
           sbx_client_route(d->c, SBX_SERVICE_STORE, d->project));
    sbx_project_free(p);
    return true;
}

static bool step_upload(demo *d)
{
    say(d, "generating a small Python project and uploading it (all-or-nothing)");
    if (!make_project_tree(d))
        return failed(d, "cannot create the local project in a temp dir", NULL);
    sbx_upload_result up;
    sbx_error *e = sbx_upload_dir(d->c, d->project, d->dir, "app", true, NULL, NULL, &up);
    if (e)
        return failed(d, "demo: setup", e);
    detail("%u files, %" PRIu64 " bytes -> %s (executor %s)", up.files_written, up.bytes_written,
           up.dest_dir, sbx_client_route(d->c, SBX_SERVICE_EXECUTOR, d->project));
    sbx_upload_result_clear(&up);
    return true;
}

static bool step_run_app(demo *d)
{
    say(d, "running: python3 app.py world");
    const char *app[] = {"python3", "app/app.py", "world"};
    sbx_exec_result res;
    buf out[2];
    sbx_error *e = run(d, app, 3, 0, &res, out);
    if (e) {
        run_done(&res, out);
        return failed(d, "demo: exec", e);
    }
    detail("exit %d in %" PRId64 " ms, stdout:", res.exit_code, res.duration_us / 1000);
    fputs(out[0].p ? out[0].p : "", stdout);
    bool ok = res.exit_code == 0 && out[0].p && strstr(out[0].p, "hello, world!") &&
              strstr(out[0].p, "338350");
    run_done(&res, out);
    if (!ok)
        return failed(d, "app.py did not print what was expected", NULL);
    return true;
}

/* Exit statuses come through. */
static bool step_run_failing(demo *d)
{
    say(d, "running a command that fails: sh -c 'echo oops >&2; exit 3'");
    const char *bad[] = {"sh", "-c", "echo oops >&2; exit 3"};
    sbx_exec_result res;
    buf out[2];
    sbx_error *e = run(d, bad, 3, 0, &res, out);
    if (e) {
        run_done(&res, out);
        return failed(d, "demo: exec", e);
    }
    detail("exit %d, stderr: %s", res.exit_code, chomp(out[1].p));
    bool ok = res.exit_code == 3;
    run_done(&res, out);
    if (!ok)
        return failed(d, "the failing command did not report exit 3", NULL);
    return true;
}

/* Run n of the slow command with --cache=600: *out (owned, chomped), *cached. */
static bool slow_run(demo *d, int n, char **out, bool *cached)
{
    const char *slow[] = {"python3", "app/slow.py"};
    sbx_exec_result res;
    buf o[2];
    int64_t t0 = mono_ms();
    sbx_error *e = run(d, slow, 2, 600, &res, o);
    if (e) {
        run_done(&res, o);
        return failed(d, "demo: exec --cache", e);
    }
    detail("run %d: exit %d, cached=%s, %" PRId64 " ms round trip, stdout: %s", n, res.exit_code,
           res.cached ? "true" : "false", mono_ms() - t0, chomp(o[0].p));
    *out = o[0].p;
    *cached = res.cached;
    o[0].p = NULL;
    run_done(&res, o);
    return true;
}

/* The executor records a finished command in the store through its durable outbox, right after
 * answering: waits (up to 2 s) until the store has `want` records, so the rerun can be
 * answered from the cache. */
static bool wait_recorded(demo *d, size_t want)
{
    bool recorded = false;
    int64_t t0 = mono_ms();
    for (int tries = 0; tries < 400 && !recorded; tries++) {
        sbx_history_page *hp = NULL;
        sbx_history_query q = {.limit = 10};
        sbx_error *e = sbx_history_list(d->c, d->project, &q, &hp);
        if (e)
            return failed(d, "demo: history", e);
        recorded = hp->count >= want;
        sbx_history_page_free(hp);
        if (!recorded)
            usleep(5 * 1000);
    }
    detail("run 1 is in the store's history and cache (%" PRId64 " ms after it finished)",
           mono_ms() - t0);
    if (!recorded)
        return failed(d, "the executor did not record run 1 in the store within 2 s", NULL);
    return true;
}

static bool step_cached_rerun(demo *d)
{
    say(d, "running a slow command twice with --cache=600");
    char *first = NULL, *second = NULL;
    bool cached = false;
    /* recorded so far: app.py, the failing command, run 1 */
    if (!slow_run(d, 1, &first, &cached) || !wait_recorded(d, 3) ||
        !slow_run(d, 2, &second, &cached)) {
        free(first);
        return false;
    }
    bool ok = cached && first && second && strcmp(first, second) == 0;
    free(first);
    free(second);
    if (!ok)
        return failed(d, "the rerun was not answered from the cache with the same output", NULL);
    return true;
}

/* Recorded by the executor through its outbox: polls briefly. */
static bool step_history(demo *d)
{
    say(d, "reading the project's history, newest first");
    sbx_history_page *h = NULL;
    for (int tries = 0; tries < 50; tries++) {
        sbx_history_query q = {.limit = 20};
        sbx_error *e = sbx_history_list(d->c, d->project, &q, &h);
        if (e)
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
        const sbx_record *r = &h->records[i];
        char t[48];
        cli_rfc3339(r->started_at_ms, t, sizeof t);
        detail("#%" PRIu64 " %s exit %d %s%s", r->seq, t, r->exit_code,
               r->cached ? "[cached] " : "", r->command);
    }
    sbx_history_page_free(h);
    return true;
}

static bool step_kv(demo *d)
{
    say(d, "counting demo runs in the KV space");
    int64_t runs = 0;
    sbx_error *e = sbx_kv_incr(d->c, "sbx-demo:runs", 1, &runs, NULL);
    if (e)
        return failed(d, "demo: kv incr", e);
    detail("sbx-demo:runs = %" PRId64, runs);
    return true;
}

static bool step_serve(demo *d)
{
    say(d, "starting a dev server (python3 -m http.server 8000) and waiting until it answers");
    const char *srv[] = {"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"};
    sbx_dev_server_req sr = {.project_id = d->project,
                             .argv = srv,
                             .argc = 6,
                             .cwd = "app",
                             .port = 8000,
                             .ready_path = "/",
                             .ready_timeout_ms = 20000,
                             .tag = "demo-web"};
    sbx_dev_server *ds = NULL;
    sbx_error *e = sbx_dev_server_start(d->c, &sr, &ds);
    if (e)
        return failed(d, "demo: serve", e);
    detail("%s (pid %d, ready after %" PRId64 " ms)", ds->url, ds->pid, ds->ready_after_ms);
    snprintf(d->page_url, sizeof d->page_url, "%sindex.html", ds->url);
    sbx_dev_server_free(ds);
    return true;
}

/* GET url into *body (owned); CURLE_OK or the transfer error. */
static CURLcode http_get(const char *url, buf *body, long *status)
{
    CURL *cu = curl_easy_init();
    if (!cu)
        return CURLE_FAILED_INIT;
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(cu, CURLOPT_NOPROXY, "*");
    CURLcode cc = curl_easy_perform(cu);
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(cu);
    return cc;
}

static bool step_fetch(demo *d)
{
    say(d, "fetching %s with libcurl", d->page_url);
    buf body = {0};
    long status = 0;
    CURLcode cc = http_get(d->page_url, &body, &status);
    if (cc == CURLE_FAILED_INIT)
        return failed(d, "curl_easy_init failed", NULL);
    if (cc != CURLE_OK) {
        free(body.p);
        char msg[1024];
        snprintf(msg, sizeof msg, "fetching %s: %s", d->page_url, curl_easy_strerror(cc));
        return failed(d, msg, NULL);
    }
    detail("HTTP %ld, %zu bytes: %s", status, body.len, chomp(body.p));
    bool ok = status == 200 && body.p && strstr(body.p, "hello from an sbx sandbox");
    free(body.p);
    if (!ok)
        return failed(d, "the page did not come back as uploaded", NULL);
    return true;
}

/* The last non-empty line of s (modifies s), for one-line details. */
static const char *last_line(char *s)
{
    chomp(s);
    if (!s || !*s)
        return "";
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

/* Runs a shell string in the sandbox: its exit code (or -1 on an RPC error, reported), and its
 * output (stdout, else stderr) in out (owned by the caller). */
static int shell(demo *d, const char *cmd, char **out)
{
    const char *argv[] = {"/bin/sh", "-c", cmd};
    sbx_exec_result res;
    buf o[2];
    *out = NULL;
    sbx_error *e = run(d, argv, 3, 0, &res, o);
    if (e) {
        run_done(&res, o);
        failed(d, "demo: exec", e);
        return -1;
    }
    int rc = res.signal ? 128 + res.signal : res.exit_code;
    *out = o[0].len ? o[0].p : o[1].p;
    free(o[0].len ? o[1].p : o[0].p);
    o[0].p = o[1].p = NULL;
    run_done(&res, o);
    return rc;
}

/* "https://host[:port]/..." -> "host:port" (the registry's allow_out pattern). */
static bool registry_pattern(const char *url, char *out, size_t len)
{
    bool tls = strncmp(url, "https://", 8) == 0;
    if (!tls && strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + (tls ? 8 : 7);
    size_t n = strcspn(h, "/");
    if (n == 0 || n >= 200 || memchr(h, '@', n))
        return false;
    bool has_port = memchr(h, ':', n) && h[0] != '[';
    snprintf(out, len, "%.*s%s", (int)n, h, has_port ? "" : tls ? ":443" : ":80");
    return true;
}

static bool step_egress(demo *d)
{
    say(d, "network egress: a sandbox reaches only what its policy allows, through the proxy");
    char *out = NULL, pattern[256];
    int rc = shell(d, "command -v npm >/dev/null || exit 3; npm config get registry", &out);
    if (rc < 0)
        return false;
    if (rc != 0 || !registry_pattern(last_line(out), pattern, sizeof pattern)) {
        detail("skipped: %s", rc == 3 ? "npm is not installed on this machine (sandboxes use its "
                                        "/usr)"
                                      : "npm has no usable registry configured");
        free(out);
        return true;
    }
    free(out);
    const char *allow[] = {pattern};
    sbx_sandbox *s = NULL;
    sbx_error *e = sbx_sandbox_set_network(d->c, d->project, allow, 1, NULL, 0, &s);
    if (e && (e->code == SBX_CODE_UNIMPLEMENTED || e->code == SBX_CODE_UNAVAILABLE)) {
        detail("skipped: this executor has no egress proxies (%s)", e->message);
        sbx_error_free(e);
        return true;
    }
    if (e)
        return failed(d, "demo: sandbox net", e);
    sbx_sandbox_free(s);
    detail("policy: allow_out %s (the registry npm uses, nothing else)", pattern);
    if ((rc = shell(d, "curl -sS --max-time 5 http://169.254.169.254/latest/meta-data/ 2>&1",
                    &out)) < 0)
        return false;
    detail("cloud metadata from inside: %s", last_line(out));
    free(out);
    if ((rc = shell(
             d,
             "npm ping --fetch-retries 0 --fetch-timeout 8000 >/tmp/.npm-ping 2>&1 && exit 0; "
             "L=$(grep -E '^npm (error|ERR!)' /tmp/.npm-ping | sed -n 2p); "
             "echo \"${L:-$(tail -n 1 /tmp/.npm-ping)}\"; exit 1",
             &out)) < 0)
        return false;
    if (rc != 0) {
        detail("skipped the install: no npm registry is reachable from this machine (%s)",
               last_line(out));
        free(out);
        return true;
    }
    free(out);
    int64_t t0 = mono_ms();
    rc = shell(d,
               "mkdir -p netdemo && cd netdemo && npm init -y >/dev/null && "
               "npm install --no-audit --no-fund --no-update-notifier is-number@7.0.0 2>&1 && "
               "node -e \"console.log('require(\\'is-number\\')(42) =', "
               "require('is-number')(42))\"",
               &out);
    if (rc < 0)
        return false;
    if (rc != 0) {
        detail("%s", chomp(out));
        free(out);
        return failed(d, "npm install through the proxy failed although the registry answered",
                      NULL);
    }
    detail("npm install is-number@7.0.0: %" PRId64 " ms; %s", mono_ms() - t0, last_line(out));
    free(out);
    if (!(e = sbx_sandbox_get(d->c, d->project, &s))) {
        detail("egress counters: %" PRIu64 " allowed, %" PRIu64 " denied, %" PRIu64 " bytes in",
               s->net_allowed, s->net_denied, s->net_bytes_in);
        sbx_sandbox_free(s);
    }
    sbx_error_free(e);
    return true;
}

static bool (*const steps[])(demo *d) = {
    step_health,  step_project, step_upload, step_run_app, step_run_failing, step_cached_rerun,
    step_history, step_kv,      step_serve,  step_fetch,   step_egress,
};

/* Unless --keep: the dev server, the sandbox and the project's data. */
static bool clean_up(demo *d)
{
    say(d, "cleaning up (sandbox, project data); --keep leaves them");
    bool ok = true;
    sbx_proc_sel web = {.tag = "demo-web"};
    sbx_error_free(sbx_proc_signal(d->c, d->project, web, 9));
    sbx_error *e = sbx_sandbox_kill(d->c, d->project, true, NULL);
    if (e && e->code != SBX_CODE_NOT_FOUND)
        ok = failed(d, "demo: sandbox kill", e);
    else
        sbx_error_free(e);
    if ((e = sbx_project_delete(d->c, d->project, NULL)))
        ok = failed(d, "demo: project delete", e);
    return ok;
}

static int run_demo(cli_args *a, sbx_client *c)
{
    demo d = {.c = c};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof steps / sizeof steps[0]; i++)
        ok = steps[i](&d);
    if (d.project[0] && !a->keep)
        ok = clean_up(&d) && ok;
    else if (d.project[0])
        detail("kept project %s", d.project);
    if (d.dir[0])
        rm_tree(d.dir);
    curl_global_cleanup();
    fprintf(stdout, ok ? "demo: every step worked\n" : "demo: FAILED\n");
    return ok ? 0 : (d.failed_rc ? d.failed_rc : CLI_EXIT_REQUEST);
}

/* ---- the command line */
static const cli_opt demo_opts[] = {
    CLI_OPT_FLAG("keep", 0, keep, "leave the sandbox and the project for a look afterwards"),
    CLI_OPT_END,
};

const cli_command cli_cmd_demo = {
    .name = "demo",
    .brief = "the main job, end to end",
    .cmd = CMD_DEMO,
    .synopsis = "sbx demo [--keep]",
    .summary = "The main job end to end, narrated step by step: health, a project with "
               "metadata, an upload, commands (one failing), a cached rerun, history, a KV "
               "counter, a dev server fetched with libcurl, clean-up. Exit 0 only if every step "
               "worked.",
    .opts = demo_opts,
    .finish = cli_no_positionals,
    .run = run_demo,
};
