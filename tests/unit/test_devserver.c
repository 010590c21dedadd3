/* test_devserver.c: dev-server readiness. The StartDevServer sequence against real commands in a
 * real sandbox (ready at once, a slow starter, one that never listens, one that exits early,
 * tag reuse, keep_on_failure), and sbx_devserver_wait's own rules with a fake process (cancel,
 * backoff, a host-side server that answers 500), plus URL/path validation. */
#include "test_portfwd_env.c"

#include <signal.h>

#include "status.h"

static sbx_devserver_req dev_req(env *e, const sbx_proc_req *pr, uint16_t port)
{
    return (sbx_devserver_req){.procs = e->pt,
                               .fwd = e->fwd,
                               .key = e->id,
                               .init_pid = sbx_sandbox_init_pid(e->sb),
                               .proc = pr,
                               .port = port};
}

static bool proc_running(env *e, int pid)
{
    sbx_proc *p = sbx_proc_find_pid(e->pt, pid);
    if (!p)
        return false;
    sbx_proc_status st;
    sbx_proc_status_get(p, &st);
    sbx_proc_unref(p);
    return st.running;
}

/* python http.server: ready, URL answers, pid reported. */
static void test_start_http_server(void **state)
{
    env *e = *state;
    const char *argv[] = {"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}, .tag = "web"};
    sbx_devserver_req rq = dev_req(e, &pr, 8000);
    sbx_devserver_result *r = calloc(1, sizeof *r);
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_OK);
    assert_int_equal(r->status, SBX_OK);
    assert_int_equal(r->wait.outcome, SBX_DEV_READY);
    assert_int_equal(r->wait.http_status, 200);
    assert_true(r->pid > 1);
    assert_false(r->reused);
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%u/", (unsigned)r->host_port);
    assert_string_equal(r->url, want);
    hash64 h;
    assert_int_equal(http_get_hash(r->host_port, "/", &h), 200);
    fprintf(stderr, "http.server ready after %u ms, %u probes\n", r->wait.elapsed_ms,
            r->wait.probes);

    /* same tag while it runs: the same process, no new one */
    int pid = r->pid;
    uint16_t hp = r->host_port;
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_OK);
    assert_true(r->reused);
    assert_int_equal(r->pid, pid);
    assert_int_equal(r->host_port, hp);
    assert_true(r->wait.elapsed_ms < 200);
    free(r);
}

/* sleep 2, then serve: waited for, and not much longer than needed. */
static void test_slow_starter(void **state)
{
    env *e = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "echo warming up; sleep 2; exec python3 -m http.server 8100 "
                          "--bind 127.0.0.1",
                          NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 8100);
    rq.ready_path = "/ready?probe=1";
    rq.ready_timeout_ms = 10000;
    sbx_devserver_result *r = calloc(1, sizeof *r);
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_OK);
    assert_int_equal(r->wait.outcome, SBX_DEV_READY);
    assert_int_equal(r->wait.http_status, 404); /* any status code counts */
    assert_true(r->wait.elapsed_ms >= 2000);
    assert_true(r->wait.elapsed_ms < 3500);
    fprintf(stderr, "slow starter ready after %u ms, %u probes\n", r->wait.elapsed_ms,
            r->wait.probes);
    assert_true(proc_running(e, r->pid));
    free(r);
}

/* Never listens: DEADLINE_EXCEEDED within the ready timeout, output in the message, killed. */
static void test_never_listens(void **state)
{
    env *e = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "echo compiling assets; echo 'error: port 8200 is busy' >&2; "
                          "exec sleep 60",
                          NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 8200);
    rq.ready_timeout_ms = 1500;
    sbx_devserver_result *r = calloc(1, sizeof *r);
    uint64_t t0 = ms_now();
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_DEADLINE_EXCEEDED);
    uint64_t dt = ms_now() - t0;
    assert_int_equal(r->wait.outcome, SBX_DEV_TIMEOUT);
    assert_true(r->wait.elapsed_ms >= 1500);
    assert_true(dt < 2500);
    assert_true(r->killed);
    assert_non_null(strstr(r->message, "not ready on port 8200 within"));
    assert_non_null(strstr(r->message, "error: port 8200 is busy"));
    assert_non_null(strstr(r->message, "killed"));
    fprintf(stderr, "never listens: %llu ms; message: %s\n", (unsigned long long)dt, r->message);
    sbx_proc *p = sbx_proc_find_pid(e->pt, r->pid);
    assert_non_null(p);
    assert_int_equal(sbx_proc_wait_finished(p, 3000), 0);
    sbx_proc_unref(p);
    free(r);
}

/* keep_on_failure: same timeout, process left running. */
static void test_keep_on_failure(void **state)
{
    env *e = *state;
    const char *argv[] = {"sleep", "60", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 8300);
    rq.ready_timeout_ms = 300;
    rq.keep_on_failure = true;
    sbx_devserver_result *r = calloc(1, sizeof *r);
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_DEADLINE_EXCEEDED);
    assert_false(r->killed);
    assert_non_null(strstr(r->message, "left running"));
    assert_true(proc_running(e, r->pid));
    free(r);
}

