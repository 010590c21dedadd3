/* handlers_common.c: what the SandboxExecutor handlers share: resolving a sandbox address (the
 * one place it is checked), the process-handler prologue (selector, sandbox, execution), the
 * Sandbox and ProcessExit messages, a command's environment, and the method table.
 *
 * Threads: the handlers' worker threads; nothing here keeps state. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "status.h"

int exh_resolve(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id,
                int mode, sbx_box **out)
{
    char err[512];
    int code = sbx_reg_get(s->reg, sbx_ctx_tenant(ctx), sandbox_id, project_id, mode, out, err,
                           sizeof err);
    return code == SBX_OK ? SBX_OK : sbx_ctx_error(ctx, code, "%s", err);
}

int exh_box(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id, int mode,
            sbx_box **out)
{
    char err[512];
    int code = exv_address(sandbox_id, project_id, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    return exh_resolve(ctx, s, sandbox_id, project_id, mode, out);
}

/* Finds the execution of a (checked) selector; NOT_FOUND with a message when none. */
static int select_exe(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ProcessSelector *sel, sbx_exe **out)
{
    if (sel->sel_case == SBX__V1__PROCESS_SELECTOR__SEL_PID) {
        *out = sbx_exe_find_pid(b, sel->pid);
        if (!*out)
            return sbx_ctx_error(ctx, SBX_NOT_FOUND, "process.pid: no process %d in sandbox %s",
                                 sel->pid, sbx_box_id(b));
    } else {
        *out = sbx_exe_find_tag(b, sel->tag);
        if (!*out)
            return sbx_ctx_error(ctx, SBX_NOT_FOUND,
                                 "process.tag: no process tagged \"%s\" in "
                                 "sandbox %s",
                                 sel->tag, sbx_box_id(b));
    }
    return SBX_OK;
}

