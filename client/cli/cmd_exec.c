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

static int on_output(sbx_stream_id s, const void *data, size_t len, uint64_t off, void *ud)
{
    exec_ctx *x = ud;
    if (x->collect)
        return grow_add(s == SBX_STDOUT ? &x->out : &x->err, data, len);
    /* a reader that went away (sbx exec ... | head) stops us; the command keeps its rules */
    return cli_copy_output(s, data, len, off, NULL);
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

static void print_json_result(const exec_ctx *x, const sbx_exec_result *res)
{
    fprintf(stdout, "{\"exit_code\":%d,\"signal\":%d,\"timed_out\":%s,\"cached\":%s,\"stdout\":",
            res->exit_code, res->signal, res->timed_out ? "true" : "false",
            res->cached ? "true" : "false");
    json_str(stdout, x->out.p ? x->out.p : "", x->out.len);
    fputs(",\"stderr\":", stdout);
    json_str(stdout, x->err.p ? x->err.p : "", x->err.len);
    fputs(",\"duration_ms\":", stdout);
    json_duration_ms(stdout, res->duration_us);
    fprintf(stdout,
            ",\"output_truncated\":%s,\"sandbox_id\":", res->output_truncated ? "true" : "false");
    json_cstr(stdout, res->sandbox_id);
    fputs("}\n", stdout);
}

/* What `exec --background` prints: the pid (or {"pid","sandbox_id"}). */
static void print_background(const cli_args *a, const sbx_exec_result *res)
{
    if (a->json) {
        fprintf(stdout, "{\"pid\":%d,\"sandbox_id\":", res->pid);
        json_cstr(stdout, res->sandbox_id);
        fputs("}\n", stdout);
    } else {
        fprintf(stdout, "%d\n", res->pid);
    }
}

/* Starts the signal thread when main() blocked the signals (a foreground exec/sh). */
static void sigfwd_start(sigfwd *f)
{
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, NULL, &blocked);
    if (sigismember(&blocked, SIGINT) == 1 && pthread_create(&f->th, NULL, sigfwd_main, f) == 0)
        f->running = true;
}

static void sigfwd_stop(sigfwd *f)
{
    if (f->running) {
        pthread_cancel(f->th); /* sigwait is a cancellation point */
        pthread_join(f->th, NULL);
    }
}

static int run_exec(cli_args *a, sbx_client *c)
{
    const char *what = a->cmd == CMD_SH ? "sh" : "exec";
    growbuf in = {0};
    if (a->use_stdin && slurp_stdin(&in) != 0) {
        int rc = cli_fail(
            what, sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "reading stdin: %s", strerror(errno)));
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
    if (a->pty) { /* our size; a terminal's stdin stays open unless EOF is typed: type it */
        cli_local_size(&r.pty_cols, &r.pty_rows);
        r.close_stdin = true;
    }
    sigfwd fwd = {.c = c, .project = a->project};
    atomic_init(&fwd.pid, 0);
    sigfwd_start(&fwd);
    exec_ctx x = {.fwd = &fwd, .collect = a->json};
    sbx_exec_result res;
    sbx_error *e = sbx_exec(c, &r, on_started, on_output, &x, &res);
    sigfwd_stop(&fwd);
    free(in.p);
    int rc = 0;
    if (e) {
        rc = cli_fail(what, e);
    } else if (a->background) {
        print_background(a, &res);
    } else {
        if (a->json)
            print_json_result(&x, &res);
        rc = cli_command_status(&res);
    }
    free(x.out.p);
    free(x.err.p);
    sbx_exec_result_clear(&res);
    return rc;
}

/* ---- the command line */
static const char *set_cache(cli_args *a, const char *v)
{
    int64_t ttl = 3600;
    if (v && cli_parse_i64(v, 1, 2592000, &ttl) != 0)
        return "want a TTL in seconds 1..2592000";
    a->cache = true;
    a->cache_ttl_s = ttl;
    return NULL;
}

static const cli_opt exec_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_CWD("working directory (default: the home directory, /home/user)"),
    CLI_OPT_ENV("an environment variable (repeatable)"),
    CLI_OPT_TIMEOUT_MS("kill the command after MS milliseconds (exit status 124)"),
    CLI_OPT_CALL("cache", 0, CLI_OPTVAL, set_cache, "TTL_S",
                 "answer from a fresh cached result; cache this run for TTL_S seconds "
                 "(default 3600)"),
    CLI_OPT_FLAG("stdin", 0, use_stdin, "send our stdin (read to its end first) to the command"),
    CLI_OPT_FLAG("background", 0, background, "start it in the background, print its pid"),
    CLI_OPT_TAG("name the background process (for ps, kill, attach)"),
    CLI_OPT_FLAG("pty", 0, pty,
                 "run it on a pseudo-terminal sized as ours (80x24 without one): its output is "
                 "stdout, --stdin is typed then EOF"),
    CLI_OPT_I64("max-output-bytes", 0, max_output_bytes, 0, INT64_MAX, "N", "want a byte count",
                "keep at most N bytes of stdout+stderr"),
    CLI_OPT_END,
};

static int exec_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    (void)np; /* a trailing command: no positionals of its own */
    if (cli_need_project(a, e))
        return -1;
    if (a->argc == 0)
        return cli_bad(e, "missing the command (usage: sbx exec -p PROJ [flags] -- CMD [ARG...])");
    return 0;
}

static int sh_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (cli_need_project(a, e) || cli_npos(e, np, 1, 1, "sbx sh -p PROJ 'SHELL STRING'"))
        return -1;
    a->shell = pos[0];
    if (!*a->shell)
        return cli_bad(e, "the shell string is empty");
    return 0;
}

const cli_command cli_cmd_exec = {
    .name = "exec",
    .brief = "run a command in the project's sandbox",
    .cmd = CMD_EXEC,
    .trailing = true,
    .synopsis = "sbx exec -p PROJ [--cwd D] [--env K=V]... [--timeout-ms N] [--cache[=TTL_S]]\n"
                "  [--stdin] [--background] [--tag T] [--pty] [--max-output-bytes N] [--] CMD\n"
                "  [ARG...]",
    .summary = "Runs CMD (argv, no shell) in the project's sandbox, created on first use, and "
               "streams its stdout and stderr live. Exit status: the command's; 128+N if it was "
               "killed by signal N; 124 if --timeout-ms hit. The first word that is not an "
               "option starts CMD; \"--\" makes that explicit.",
    .opts = exec_opts,
    .finish = exec_finish,
    .run = run_exec,
};

const cli_command cli_cmd_sh = {
    .name = "sh",
    .brief = "run a shell string in the project's sandbox",
    .cmd = CMD_SH,
    .synopsis = "sbx sh -p PROJ [exec options] 'SHELL STRING'",
    .summary = "The same as exec with /bin/sh -c 'SHELL STRING'.",
    .opts = exec_opts,
    .finish = sh_finish,
    .run = run_exec,
};
