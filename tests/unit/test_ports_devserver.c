/* test_ports_devserver.c: dev-server readiness (ports/devserver.c) on its own: sbx_devserver_wait's
 * rules with a fake process (backoff, exit, cancel) and a host-side server that answers 500,
 * the output tail of a real process, the failure messages, and URL/path validation. The whole
 * StartDevServer sequence is tested through its handler (test_rpc_devserver.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "devserver.h"
#include "ports_fixture.h"
#include "status.h"

/* The tail keeps the last lines of stderr (stdout when stderr is empty), control bytes
 * replaced, trailing newlines dropped. */
static void test_tail_of_a_process(void **state)
{
    env *e = *state;
    ENV_REQUIRE(e);
    const char *argv[] = {"/bin/sh", "-c",
                          "i=1; while [ $i -le 30 ]; do echo \"line $i\" >&2; i=$((i+1)); done; "
                          "printf 'bell\\007\\n' >&2; echo out",
                          NULL};
    sbx_proc *p = env_start(e, argv, NULL);
    assert_non_null(p);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    char tail[2048];
    size_t n = sbx_devserver_tail(p, 5, tail, sizeof tail);
    assert_int_equal(n, strlen(tail));
    assert_string_equal(tail, "line 27\nline 28\nline 29\nline 30\nbell?");
    /* the exit as the wait callback reports it */
    sbx_dev_exit ex = {0};
    assert_int_equal(sbx_devserver_proc_wait(p, 0, &ex), 1);
    assert_int_equal(ex.exit_code, 0);
    sbx_proc_unref(p);

    const char *argv2[] = {"/bin/sh", "-c", "echo only-stdout", NULL};
    p = env_start(e, argv2, NULL);
    assert_non_null(p);
    assert_int_equal(sbx_proc_wait_finished(p, 10000), 0);
    sbx_devserver_tail(p, 20, tail, sizeof tail);
    assert_string_equal(tail, "only-stdout");
    sbx_proc_unref(p);
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
    uint64_t t0 = sbx_mono_ms();
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    uint64_t dt = sbx_mono_ms() - t0;
    assert_int_equal(r.outcome, SBX_DEV_TIMEOUT);
    assert_true(dt >= 700);                          /* not before the ready timeout */
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
    uint64_t t0 = sbx_mono_ms();
    assert_int_equal(sbx_devserver_wait(&wr, &r), 0);
    assert_int_equal(r.outcome, SBX_DEV_READY);
    assert_int_equal(r.http_status, 500);
    assert_true(sbx_mono_ms() - t0 < 250); /* did not wait for the 100 MB body */
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
    cmocka_unit_test_setup_teardown(test_tail_of_a_process, env_setup, env_teardown),
    cmocka_unit_test(test_wait_timeout_and_backoff),
    cmocka_unit_test(test_wait_exit_and_cancel),
    cmocka_unit_test(test_wait_any_status),
    cmocka_unit_test(test_urls_and_paths),
};

SBX_TEST_MAIN(tests)