int exh_process_get(sbx_ctx *ctx, sbx_exsvc *s, const char *sandbox_id, const char *project_id,
                    const Sbx__V1__ProcessSelector *sel, sbx_box **b, sbx_exe **e)
{
    *b = NULL;
    *e = NULL;
    char err[256];
    int code = exv_selector(sel, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if ((code = exh_box(ctx, s, sandbox_id, project_id, REG_USE, b)) != SBX_OK)
        return code;
    if ((code = select_exe(ctx, *b, sel, e)) != SBX_OK) {
        sbx_box_release(*b);
        *b = NULL;
    }
    return code;
}

void exh_process_put(sbx_box *b, sbx_exe *e)
{
    sbx_exe_unref(e);
    if (b)
        sbx_box_release(b);
}

static Sbx__V1__SandboxLimits *limits_msg(sbx_ctx *ctx, const sbx_box *b)
{
    const exv_limits *el = sbx_box_limits(b);
    Sbx__V1__SandboxLimits *l =
        (Sbx__V1__SandboxLimits *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox_limits__descriptor);
    l->memory_bytes = el->memory_bytes;
    l->pids = (int32_t)el->pids;
    l->cpu_millis = (int32_t)el->cpu_millis;
    l->command_timeout_ms = el->command_timeout_ms;
    l->max_output_bytes = el->max_output_bytes;
    l->open_files = (int32_t)el->open_files;
    l->disk_bytes = el->disk_bytes;
    l->disk_inodes = sbx_box_disk_limited(b) ? el->disk_inodes : 0; /* 0: not enforced */
    return l;
}

/* The home's disk use while the sandbox runs (NULL when stopped). Without an image the home
 * is a directory: its use is not measured and no total limit holds (mechanism ""). */
static Sbx__V1__SandboxDisk *disk_msg(sbx_ctx *ctx, sbx_box *b)
{
    sbx_disk_usage u;
    bool limited = sbx_box_disk_limited(b);
    if (limited && sbx_box_disk_usage(b, &u) < 0)
        return NULL;
    Sbx__V1__SandboxDisk *d =
        (Sbx__V1__SandboxDisk *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox_disk__descriptor);
    if (!limited) {
        d->mechanism = sbx_ctx_strdup(ctx, "");
        return d;
    }
    d->used_bytes = u.used_bytes;
    d->used_inodes = u.used_inodes;
    d->limit_bytes = u.limit_bytes;
    d->limit_inodes = u.limit_inodes;
    d->mechanism = sbx_ctx_strdup(ctx, u.mechanism ? u.mechanism : "");
    return d;
}

/* The sandbox's enforcement list and metadata into m. */
static void lists_msg(sbx_ctx *ctx, sbx_box *b, Sbx__V1__Sandbox *m)
{
    const char *const *enf;
    size_t ne = sbx_box_enforced(b, &enf);
    m->n_enforced = ne;
    m->enforced = ne ? sbx_ctx_alloc(ctx, ne * sizeof(char *)) : NULL;
    for (size_t i = 0; i < ne; i++)
        m->enforced[i] = sbx_ctx_strdup(ctx, enf[i]);
    const char *const *mk, *const *mv;
    size_t nm = sbx_box_metadata(b, &mk, &mv);
    m->n_metadata = nm;
    m->metadata = nm ? sbx_ctx_alloc(ctx, nm * sizeof(*m->metadata)) : NULL;
    for (size_t i = 0; i < nm; i++) {
        Sbx__V1__Sandbox__MetadataEntry *e = (Sbx__V1__Sandbox__MetadataEntry *)sbx_ctx_new_msg(
            ctx, &sbx__v1__sandbox__metadata_entry__descriptor);
        e->key = sbx_ctx_strdup(ctx, mk[i]);
        e->value = sbx_ctx_strdup(ctx, mv[i]);
        m->metadata[i] = e;
    }
}

Sbx__V1__Sandbox *exh_sandbox_msg(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b)
{
    Sbx__V1__Sandbox *m = (Sbx__V1__Sandbox *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox__descriptor);
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    m->sandbox_id = sbx_ctx_strdup(ctx, sbx_box_id(b));
    m->project_id = sbx_ctx_strdup(ctx, sbx_box_project(b));
    m->state = sn.state == SBX_BOX_STOPPED ? SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED
                                           : SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING;
    m->template_ = sbx_ctx_strdup(ctx, sbx_box_template(b));
    m->init_pid = sn.init_pid;
    m->created_at_unix_ms = sn.created_ms;
    m->last_used_at_unix_ms = sn.last_used_ms;
    m->expires_at_unix_ms = sn.expires_ms;
    m->idle_timeout_ms = sn.idle_timeout_ms;
    m->running_processes = sn.running_processes;
    m->from_pool = sbx_box_from_pool(b);
    m->limits = limits_msg(ctx, b);
    lists_msg(ctx, b, m);
    exh_sandbox_ports(ctx, s, b, m);
    m->network = exh_network_msg(ctx, b);
    if (sn.state != SBX_BOX_STOPPED)
        m->disk = disk_msg(ctx, b);
    return m;
}

Sbx__V1__ProcessExit *exh_exit_msg(sbx_ctx *ctx, const sbx_exe_exit *x)
{
    Sbx__V1__ProcessExit *m =
        (Sbx__V1__ProcessExit *)sbx_ctx_new_msg(ctx, &sbx__v1__process_exit__descriptor);
    m->exit_code = x->exit_code;
    m->signal = x->signal;
    m->duration_us = x->duration_us;
    m->timed_out = x->timed_out;
    m->output_truncated = x->output_truncated;
    m->cached = x->cached;
    m->stdout_bytes = x->stdout_bytes;
    m->stderr_bytes = x->stderr_bytes;
    m->finished_at_unix_ms = x->finished_ms;
    m->oom_killed = x->oom_killed;
    return m;
}

/* ---------------------------------------------------------------- method table */

const sbx_method sbx_executor_methods[] = {
    {"CreateSandbox", SBX_UNARY, 0, exh_create_sandbox},
    {"GetSandbox", SBX_UNARY, 0, exh_get_sandbox},
    {"ListSandboxes", SBX_UNARY, SBX_RUN_INLINE, exh_list_sandboxes},
    {"KillSandbox", SBX_UNARY, 0, exh_kill_sandbox},
    {"SetSandboxTimeout", SBX_UNARY, 0, exh_set_sandbox_timeout},
    {"Exec", SBX_SERVER_STREAM, 0, exh_exec},
    {"Run", SBX_UNARY, 0, exh_run},
    {"ListProcesses", SBX_UNARY, 0, exh_list_processes},
    {"SignalProcess", SBX_UNARY, 0, exh_signal_process},
    {"SendInput", SBX_UNARY, 0, exh_send_input},
    {"CloseInput", SBX_UNARY, 0, exh_close_input},
    {"AttachProcess", SBX_SERVER_STREAM, 0, exh_attach_process},
    {"ReadFile", SBX_SERVER_STREAM, 0, exh_read_file},
    {"WriteFile", SBX_CLIENT_STREAM, 0, exh_write_file},
    {"ListDir", SBX_UNARY, 0, exh_list_dir},
    {"Stat", SBX_UNARY, 0, exh_stat},
    {"MakeDir", SBX_UNARY, 0, exh_make_dir},
    {"Remove", SBX_UNARY, 0, exh_remove},
    {"Move", SBX_UNARY, 0, exh_move},
    {"UploadFiles", SBX_CLIENT_STREAM, 0, exh_upload_files},
    {"ExposePort", SBX_UNARY, 0, exh_expose_port},
    {"StartDevServer", SBX_UNARY, 0, exh_start_dev_server},
    {"UpdateSandboxNetwork", SBX_UNARY, 0, exh_update_sandbox_network},
    {"ResizeTerminal", SBX_UNARY, 0, exh_resize_terminal},
    {"WatchDir", SBX_SERVER_STREAM, 0, exh_watch_dir},
};
const size_t sbx_executor_n_methods = sizeof sbx_executor_methods / sizeof sbx_executor_methods[0];

/* Whether "K=..." has its key set by the request's env (or, with benv, by the sandbox's). */
static bool env_overridden(const char *kv, const Sbx__V1__ExecRequest *r, const char *const *benv,
                           size_t nb)
{
    const char *eq = strchr(kv, '=');
    size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
    for (size_t k = 0; k < r->n_env; k++)
        if (strlen(r->env[k]->key) == kl && memcmp(r->env[k]->key, kv, kl) == 0)
            return true;
    for (size_t i = 0; i < nb; i++)
        if (strncmp(benv[i], kv, kl) == 0 && benv[i][kl] == '=')
            return true;
    return false;
}

/* "K=V" environment: the proxy variables while the sandbox's egress proxies are open, then the
 * sandbox's, each overridden per key by the request's. Arena memory. */
const char **exh_build_env(sbx_ctx *ctx, sbx_box *b, const Sbx__V1__ExecRequest *r)
{
    const char *const *benv;
    size_t nb = sbx_box_env(b, &benv);
    size_t np = 0;
    bool proxied = exh_proxied(b);
    while (proxied && sbx_egress_env[np])
        np++;
    const char **env = sbx_ctx_alloc(ctx, (np + nb + r->n_env + 1) * sizeof *env);
    size_t n = 0;
    for (size_t i = 0; i < np; i++)
        if (!env_overridden(sbx_egress_env[i], r, benv, nb))
            env[n++] = sbx_egress_env[i];
    for (size_t i = 0; i < nb; i++)
        if (!env_overridden(benv[i], r, NULL, 0))
            env[n++] = benv[i];
    for (size_t k = 0; k < r->n_env; k++) {
        size_t l = strlen(r->env[k]->key) + strlen(r->env[k]->value) + 2;
        char *s = sbx_ctx_alloc(ctx, l);
        snprintf(s, l, "%s=%s", r->env[k]->key, r->env[k]->value);
        env[n++] = s;
    }
    env[n] = NULL;
    return env;
}