/* Exits before it is ready: FAILED_PRECONDITION with the exit code and its stderr, quickly. */
static void test_exits_early(void **state)
{
    env *e = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "echo starting; echo 'SyntaxError: unexpected token' >&2; exit 3", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 8400);
    rq.ready_timeout_ms = 20000;
    sbx_devserver_result *r = calloc(1, sizeof *r);
    uint64_t t0 = ms_now();
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_FAILED_PRECONDITION);
    uint64_t dt = ms_now() - t0;
    assert_int_equal(r->wait.outcome, SBX_DEV_EXITED);
    assert_int_equal(r->wait.exit.exit_code, 3);
    assert_true(dt < 1000);
    assert_non_null(strstr(r->message, "exited with code 3"));
    assert_non_null(strstr(r->message, "SyntaxError: unexpected token"));
    fprintf(stderr, "exits early: %llu ms; message: %s\n", (unsigned long long)dt, r->message);

    /* killed by a signal */
    const char *argv2[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};
    pr.spawn.argv = argv2;
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_FAILED_PRECONDITION);
    assert_int_equal(r->wait.exit.signal, SIGSEGV);
    assert_non_null(strstr(r->message, "signal 11"));

    /* a program that does not exist: 127 */
    const char *argv3[] = {"no-such-dev-server", NULL};
    pr.spawn.argv = argv3;
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(r->message, "127"));
    free(r);
}

/* A parent that daemonises its server and exits 0 counts as ready (the last probe answers). */
static void test_daemonised_server(void **state)
{
    env *e = *state;
    const char *argv[] = {"/bin/sh", "-c",
                          "python3 -m http.server 8500 --bind 127.0.0.1 >/dev/null 2>&1 & "
                          "sleep 1; exit 0",
                          NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 8500);
    rq.ready_timeout_ms = 5000;
    sbx_devserver_result *r = calloc(1, sizeof *r);
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_OK);
    assert_int_equal(r->wait.outcome, SBX_DEV_READY);
    free(r);
}

static void test_bad_arguments(void **state)
{
    env *e = *state;
    const char *argv[] = {"true", NULL};
    sbx_proc_req pr = {.spawn = {.argv = argv}};
    sbx_devserver_req rq = dev_req(e, &pr, 0);
    sbx_devserver_result *r = calloc(1, sizeof *r);
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(r->message, "port"));
    rq.port = 80;
    rq.ready_path = "no-slash";
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(r->message, "ready_path"));
    rq.ready_path = "/";
    rq.ready_timeout_ms = 600001;
    assert_int_equal(sbx_devserver_start(&rq, r), SBX_INVALID_ARGUMENT);
    assert_non_null(strstr(r->message, "ready_timeout_ms"));
    assert_int_equal(r->pid, 0);
    free(r);
}

/* ---- sbx_devserver_wait alone (no sandbox) ------------------------------------------------ */

typedef struct {
    int calls;
    int exit_after;   /* report an exit on this call (0 = never) */
    int cancel_after; /* cancel on this call (0 = never) */
    int pauses[64];
} fake_proc;

static int fake_wait(void *arg, int timeout_ms, sbx_dev_exit *ex)
{
    fake_proc *fp = arg;
    if (fp->calls < 64)
        fp->pauses[fp->calls] = timeout_ms;
    fp->calls++;
    if (fp->cancel_after && fp->calls >= fp->cancel_after)
        return -ECANCELED;
    usleep((useconds_t)timeout_ms * 1000);
    if (fp->exit_after && fp->calls >= fp->exit_after) {
        ex->exit_code = 7;
        return 1;
    }
    return 0;
}

