/* cmds.c: the init's table of commands. A command enters it when its main process started
 * (spawn.c) and leaves once that process was reaped and its per-command cgroup is empty (a
 * daemonised descendant keeps the command, and its group, for kill-tree). As pid 1 the init
 * reaps every process of the sandbox; the exits of commands' main processes are reported to
 * the executor with their rusage and duration. Per-command deadlines kill the whole tree.
 * Single-threaded (sbx-init); the table is this file's. */
#include "init_parts.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "clock.h"

#define MAX_CMDS 4096

static struct {
    sbx_cmd *v;
    size_t n;
} cmds;

int sbx_cmds_init(void)
{
    cmds.v = calloc(MAX_CMDS, sizeof *cmds.v);
    return cmds.v ? 0 : -ENOMEM;
}

bool sbx_cmds_full(void)
{
    return cmds.n >= MAX_CMDS;
}

void sbx_cmds_add(const sbx_cmd *c)
{
    cmds.v[cmds.n++] = *c;
}

sbx_cmd *sbx_cmds_find(pid_t pid, bool live_only)
{
    sbx_cmd *best = NULL;
    for (size_t i = 0; i < cmds.n; i++) {
        if (cmds.v[i].pid != pid)
            continue;
        if (!cmds.v[i].exited)
            return &cmds.v[i];
        if (!live_only)
            best = &cmds.v[i];
    }
    return best;
}

void sbx_cmds_kill_tree(sbx_cmd *c)
{
    if (c->has_cg) {
        c->cg_killed = true;
        sbx_cmdcg_kill(c->cgn);
    }
    if (!c->exited) {
        kill(-c->pid, SIGKILL); /* its session/process group */
        kill(c->pid, SIGKILL);
    }
}

/* Drops commands whose main process is gone and whose cgroup is empty (the group goes back to
 * the free list). A command whose descendants still run keeps its group (kill-tree). */
static void collect(void)
{
    size_t w = 0;
    for (size_t i = 0; i < cmds.n; i++) {
        sbx_cmd *c = &cmds.v[i];
        if (c->exited && c->has_cg && sbx_cmdcg_release(c->cgn, c->cg_killed))
            c->has_cg = false;
        if (c->exited && !c->has_cg)
            continue;
        cmds.v[w++] = *c;
    }
    cmds.n = w;
}

static void report_exit(const sbx_cmd *c, int status, const struct rusage *ru)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Exited e = SBXINIT__EXITED__INIT;
    Sbxinit__Rusage r = SBXINIT__RUSAGE__INIT;
    e.pid = c->pid;
    if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
        e.core_dumped = WCOREDUMP(status);
    } else {
        e.exit_code = WEXITSTATUS(status);
    }
    e.timed_out = c->timed_out;
    e.duration_us = sbx_mono_us() - c->start_us;
    r.utime_us = (uint64_t)ru->ru_utime.tv_sec * 1000000u + (uint64_t)ru->ru_utime.tv_usec;
    r.stime_us = (uint64_t)ru->ru_stime.tv_sec * 1000000u + (uint64_t)ru->ru_stime.tv_usec;
    r.maxrss_kb = (uint64_t)ru->ru_maxrss;
    e.rusage = &r;
    m.body_case = SBXINIT__INIT_MSG__BODY_EXITED;
    m.exited = &e;
    sbx_init_send(&m, NULL, 0);
}

void sbx_cmds_reap(void)
{
    int status;
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
        sbx_cmd *c = sbx_cmds_find(pid, true);
        if (!c)
            continue; /* an orphan re-parented to us */
        c->exited = true;
        report_exit(c, status, &ru);
    }
    collect();
}

int sbx_cmds_check_timeouts(void)
{
    uint64_t now = sbx_mono_us(), next = 0;
    for (size_t i = 0; i < cmds.n; i++) {
        sbx_cmd *c = &cmds.v[i];
        if (!c->deadline_us || c->exited)
            continue;
        if (c->deadline_us <= now) {
            c->timed_out = true;
            c->deadline_us = 0;
            sbx_cmds_kill_tree(c);
        } else if (!next || c->deadline_us < next) {
            next = c->deadline_us;
        }
    }
    if (!next)
        return -1;
    return (int)((next - now + 999) / 1000);
}
