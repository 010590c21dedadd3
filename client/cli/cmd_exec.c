/* cmd_exec.c: `sbx exec` and `sbx sh`: run a command in the project's sandbox, streaming its
 * stdout/stderr live to ours (or collecting them for --json), and exit with its status. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct growbuf {
    char *p;
    size_t len, cap;
} growbuf;

static int grow_add(growbuf *b, const void *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

typedef struct sigfwd sigfwd;
typedef struct exec_ctx {
    sigfwd *fwd; /* forwards Ctrl-C once the pid is known */
    bool collect;
    growbuf out, err;
} exec_ctx;

static int write_all(int fd, const void *d, size_t n)
{
    const char *p = d;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int on_output(sbx_stream_id s, const void *data, size_t len, uint64_t off, void *ud)
{
    (void)off;
    exec_ctx *x = ud;
    if (x->collect)
        return grow_add(s == SBX_STDOUT ? &x->out : &x->err, data, len);
    /* a reader that went away (sbx exec ... | head) stops us; the command keeps its rules */
    return write_all(s == SBX_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data, len);
}

/* Ctrl-C (and SIGTERM/SIGHUP) during a foreground command: main() blocked these signals before
 * any thread started; this thread waits for them and forwards the first to the command's
 * process group in the sandbox (a second one sends SIGKILL), so the command ends and we exit
 * with its status (130 after SIGINT) instead of leaving it running. Before the command has
 * started, we simply exit 128+N. */
typedef struct sigfwd {
    sbx_client *c;
    const char *project;
    atomic_int pid;
    pthread_t th;
    bool running;
} sigfwd;

void cli_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *sigfwd_main(void *arg)
{
    sigfwd *f = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int count = 0;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        int pid = atomic_load(&f->pid);
        if (pid <= 0)
            _exit(128 + sig);
        sbx_proc_sel sel = {.pid = pid};
        sbx_error_free(sbx_proc_signal(f->c, f->project, sel, ++count == 1 ? sig : SIGKILL));
    }
    return NULL;
}

static void on_started(int pid, const char *sandbox_id, void *ud)
{
    (void)sandbox_id;
    sigfwd *f = ((exec_ctx *)ud)->fwd;
    if (f)
        atomic_store(&f->pid, pid);
}

/* Reads all of stdin (bounded). Returns 0 or -1 with errno. */
static int slurp_stdin(growbuf *b)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = read(STDIN_FILENO, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        if (b->len + (size_t)r > 64u << 20) {
            errno = EFBIG;
            return -1;
        }
        if (grow_add(b, tmp, (size_t)r) != 0)
            return -1;
    }
}

int cmd_exec(cli_args *a, sbx_client *c)
{
    const char *what = a->cmd == CMD_SH ? "sh" : "exec";
    growbuf in = {0};
    if (a->use_stdin && slurp_stdin(&in) != 0) {
        int rc = cli_fail(what, sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "reading stdin: %s", strerror(errno)));
        free(in.p);
        return rc;
    }
    sbx_exec_req r = {
        .project_id = a->project,
        .argv = (const char *const *)a->argv,
        .argc = a->argc,
        .shell = a->cmd == CMD_SH ? a->shell : NULL,
        .cwd = a->cwd,
        .env = a->env,
        .n_env = a->n_env,
        .stdin_data = in.p,
        .stdin_len = in.len,
        .close_stdin = a->use_stdin,
        .timeout_ms = a->timeout_ms,
        .max_output_bytes = a->max_output_bytes,
        .background = a->background,
        .tag = a->tag,
        .cache_ttl_s = a->cache ? a->cache_ttl_s : 0,
        .deadline_ms = a->deadline_set ? a->deadline_ms : 0,
    };
    sigfwd fwd = {.c = c, .project = a->project};
    atomic_init(&fwd.pid, 0);
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, NULL, &blocked);
    if (sigismember(&blocked, SIGINT) == 1 && pthread_create(&fwd.th, NULL, sigfwd_main, &fwd) == 0)
        fwd.running = true;
    exec_ctx x = {.fwd = &fwd, .collect = a->json};
    sbx_exec_result res;
    sbx_error *e = sbx_exec(c, &r, on_started, on_output, &x, &res);
    if (fwd.running) {
        pthread_cancel(fwd.th); /* sigwait is a cancellation point */
        pthread_join(fwd.th, NULL);
    }
    free(in.p);
    if (e) {
        free(x.out.p);
        free(x.err.p);
        sbx_exec_result_clear(&res);
        return cli_fail(what, e);
    }
    int rc;
    if (a->background) {
        if (a->json) {
            fprintf(stdout, "{\"pid\":%d,\"sandbox_id\":", res.pid);
            json_cstr(stdout, res.sandbox_id);
            fputs("}\n", stdout);
        } else {
            fprintf(stdout, "%d\n", res.pid);
        }
        rc = 0;
    } else {
        if (a->json) {
            fprintf(stdout, "{\"exit_code\":%d,\"signal\":%d,\"timed_out\":%s,\"cached\":%s,\"stdout\":", res.exit_code,
                    res.signal, res.timed_out ? "true" : "false", res.cached ? "true" : "false");
            json_str(stdout, x.out.p ? x.out.p : "", x.out.len);
            fputs(",\"stderr\":", stdout);
            json_str(stdout, x.err.p ? x.err.p : "", x.err.len);
            fputs(",\"duration_ms\":", stdout);
            json_duration_ms(stdout, res.duration_us);
            fprintf(stdout, ",\"output_truncated\":%s,\"sandbox_id\":", res.output_truncated ? "true" : "false");
            json_cstr(stdout, res.sandbox_id);
            fputs("}\n", stdout);
        }
        rc = cli_command_status(&res);
    }
    free(x.out.p);
    free(x.err.p);
    sbx_exec_result_clear(&res);
    return rc;
}
