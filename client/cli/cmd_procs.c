/* cmd_procs.c: `sbx ps|kill|attach`: a sandbox's background processes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int on_out(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)off;
    (void)ud;
    int fd = s == SBX_STDOUT ? STDOUT_FILENO : STDERR_FILENO;
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

int cmd_procs(cli_args *a, sbx_client *c)
{
    char what[256];
    sbx_proc_sel sel = {.pid = a->pid, .tag = a->tag};
    if (a->tag)
        snprintf(what, sizeof what, "%s --tag %s", a->cmd_name, a->tag);
    else if (a->pid)
        snprintf(what, sizeof what, "%s %d", a->cmd_name, a->pid);
    else
        snprintf(what, sizeof what, "%s -p %s", a->cmd_name, a->project);
    if (a->cmd == CMD_PS) {
        sbx_proc_list *l = NULL;
        sbx_error *e = sbx_proc_list_get(c, a->project, a->all, &l);
        if (e)
            return cli_fail(what, e);
        if (a->json)
            fputc('[', stdout);
        else if (l->count)
            fputs("PID\tTAG\tSTATE\tCOMMAND\n", stdout);
        for (size_t i = 0; i < l->count; i++) {
            const sbx_proc_info *p = &l->procs[i];
            if (a->json) {
                fprintf(stdout, "%s{\"pid\":%d,\"tag\":", i ? "," : "", p->pid);
                json_cstr(stdout, p->tag);
                fputs(",\"command\":", stdout);
                json_cstr(stdout, p->command);
                fprintf(stdout, ",\"running\":%s}", p->running ? "true" : "false");
            } else {
                char state[32];
                if (p->running)
                    snprintf(state, sizeof state, "running");
                else if (p->has_exit && p->signal)
                    snprintf(state, sizeof state, "signal %d", p->signal);
                else
                    snprintf(state, sizeof state, "exit %d", p->exit_code);
                fprintf(stdout, "%d\t%s\t%s\t%s\n", p->pid, *p->tag ? p->tag : "-", state, p->command);
            }
        }
        if (a->json)
            fputs("]\n", stdout);
        sbx_proc_list_free(l);
        return 0;
    }
    if (a->cmd == CMD_KILL) {
        sbx_error *e = sbx_proc_signal(c, a->project, sel, a->signal);
        return e ? cli_fail(what, e) : 0;
    }
    /* attach */
    sbx_exec_result res;
    sbx_error *e = sbx_attach(c, a->project, sel, a->from_offset, 0, !a->no_follow, on_out, NULL, &res);
    if (e) {
        sbx_exec_result_clear(&res);
        return cli_fail(what, e);
    }
    int rc = res.exited ? cli_command_status(&res) : 0;
    sbx_exec_result_clear(&res);
    return rc;
}
