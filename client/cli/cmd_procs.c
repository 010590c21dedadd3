/* cmd_procs.c: `sbx ps|kill|attach`: a sandbox's background processes. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

/* "kill --tag web", "attach 42", "ps -p proj": what an error line names. */
static const char *what_of(const cli_args *a, char *buf, size_t len)
{
    if (a->tag)
        snprintf(buf, len, "%s --tag %s", a->cmd_name, a->tag);
    else if (a->pid)
        snprintf(buf, len, "%s %d", a->cmd_name, a->pid);
    else
        snprintf(buf, len, "%s -p %s", a->cmd_name, a->project);
    return buf;
}

static void proc_json(FILE *f, const void *item)
{
    const sbx_proc_info *p = item;
    fprintf(f, "{\"pid\":%d,\"tag\":", p->pid);
    json_cstr(f, p->tag);
    fputs(",\"command\":", f);
    json_cstr(f, p->command);
    fprintf(f, ",\"running\":%s,\"pty\":%s}", p->running ? "true" : "false",
            p->pty ? "true" : "false");
}

static void proc_text(FILE *f, const void *item)
{
    const sbx_proc_info *p = item;
    char state[32];
    if (p->running)
        snprintf(state, sizeof state, "running");
    else if (p->has_exit && p->signal)
        snprintf(state, sizeof state, "signal %d", p->signal);
    else
        snprintf(state, sizeof state, "exit %d", p->exit_code);
    fprintf(f, "%d\t%s\t%s\t%s\n", p->pid, *p->tag ? p->tag : "-", state, p->command);
}

static int run_ps(cli_args *a, sbx_client *c)
{
    char what[256];
    sbx_proc_list *l = NULL;
    sbx_error *e = sbx_proc_list_get(c, a->project, a->all, &l);
    if (e)
        return cli_fail(what_of(a, what, sizeof what), e);
    if (!a->json && l->count)
        fputs("PID\tTAG\tSTATE\tCOMMAND\n", stdout);
    cli_print_items(a, l->procs, l->count, sizeof *l->procs, proc_json, proc_text);
    sbx_proc_list_free(l);
    return 0;
}

static int run_kill(cli_args *a, sbx_client *c)
{
    char what[256];
    sbx_proc_sel sel = {.pid = a->pid, .tag = a->tag};
    sbx_error *e = sbx_proc_signal(c, a->project, sel, a->signal);
    return e ? cli_fail(what_of(a, what, sizeof what), e) : 0;
}

static int run_attach(cli_args *a, sbx_client *c)
{
    char what[256];
    sbx_proc_sel sel = {.pid = a->pid, .tag = a->tag};
    sbx_exec_result res;
    sbx_error *e = sbx_attach(c, a->project, sel, a->from_offset, 0, !a->no_follow, cli_copy_output,
                              NULL, &res);
    if (e) {
        sbx_exec_result_clear(&res);
        return cli_fail(what_of(a, what, sizeof what), e);
    }
    int rc = res.exited ? cli_command_status(&res) : 0;
    sbx_exec_result_clear(&res);
    return rc;
}

/* ---- the command line */
int cli_parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int num;
    } sigs[] = {{"HUP", 1},   {"INT", 2},    {"QUIT", 3},  {"ILL", 4},   {"TRAP", 5},
                {"ABRT", 6},  {"BUS", 7},    {"FPE", 8},   {"KILL", 9},  {"USR1", 10},
                {"SEGV", 11}, {"USR2", 12},  {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15},
                {"CHLD", 17}, {"CONT", 18},  {"STOP", 19}, {"TSTP", 20}, {"TTIN", 21},
                {"TTOU", 22}, {"URG", 23},   {"XCPU", 24}, {"XFSZ", 25}, {"VTALRM", 26},
                {"PROF", 27}, {"WINCH", 28}, {"IO", 29},   {"PWR", 30},  {"SYS", 31}};
    int64_t n;
    if (cli_parse_i64(s, 1, 64, &n) == 0)
        return (int)n;
    if (!s)
        return -1;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcasecmp(s, sigs[i].name) == 0)
            return sigs[i].num;
    return -1;
}

static const char *set_signal(cli_args *a, const char *v)
{
    int s = cli_parse_signal(v);
    if (s < 0)
        return "want a signal number 1..64 or a name like TERM";
    a->signal = s;
    return NULL;
}

#define OPT_PID CLI_OPT_INT("pid", 0, pid, 1, INT_MAX, "PID", "want a pid > 0", "the process id")
#define OPT_TAG CLI_OPT_TAG("the process started with this --tag")

static const cli_opt ps_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("all", 'a', all, "finished processes too"),
    CLI_OPT_END,
};
static const cli_opt kill_opts[] = {
    CLI_OPT_PROJECT,
    OPT_TAG,
    CLI_OPT_CALL("signal", 's', CLI_VAL, set_signal, "N", "signal number or name (default: TERM)"),
    OPT_PID,
    CLI_OPT_END,
};
static const cli_opt attach_opts[] = {
    CLI_OPT_PROJECT,
    OPT_TAG,
    CLI_OPT_U64("from-offset", 0, from_offset, "N", "want a byte offset",
                "replay the output from byte N (default 0)"),
    CLI_OPT_FLAG("no-follow", 0, no_follow, "print what is there and return"),
    OPT_PID,
    CLI_OPT_END,
};

static int ps_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    (void)pos;
    return cli_need_project(a, e) || cli_npos(e, np, 0, 0, "sbx ps -p PROJ") ? -1 : 0;
}

/* kill and attach: the process as a PID positional (or --pid) or --tag, not both. */
static int select_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    const char *u = a->cmd == CMD_KILL ? "sbx kill -p PROJ PID|--tag T [--signal N]"
                                       : "sbx attach -p PROJ PID|--tag T [--from-offset N]";
    if (cli_need_project(a, e) || cli_npos(e, np, 0, 1, u))
        return -1;
    if (np) {
        int64_t n;
        if (cli_parse_i64(pos[0], 1, INT_MAX, &n) != 0)
            return cli_bad(e, "bad PID \"%s\"", pos[0]);
        a->pid = (int)n;
    }
    if (!a->pid && !a->tag)
        return cli_bad(e, "give a PID or --tag T (usage: %s)", u);
    if (a->pid && a->tag)
        return cli_bad(e, "give a PID or --tag T, not both");
    return 0;
}

const cli_command cli_cmd_ps = {
    .name = "ps",
    .brief = "list background processes",
    .cmd = CMD_PS,
    .synopsis = "sbx ps -p PROJ [--all]",
    .summary = "Lists the sandbox's background processes (pid, tag, state, command).",
    .opts = ps_opts,
    .finish = ps_finish,
    .run = run_ps,
};

const cli_command cli_cmd_kill = {
    .name = "kill",
    .brief = "signal a background process",
    .cmd = CMD_KILL,
    .synopsis = "sbx kill -p PROJ PID|--tag T [--signal N]",
    .summary = "Sends a signal to a background process.",
    .opts = kill_opts,
    .finish = select_finish,
    .run = run_kill,
};

const cli_command cli_cmd_attach = {
    .name = "attach",
    .brief = "replay and follow a background process's output",
    .cmd = CMD_ATTACH,
    .synopsis = "sbx attach -p PROJ PID|--tag T [--from-offset N] [--no-follow]",
    .summary = "Replays a background process's stdout and stderr, then follows it until it "
               "ends; exit status: the process's (as exec).",
    .opts = attach_opts,
    .finish = select_finish,
    .run = run_attach,
};
