/* cmd_term.c: `sbx term`: an interactive terminal in the project's sandbox. The command runs on
 * a pseudo-terminal of the sandbox (ExecRequest.pty) sized as ours; our terminal goes into raw
 * mode so every key (Ctrl-C, Ctrl-Z, arrows) reaches the remote line discipline and programs;
 * its output is written to our stdout as it comes. Threads: the main thread runs the Exec
 * stream; an input thread reads stdin and sends it (SendInput; CloseInput at EOF when stdin is
 * not a terminal); a signal thread takes the signals main() blocked before gRPC started:
 * SIGWINCH -> ResizeTerminal, SIGTSTP -> restore, stop, raw again on continue, and SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT -> restore our terminal and die of that signal (the executor then
 * hangs up the remote terminal, as when a terminal window closes). Our terminal settings are
 * restored on every way out: the command's exit, an error, those signals, exit(). Exit status:
 * the remote command's (cli_command_status). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* ---- our terminal: raw mode and its restoration (process-wide, for atexit) */
static struct termios tty_saved;
static atomic_int tty_is_raw;
static atomic_int tty_atexit_set;

static void tty_restore(void)
{
    if (atomic_exchange(&tty_is_raw, 0))
        tcsetattr(STDIN_FILENO, TCSADRAIN, &tty_saved);
}

/* Raw mode on stdin when it is a terminal; false otherwise. */
static bool tty_raw(void)
{
    struct termios raw;
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &tty_saved) != 0)
        return false;
    if (!atomic_exchange(&tty_atexit_set, 1))
        atexit(tty_restore);
    raw = tty_saved;
    cfmakeraw(&raw);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) != 0)
        return false;
    atomic_store(&tty_is_raw, 1);
    return true;
}

void cli_local_size(uint32_t *cols, uint32_t *rows)
{
    struct winsize ws = {0};
    if ((ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || !ws.ws_col || !ws.ws_row) &&
        (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0 || !ws.ws_col || !ws.ws_row)) {
        ws.ws_col = 80;
        ws.ws_row = 24;
    }
    *cols = ws.ws_col > 1000 ? 1000 : ws.ws_col;
    *rows = ws.ws_row > 1000 ? 1000 : ws.ws_row;
}

static const int term_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGTSTP, SIGUSR2};

static void term_sigset(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < sizeof term_signals / sizeof term_signals[0]; i++)
        sigaddset(set, term_signals[i]);
}

void cli_term_block_signals(void)
{
    sigset_t set;
    term_sigset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* ---- the session */
typedef struct term {
    sbx_client *c;
    const char *project;
    bool raw;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pid;                       /* mu: the remote process, 0 until started */
    bool done;                     /* mu: the Exec call returned */
    uint32_t sent_cols, sent_rows; /* mu: the size the remote terminal has */
    int wake[2];                   /* written when the input thread should stop */
    pthread_t in_th, sig_th;
    bool in_running, sig_running;
} term;

static int term_pid(term *t)
{
    pthread_mutex_lock(&t->mu);
    int pid = t->pid;
    pthread_mutex_unlock(&t->mu);
    return pid;
}

/* Gives the remote terminal our current size if it differs from what it has. */
static void sync_size(term *t)
{
    uint32_t cols, rows;
    cli_local_size(&cols, &rows);
    pthread_mutex_lock(&t->mu);
    int pid = t->pid;
    bool change = pid > 0 && !t->done && (cols != t->sent_cols || rows != t->sent_rows);
    if (change) {
        t->sent_cols = cols;
        t->sent_rows = rows;
    }
    pthread_mutex_unlock(&t->mu);
    if (change) /* it may have exited meanwhile: FAILED_PRECONDITION is expected then */
        sbx_error_free(
            sbx_terminal_resize(t->c, t->project, (sbx_proc_sel){.pid = pid}, cols, rows));
}

static void on_started(int pid, const char *sandbox_id, void *ud)
{
    (void)sandbox_id;
    term *t = ud;
    pthread_mutex_lock(&t->mu);
    t->pid = pid;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static int on_output(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)s; /* a terminal has one output: its screen (stdout) */
    (void)off;
    (void)ud;
    return cli_write_all(STDOUT_FILENO, d, n);
}

/* Keystrokes (or piped stdin) to the remote terminal, from its start until the call ends. */
static void *input_main(void *arg)
{
    term *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->pid && !t->done)
        pthread_cond_wait(&t->cv, &t->mu);
    int pid = t->pid;
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    if (done)
        return NULL;
    sync_size(t); /* a SIGWINCH before the start */
    sbx_proc_sel sel = {.pid = pid};
    char buf[4096];
    for (;;) {
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = t->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) { /* the end of piped input: type EOF, as at a terminal */
            sbx_error_free(sbx_proc_close_input(t->c, t->project, sel));
            break;
        }
        sbx_error *e = sbx_proc_send_input(t->c, t->project, sel, buf, (size_t)n);
        if (e) { /* the command has exited (or the sandbox is gone): the Exec stream tells */
            sbx_error_free(e);
            break;
        }
    }
    return NULL;
}

/* Dies of sig after restoring our terminal (the default action of a blocked signal). */
static void die_of(int sig)
{
    tty_restore();
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    _exit(128 + sig);
}

