/* bench_executor.c: sbx-executor figures against baselines measured in the same process and run
 * (never asserted; printed with their ratios):
 *   CreateSandbox p50 (fresh projects), Run /bin/true p50 over gRPC vs posix_spawn+wait of
 *   /bin/true vs `bwrap --unshare-all --ro-bind / / true`, 4 KiB WriteFile / ReadFile p50,
 *   UploadFiles of 1000 files / 10 MB, Exec stdout streaming MB/s, 100 live sandboxes.
 * Usage: bench-executor --target HOST:PORT [--iters N] [--live N] [--no-bwrap] */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rpc_client.h"
#include "rpc_server.h"
#include "sbx/v1/executor.pb-c.h"

extern char **environ;

#define SVC "/sbx.v1.SandboxExecutor/"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static sbx_chan *ch;

static int unary(const char *m, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *d,
                 ProtobufCMessage **resp)
{
    sbx_rpc_result res = {0};
    ProtobufCMessage *r = NULL;
    int code = sbx_call_unary(ch, m, req, d, &r, 60000, NULL, &res);
    if (code != 0)
        fprintf(stderr, "%s: %s: %s\n", m, sbx_status_name(code), res.message ? res.message : "");
    sbx_rpc_result_clear(&res);
    if (resp)
        *resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static double spawn_true_us(void)
{
    double t0 = now_us();
    pid_t pid;
    char *argv[] = {"/bin/true", NULL};
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
        return -1;
    int st;
    waitpid(pid, &st, 0);
    return now_us() - t0;
}

static double bwrap_true_us(void)
{
    double t0 = now_us();
    pid_t pid;
    char *argv[] = {"bwrap", "--unshare-all", "--ro-bind", "/",    "/", "--dev",
                    "/dev",  "--proc",        "/proc",     "true", NULL};
    if (posix_spawnp(&pid, "bwrap", NULL, NULL, argv, environ) != 0)
        return -1;
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? now_us() - t0 : -1;
}

static double run_true_us(const char *project)
{
    Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    char *args[] = {"/bin/true"};
    av.args = args;
    av.n_args = 1;
    r.project_id = (char *)project;
    r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_ARGV;
    r.argv = &av;
    double t0 = now_us();
    ProtobufCMessage *resp = NULL;
    if (unary(SVC "Run", &r.base, &sbx__v1__run_response__descriptor, &resp) != 0)
        return -1;
    double t = now_us() - t0;
    Sbx__V1__RunResponse *rr = (Sbx__V1__RunResponse *)resp;
    if (!rr->exit || rr->exit->exit_code != 0)
        t = -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    return t;
}

static double write_file_us(const char *project, const char *path, const void *data, size_t len)
{
    double t0 = now_us();
    sbx_cstream *s = NULL;
    sbx_rpc_result res = {0};
    if (sbx_call_client_stream(ch, SVC "WriteFile", 60000, &s, &res) != 0) {
        sbx_rpc_result_clear(&res);
        return -1;
    }
    Sbx__V1__WriteFileRequest h = SBX__V1__WRITE_FILE_REQUEST__INIT;
    Sbx__V1__WriteFileHeader hd = SBX__V1__WRITE_FILE_HEADER__INIT;
    hd.project_id = (char *)project;
    hd.path = (char *)path;
    h.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_HEADER;
    h.header = &hd;
    Sbx__V1__WriteFileRequest d = SBX__V1__WRITE_FILE_REQUEST__INIT;
    d.part_case = SBX__V1__WRITE_FILE_REQUEST__PART_DATA;
    d.data.data = (uint8_t *)data;
    d.data.len = len;
    sbx_cstream_write(s, &h.base);
    sbx_cstream_write(s, &d.base);
    ProtobufCMessage *resp = NULL;
    int code =
        sbx_cstream_close_and_recv(s, &sbx__v1__write_file_response__descriptor, &resp, &res);
    double t = now_us() - t0;
    if (code != 0)
        fprintf(stderr, "WriteFile: %s %s\n", sbx_status_name(code),
                res.message ? res.message : "");
    sbx_rpc_result_clear(&res);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return code == 0 ? t : -1;
}

/* Streams an RPC; returns bytes of data seen (ReadFile chunks / Exec stdout) or -1. */
static long long server_stream(const char *m, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *d, bool exec)
{
    sbx_cstream *s = NULL;
    sbx_rpc_result res = {0};
    if (sbx_call_server_stream(ch, m, req, 120000, &s, &res) != 0) {
        sbx_rpc_result_clear(&res);
        return -1;
    }
    long long n = 0;
    ProtobufCMessage *msg;
    while (sbx_cstream_next(s, d, &msg) == 1) {
        if (exec) {
            Sbx__V1__ExecEvent *ev = (Sbx__V1__ExecEvent *)msg;
            if (ev->event_case == SBX__V1__EXEC_EVENT__EVENT_STDOUT)
                n += (long long)ev->stdout->data.len;
        } else {
            n += (long long)((Sbx__V1__FileChunk *)msg)->data.len;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    int code = sbx_cstream_finish(s, &res);
    sbx_rpc_result_clear(&res);
    return code == 0 ? n : -1;
}

static double create_us(const char *project)
{
    Sbx__V1__CreateSandboxRequest r = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
    r.project_id = (char *)project;
    double t0 = now_us();
    if (unary(SVC "CreateSandbox", &r.base, &sbx__v1__sandbox__descriptor, NULL) != 0)
        return -1;
    return now_us() - t0;
}

static void kill_project(const char *project)
{
    Sbx__V1__KillSandboxRequest k = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    k.project_id = (char *)project;
    k.wipe_home = true;
    unary(SVC "KillSandbox", &k.base, &sbx__v1__kill_sandbox_response__descriptor, NULL);
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    int iters = 300, live = 100;
    bool bwrap = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--live") && i + 1 < argc)
            live = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-bwrap"))
            bwrap = false;
        else {
            fprintf(
                stderr,
                "usage: bench-executor --target HOST:PORT [--iters N] [--live N] [--no-bwrap]\n");
            return 2;
        }
    }
    if (!target || iters < 10)
        return 2;
    sbx_rpc_init();
    char err[256];
    sbx_chan_opts o = {.target = target, .max_message_bytes = 64 << 20};
    ch = sbx_chan_new(&o, err, sizeof err);
    double *a = calloc((size_t)iters, sizeof *a), *b = calloc((size_t)iters, sizeof *b),
           *c = calloc((size_t)iters, sizeof *c);
    char proj[64];

    /* CreateSandbox of fresh projects */
    int nc = iters < 50 ? iters : 50;
    for (int i = 0; i < nc; i++) {
        snprintf(proj, sizeof proj, "bench-create-%d", i);
        a[i] = create_us(proj);
        kill_project(proj);
    }
    double create_p50 = pct(a, nc, 0.5);

    /* Run /bin/true (warm sandbox) interleaved with the two baselines */
    create_us("bench-run");
    for (int i = 0; i < 20; i++)
        run_true_us("bench-run");
    int nb = 0;
    for (int i = 0; i < iters; i++) {
        a[i] = run_true_us("bench-run");
        b[i] = spawn_true_us();
        if (bwrap && i < 100) {
            double t = bwrap_true_us();
            if (t > 0)
                c[nb++] = t;
        }
    }
    double run_p50 = pct(a, iters, 0.5), run_p99 = pct(a, iters, 0.99);
    double spawn_p50 = pct(b, iters, 0.5);
    double bwrap_p50 = nb ? pct(c, nb, 0.5) : 0;

    /* 4 KiB WriteFile / ReadFile */
    char data[4096];
    memset(data, 'x', sizeof data);
    for (int i = 0; i < iters; i++)
        a[i] = write_file_us("bench-run", "w4k.bin", data, sizeof data);
    double wf_p50 = pct(a, iters, 0.5);
    Sbx__V1__ReadFileRequest rr = SBX__V1__READ_FILE_REQUEST__INIT;
    rr.project_id = "bench-run";
    rr.path = "w4k.bin";
    for (int i = 0; i < iters; i++) {
        double t0 = now_us();
        long long n =
            server_stream(SVC "ReadFile", &rr.base, &sbx__v1__file_chunk__descriptor, false);
        a[i] = n == 4096 ? now_us() - t0 : -1;
    }
    double rf_p50 = pct(a, iters, 0.5);

    /* UploadFiles: 1000 files, 10 MB */
    double up_ms = -1;
    {
        sbx_cstream *s = NULL;
        sbx_rpc_result res = {0};
        static uint8_t content[10240];
        memset(content, 'u', sizeof content);
        double t0 = now_us();
        if (sbx_call_client_stream(ch, SVC "UploadFiles", 60000, &s, &res) == 0) {
            Sbx__V1__UploadFilesRequest h = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
            Sbx__V1__UploadHeader hd = SBX__V1__UPLOAD_HEADER__INIT;
            hd.project_id = "bench-run";
            hd.dest_dir = "upload";
            hd.replace = true;
            h.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_HEADER;
            h.header = &hd;
            sbx_cstream_write(s, &h.base);
            char path[64];
            for (int i = 0; i < 1000; i++) {
                Sbx__V1__UploadFilesRequest e = SBX__V1__UPLOAD_FILES_REQUEST__INIT;
                Sbx__V1__UploadEntry en = SBX__V1__UPLOAD_ENTRY__INIT;
                snprintf(path, sizeof path, "d%02d/f%04d.txt", i / 50, i);
                en.path = path;
                en.content.data = content;
                en.content.len = sizeof content;
                e.part_case = SBX__V1__UPLOAD_FILES_REQUEST__PART_ENTRY;
                e.entry = &en;
                sbx_cstream_write(s, &e.base);
            }
            ProtobufCMessage *resp = NULL;
            int code = sbx_cstream_close_and_recv(s, &sbx__v1__upload_files_response__descriptor,
                                                  &resp, &res);
            if (code == 0 && ((Sbx__V1__UploadFilesResponse *)resp)->files_written == 1000)
                up_ms = (now_us() - t0) / 1000;
            else
                fprintf(stderr, "UploadFiles: %s %s\n", sbx_status_name(code),
                        res.message ? res.message : "");
            if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        sbx_rpc_result_clear(&res);
    }

    /* stdout streaming: 1 GB through Exec with a cap that keeps it all */
    double mbps = -1;
    {
        Sbx__V1__ExecRequest r = SBX__V1__EXEC_REQUEST__INIT;
        r.project_id = "bench-run";
        r.command_case = SBX__V1__EXEC_REQUEST__COMMAND_SHELL;
        r.shell = "head -c 1000000000 /dev/zero";
        r.max_output_bytes = 2000000000LL;
        double t0 = now_us();
        long long n = server_stream(SVC "Exec", &r.base, &sbx__v1__exec_event__descriptor, true);
        double t = now_us() - t0;
        if (n > 0)
            mbps = n / t; /* bytes per us = MB/s */
        if (n != 1000000000LL)
            fprintf(stderr,
                    "stdout streaming: received %lld of 1000000000 bytes (the ring dropped "
                    "the rest while the client was slower)\n",
                    n);
    }
    kill_project("bench-run");

    /* live sandboxes */
    int ok = 0;
    double t0 = now_us();
    for (int i = 0; i < live; i++) {
        snprintf(proj, sizeof proj, "bench-live-%d", i);
        if (create_us(proj) > 0)
            ok++;
    }
    double live_ms = (now_us() - t0) / 1000;
    int alive = 0;
    for (int i = 0; i < live; i++) {
        snprintf(proj, sizeof proj, "bench-live-%d", i);
        if (run_true_us(proj) > 0)
            alive++;
    }
    for (int i = 0; i < live; i++) {
        snprintf(proj, sizeof proj, "bench-live-%d", i);
        kill_project(proj);
    }

    printf("%-44s %12s %s\n", "figure", "value", "baseline / goal");
    printf("%-44s %9.0f us  goal <= 5000 us\n", "CreateSandbox p50 (fresh project)", create_p50);
    printf("%-44s %9.0f us  p99 %.0f us\n", "Run /bin/true p50 over gRPC (warm)", run_p50, run_p99);
    printf("%-44s %9.0f us\n", "posix_spawn+wait /bin/true p50 (same run)", spawn_p50);
    if (nb)
        printf("%-44s %9.0f us\n", "bwrap --unshare-all ... true p50 (same run)", bwrap_p50);
    printf("%-44s %9.2f x   goal <= 1.5\n", "ratio Run / posix_spawn", run_p50 / spawn_p50);
    if (nb)
        printf("%-44s %9.2f x   goal >= 2\n", "ratio bwrap / Run", bwrap_p50 / run_p50);
    printf("%-44s %9.0f us  goal <= 300 us\n", "WriteFile 4 KiB p50", wf_p50);
    printf("%-44s %9.0f us  goal <= 300 us\n", "ReadFile 4 KiB p50", rf_p50);
    printf("%-44s %9.0f ms  goal <= 200 ms\n", "UploadFiles 1000 files / 10 MB", up_ms);
    printf("%-44s %9.0f MB/s goal >= 200\n", "Exec stdout streaming (1 GB)", mbps);
    printf("%-44s %6d/%d live, %d answered Run; created in %.0f ms\n", "live sandboxes", ok, live,
           alive, live_ms);
    free(a);
    free(b);
    free(c);
    sbx_chan_free(ch);
    sbx_rpc_shutdown();
    return 0;
}