/* a port on the host where nothing listens (bound, not listening) */
static int dead_port(uint16_t *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    getsockname(s, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return s;
}

static void test_wait_timeout_and_backoff(void **state)
{
    (void)state;
    uint16_t port;
    int s = dead_port(&port);
    char url[64];
    sbx_devserver_probe_url("127.0.0.1", port, "/", url, sizeof url);
    fake_proc fp = {0};
    sbx_dev_wait_req wr = {.url = url, .timeout_ms = 700, .wait = fake_wait, .wait_arg = &fp};
    sbx_dev_result r;
    uint64_t t0 = ms_now();
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    uint64_t dt = ms_now() - t0;
    assert_int_equal(r.outcome, SBX_DEV_TIMEOUT);
    assert_true(dt >= 700 && dt < 900);
    assert_non_null(strstr(r.last_error, "onnect")); /* "Couldn't connect" / "refused" */
    /* pauses: 10, 20, 40, 80, 100, 100 ... */
    assert_int_equal(fp.pauses[0], 10);
    assert_int_equal(fp.pauses[1], 20);
    assert_int_equal(fp.pauses[2], 40);
    assert_int_equal(fp.pauses[3], 80);
    assert_int_equal(fp.pauses[4], 100);
    assert_true(fp.pauses[5] <= 100);
    assert_int_equal(r.probes, (uint32_t)fp.calls + 1);
    close(s);
}

static void test_wait_exit_and_cancel(void **state)
{
    (void)state;
    uint16_t port;
    int s = dead_port(&port);
    char url[64];
    sbx_devserver_probe_url("127.0.0.1", port, "/", url, sizeof url);
    fake_proc fp = {.exit_after = 3};
    sbx_dev_wait_req wr = {.url = url, .timeout_ms = 5000, .wait = fake_wait, .wait_arg = &fp};
    sbx_dev_result r;
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_EXITED);
    assert_int_equal(r.exit.exit_code, 7);
    assert_int_equal(r.probes, 4); /* 3 + the last one after the exit */
    char msg[512];
    assert_int_equal(sbx_devserver_message(&r, 3000, false, "boom\n", msg, sizeof msg),
                     SBX_FAILED_PRECONDITION);
    assert_non_null(strstr(msg, "exited with code 7 before port 3000"));
    assert_non_null(strstr(msg, "last output:\nboom"));

    fake_proc fc = {.cancel_after = 2};
    wr.wait_arg = &fc;
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_CANCELLED);
    assert_int_equal(sbx_devserver_message(&r, 3000, false, NULL, msg, sizeof msg), SBX_CANCELLED);
    close(s);
}

/* Any HTTP answer counts, 500 included; the body is not downloaded. */
static void *answer_500(void *arg)
{
    int ls = *(int *)arg;
    int c = accept(ls, NULL, NULL);
    char buf[1024];
    ssize_t n = read(c, buf, sizeof buf);
    (void)n;
    const char *resp = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000000\r\n\r\n"
                       "partial body";
    write_all(c, resp, strlen(resp));
    usleep(300000);
    close(c);
    return NULL;
}

static void test_wait_any_status(void **state)
{
    (void)state;
    uint16_t port;
    int ls = dead_port(&port);
    listen(ls, 4);
    pthread_t th;
    pthread_create(&th, NULL, answer_500, &ls);
    char url[64];
    sbx_devserver_probe_url("127.0.0.1", port, "/health", url, sizeof url);
    sbx_dev_wait_req wr = {.url = url, .timeout_ms = 3000};
    sbx_dev_result r;
    uint64_t t0 = ms_now();
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_READY);
    assert_int_equal(r.http_status, 500);
    assert_true(ms_now() - t0 < 250); /* did not wait for the 100 MB body */
    pthread_join(th, NULL);
    close(ls);
}

static void test_urls_and_paths(void **state)
{
    (void)state;
    char b[128];
    assert_int_equal(sbx_devserver_probe_url("127.0.0.1", 80, NULL, b, sizeof b), 20);
    assert_string_equal(b, "http://127.0.0.1:80/");
    sbx_devserver_probe_url("0.0.0.0", 8080, "/x?y=1", b, sizeof b);
    assert_string_equal(b, "http://127.0.0.1:8080/x?y=1");
    sbx_devserver_probe_url("::", 1, "/", b, sizeof b);
    assert_string_equal(b, "http://[::1]:1/");
    sbx_devserver_probe_url("[::1]", 2, "", b, sizeof b);
    assert_string_equal(b, "http://[::1]:2/");
    assert_int_equal(sbx_devserver_probe_url("localhost", 1, "/", b, sizeof b), -EINVAL);
    assert_int_equal(sbx_devserver_probe_url("127.0.0.1", 1, "/", b, 10), -ENOSPC);
    assert_int_equal(sbx_devserver_check_path("/"), 0);
    assert_int_equal(sbx_devserver_check_path("/a/b?c=d&e"), 0);
    assert_int_equal(sbx_devserver_check_path(""), -EINVAL);
    assert_int_equal(sbx_devserver_check_path("x"), -EINVAL);
    assert_int_equal(sbx_devserver_check_path("/a b"), -EINVAL);
    assert_int_equal(sbx_devserver_check_path("/a#b"), -EINVAL);
    assert_int_equal(sbx_devserver_check_path("/a\r\nX: y"), -EINVAL);
    char *longp = malloc(2050);
    memset(longp, 'a', 2049);
    longp[0] = '/';
    longp[2049] = '\0';
    assert_int_equal(sbx_devserver_check_path(longp), -EINVAL);
    longp[2048] = '\0';
    assert_int_equal(sbx_devserver_check_path(longp), 0);
    free(longp);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_start_http_server, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_slow_starter, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_never_listens, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_keep_on_failure, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_exits_early, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_daemonised_server, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(test_bad_arguments, env_setup, env_teardown),
    cmocka_unit_test(test_wait_timeout_and_backoff),
    cmocka_unit_test(test_wait_exit_and_cancel),
    cmocka_unit_test(test_wait_any_status),
    cmocka_unit_test(test_urls_and_paths),
};

SBX_TEST_MAIN(tests)