static void *signal_main(void *arg)
{
    term *t = arg;
    sigset_t set;
    term_sigset(&set);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        switch (sig) {
        case SIGUSR2: /* the call ended: stop */
            return NULL;
        case SIGWINCH:
            sync_size(t);
            break;
        case SIGTSTP: { /* suspended from outside: give the terminal back meanwhile */
            bool was_raw = atomic_load(&tty_is_raw);
            tty_restore();
            kill(getpid(), SIGSTOP);
            if (was_raw)
                tty_raw();
            sync_size(t);
            break;
        }
        case SIGINT:
            /* without raw mode (stdin not a terminal) Ctrl-C arrives as a signal: type it */
            if (!t->raw && term_pid(t) > 0) {
                sbx_error_free(sbx_proc_send_input(t->c, t->project,
                                                   (sbx_proc_sel){.pid = term_pid(t)}, "\x03", 1));
                break;
            }
            die_of(sig);
            break;
        default: /* SIGTERM, SIGHUP, SIGQUIT */
            die_of(sig);
        }
    }
}

/* The command: the given one, else /bin/bash -l where the sandbox has it, else /bin/sh. */
static sbx_error *pick_command(cli_args *a, sbx_client *c, const char **argv, size_t *argc)
{
    if (a->argc) {
        *argc = 0;
        return NULL;
    }
    sbx_file_info fi;
    memset(&fi, 0, sizeof fi);
    sbx_error *e = sbx_file_stat(c, a->project, "/bin/bash", &fi);
    if (e && e->code != SBX_CODE_NOT_FOUND)
        return e;
    bool bash = !e;
    sbx_error_free(e);
    sbx_file_info_clear(&fi);
    if (bash) {
        argv[0] = "/bin/bash";
        argv[1] = "-l";
        *argc = 2;
    } else {
        argv[0] = "/bin/sh";
        *argc = 1;
    }
    return NULL;
}

static int run_term(cli_args *a, sbx_client *c)
{
    const char *def_argv[3] = {0};
    size_t def_argc = 0;
    sbx_error *e = pick_command(a, c, def_argv, &def_argc);
    if (e)
        return cli_fail("term", e);
    term t = {.c = c, .project = a->project};
    cli_local_size(&t.sent_cols, &t.sent_rows);
    if (pipe(t.wake) != 0)
        return cli_fail("term", sbx_error_new(SBX_CODE_INTERNAL, "pipe: %s", strerror(errno)));
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    sbx_exec_req r = {
        .project_id = a->project,
        .argv = def_argc ? def_argv : (const char *const *)a->argv,
        .argc = def_argc ? def_argc : a->argc,
        .cwd = a->cwd,
        .env = a->env,
        .n_env = a->n_env,
        .timeout_ms = a->timeout_ms ? a->timeout_ms : 86400000,
        .tag = a->tag,
        .pty_cols = t.sent_cols,
        .pty_rows = t.sent_rows,
        .deadline_ms = a->deadline_set ? a->deadline_ms : 0,
    };
    /* the signal thread first: signals are blocked in every thread (main()) */
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, NULL, &blocked);
    if (sigismember(&blocked, SIGWINCH) == 1 &&
        pthread_create(&t.sig_th, NULL, signal_main, &t) == 0)
        t.sig_running = true;
    t.raw = tty_raw();
    t.in_running = pthread_create(&t.in_th, NULL, input_main, &t) == 0;
    sbx_exec_result res;
    e = sbx_exec(c, &r, on_started, on_output, &t, &res);
    pthread_mutex_lock(&t.mu);
    t.done = true;
    pthread_cond_broadcast(&t.cv);
    pthread_mutex_unlock(&t.mu);
    if (write(t.wake[1], "x", 1) < 0) {
        /* cannot happen with an empty pipe; the input thread would then end at EOF */
    }
    if (t.in_running)
        pthread_join(t.in_th, NULL);
    if (t.sig_running) {
        pthread_kill(t.sig_th, SIGUSR2);
        pthread_join(t.sig_th, NULL);
    }
    tty_restore();
    close(t.wake[0]);
    close(t.wake[1]);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
    int rc = e ? cli_fail("term", e) : cli_command_status(&res);
    sbx_exec_result_clear(&res);
    return rc;
}

static const cli_opt term_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_TAG("name the terminal's process (for ps, kill, attach)"),
    CLI_OPT_CWD("working directory (default: the home directory, /home/user)"),
    CLI_OPT_ENV("an environment variable (repeatable; TERM defaults to xterm-256color)"),
    CLI_OPT_TIMEOUT_MS("end the session after MS milliseconds (default 24 hours)"),
    CLI_OPT_END,
};

static int term_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    (void)np; /* a trailing command: no positionals of its own */
    return cli_need_project(a, e) ? -1 : 0;
}

const cli_command cli_cmd_term = {
    .name = "term",
    .brief = "an interactive terminal in the project's sandbox",
    .cmd = CMD_TERM,
    .trailing = true,
    .synopsis = "sbx term -p PROJ [--tag T] [--cwd D] [--env K=V]... [--timeout-ms MS]\n"
                "  [-- CMD [ARG...]]",
    .summary = "Runs CMD (default: /bin/bash -l where the sandbox has it, else /bin/sh) on a "
               "pseudo-terminal of the sandbox sized as ours, with our terminal in raw mode: "
               "keys go to it, its screen to ours, a window resize follows. Our terminal "
               "settings are restored when it ends, on an error and on SIGINT, SIGTERM, SIGHUP "
               "or SIGQUIT from outside. Exit status: the command's (as exec).",
    .opts = term_opts,
    .finish = term_finish,
    .run = run_term,
};
