/* main.c (sbx-executor): wires the settings (config.c), the sandbox runtime, the warm pool, the
 * store client and outbox, the background monitor, the port forwarder, the registry and the
 * SandboxExecutor handlers into the gRPC server, then serves until SIGTERM/SIGINT and tears
 * everything down in order (calls, sandboxes, pool, forwarder, background followers, outbox).
 *
 * Threads: main's; every library starts its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "exectab.h"
#include "handlers.h"
#include "log.h"
#include "outbox.h"
#include "portfwd.h"
#include "registry.h"
#include "rpc_server.h"
#include "sandbox.h"
#include "sbx/v1/executor.pb-c.h"
#include "serve.h"
#include "store_client.h"

#define UID_FIRST_REG 200000u /* the registry's uid blocks; the warm pool's range follows */

/* What main starts, in start order (stopped in reverse by stop_all). */
typedef struct executor {
    sbx_storecli *store;
    sbx_outbox *ob;
    sbx_execmon *mon;
    sbx_portfwd *fwd;
    sbx_reg *reg;
    sbx_server *srv;
    sbx_exsvc svc;
} executor;

static int deliver(void *arg, const char *tenant, const uint8_t *req, size_t len, char *err,
                   size_t errlen)
{
    return sbx_storecli_record(arg, tenant, req, len, 10000, err, errlen);
}

static void log_caps(const sbx_sandbox_caps *c, bool weak)
{
    static const char *const names[] = {"memory", "pids", "cpu"};
    char lim[256] = "";
    for (int i = 0; i < 3; i++) {
        const char *how = c->v2_controllers & (1u << i)   ? "cgroup-v2"
                          : c->v1_controllers & (1u << i) ? "cgroup-v1"
                                                          : "NOT-ENFORCED";
        size_t l = strlen(lim);
        snprintf(lim + l, sizeof lim - l, "%s%s:%s", l ? "," : "", names[i], how);
    }
    SBX_LOG_INFO("executor",
                 "isolation namespaces=%s cgroup_v2=%s kill_tree=%s limits=%s "
                 "rlimits=nofile,fsize seccomp=on-in-init%s",
                 c->namespaces ? "user,pid,mount,net,ipc,uts,cgroup" : "UNAVAILABLE",
                 c->cgroup_v2 ? "yes" : "no", c->cgroup_v2_kill ? "cgroup.kill" : "process-group",
                 lim, weak && !c->namespaces ? " WEAK-ISOLATION" : "");
}

/* Probes isolation once and says what is enforced; refuses to run unisolated unless allowed.
 * Returns 0 or -1. */
static int check_isolation(const sbx_exec_config *c, sbx_sandbox_caps *caps)
{
    int rc = sbx_sandbox_caps_detect(c->init_path, caps);
    if (rc < 0 || !caps->namespaces) {
        const char *why = rc < 0 ? strerror(-rc) : caps->namespaces_err;
        if (!c->allow_weak) {
            fprintf(stderr,
                    "sbx-executor: cannot create sandbox namespaces (%s) with --init-path "
                    "%s; refusing to run commands without isolation (pass --allow-weak-isolation "
                    "to run anyway)\n",
                    why, c->init_path);
            SBX_LOG_ERROR("executor", "namespaces unavailable; refusing to start reason=\"%s\"",
                          why);
            return -1;
        }
        SBX_LOG_WARN("executor",
                     "namespaces unavailable; running WITHOUT isolation "
                     "(--allow-weak-isolation) reason=\"%s\"",
                     why);
        if (rc < 0)
            memset(caps, 0, sizeof *caps);
    }
    log_caps(caps, c->allow_weak);
    return 0;
}

/* The warm pool: its uid range sits above every block the registry hands out. Returns whether
 * it is on. */
static bool start_pool(const sbx_exec_config *c, const sbx_sandbox_caps *caps)
{
    if (c->pool_size <= 0 || !caps->namespaces)
        return false;
    sbx_sandbox_pool_cfg pc = {
        .size = (size_t)c->pool_size,
        .init_path = c->init_path,
        .cgroup_parent = c->cgroup_parent,
        .uid_first = UID_FIRST_REG + (uint32_t)c->max_sandboxes * 65536u,
        .uid_count = (uint32_t)c->max_sandboxes,
        .limits = {.memory_bytes = (uint64_t)c->defaults.memory_bytes,
                   .pids = (uint64_t)c->defaults.pids,
                   .cpu_millis = (uint32_t)c->defaults.cpu_millis},
    };
    int rc = sbx_sandbox_pool_config(&pc);
    if (rc < 0) {
        SBX_LOG_WARN("executor", "warm pool unavailable, sandboxes are built on demand err=\"%s\"",
                     strerror(-rc));
        return false;
    }
    SBX_LOG_INFO("executor", "warm pool size=%lld", (long long)c->pool_size);
    return true;
}

/* The store client, the outbox that feeds it, and the monitor that records into the outbox.
 * Returns 0 or 1 (the exit status). */
static int start_history(executor *x, const sbx_exec_config *c)
{
    char obdir[PATH_MAX];
    snprintf(obdir, sizeof obdir, "%s/outbox", c->data_dir);
    x->store = sbx_storecli_new(c->store, c->store_key);
    sbx_outbox_cfg oc = {
        .dir = obdir, .sync = c->outbox_sync, .deliver = deliver, .deliver_arg = x->store};
    int rc = x->store ? sbx_outbox_open(&oc, &x->ob) : -ENOMEM;
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: --data-dir: cannot open the outbox in %s: %s\n", obdir,
                strerror(-rc));
        return 1;
    }
    sbx_storecli_set_outbox(x->store, x->ob); /* cache lookups read our own records */
    if (!(x->mon = sbx_execmon_new(x->ob))) {
        fprintf(stderr, "sbx-executor: cannot start the background monitor\n");
        return 1;
    }
    return 0;
}

/* The forwarder and the registry. Returns 0 or 2 (a bad flag). */
static int start_sandboxes(executor *x, const sbx_exec_config *c, bool pool_on)
{
    sbx_portfwd_cfg pcfg = {.bind_host = c->port_bind};
    int rc = sbx_portfwd_create(&pcfg, &x->fwd);
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: --port-bind %s: %s\n", c->port_bind,
                rc == -EINVAL ? "not a numeric IPv4/IPv6 address" : strerror(-rc));
        return 2;
    }
    sbx_reg_cfg rcfg = {
        .data_dir = c->data_dir,
        .init_path = c->init_path,
        .cgroup_parent = c->cgroup_parent,
        .template_names = c->tpl_names,
        .template_dirs = c->tpl_dirs,
        .n_templates = c->n_tpl,
        .allow_weak_isolation = c->allow_weak,
        .idle_timeout_ms = c->idle_timeout_s * 1000,
        .defaults = c->defaults,
        .max = c->max,
        .max_sandboxes = (size_t)c->max_sandboxes,
        .uid_base_first = UID_FIRST_REG,
        .use_pool = pool_on,
        .hooks = {.attach = sbx_exectab_attach,
                  .detach = sbx_exectab_detach,
                  .running = sbx_exectab_running,
                  .arg = x->mon},
        .on_stop = exh_ports_on_stop, /* a stopped sandbox's host ports are closed at once */
        .on_stop_arg = x->fwd,
    };
    char err[512] = "";
    if ((rc = sbx_reg_new(&rcfg, &x->reg, err, sizeof err)) < 0) {
        fprintf(stderr, "sbx-executor: %s\n", err[0] ? err : strerror(-rc));
        return 2;
    }
    return 0;
}

/* Serves until SIGTERM/SIGINT. Returns 0, or 1 when the server cannot start. */
static int serve(executor *x, const sbx_exec_config *c, const sbx_server_opts *so)
{
    x->svc = (sbx_exsvc){.reg = x->reg, .mon = x->mon, .store = x->store, .fwd = x->fwd};
    sbx_service_def def = {.desc = &sbx__v1__sandbox_executor__descriptor,
                           .methods = sbx_executor_methods,
                           .n_methods = sbx_executor_n_methods,
                           .data = &x->svc};
    if (!(x->srv = sbx_server_new(so, &def, 1)))
        return 1;
    sbx_server_start(x->srv);
    char addr[300];
    sbx_listen_addr(c->server.listen, sbx_server_port(x->srv), addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    SBX_LOG_INFO("executor", "serving addr=%s data_dir=%s store=%s init=%s port_bind=%s", addr,
                 c->data_dir, c->store, c->init_path, sbx_portfwd_bind_host(x->fwd));
    int sig = sbx_signals_wait();
    SBX_LOG_INFO("executor", "stopping: health NOT_SERVING, finishing in-flight calls signal=%d",
                 sig);
    __atomic_store_n(&x->svc.stopping, 1, __ATOMIC_RELAXED);
    sbx_server_shutdown(x->srv);
    return 0;
}

static void stop_all(executor *x)
{
    sbx_server_free(x->srv);
    sbx_reg_free(x->reg);        /* kills every sandbox (homes stay) and closes their forwards */
    sbx_sandbox_pool_shutdown(); /* parked inits and their cgroups */
    sbx_portfwd_destroy(x->fwd);
    sbx_execmon_free(x->mon); /* records what background commands were still followed */
    if (x->ob) {
        sbx_outbox_stats st;
        sbx_outbox_flush(x->ob, 2000);
        sbx_outbox_get_stats(x->ob, &st);
        if (st.pending)
            SBX_LOG_WARN("executor",
                         "history records not yet delivered to the store; kept in the "
                         "outbox for the next start pending=%llu",
                         (unsigned long long)st.pending);
        sbx_outbox_close(x->ob);
    }
    sbx_storecli_free(x->store);
}

int main(int argc, char **argv)
{
    sbx_exec_config c;
    int code = sbx_exec_config_parse(&c, argc, argv);
    if (code != 0)
        return code;
    sbx_signals_block();
    sbx_server_opts so;
    sbx_server_flags_apply(&c.server, &so, "sbx.v1.SandboxExecutor"); /* the log level first */
    sbx_sandbox_caps caps;
    if (check_isolation(&c, &caps) < 0) {
        sbx_exec_config_free(&c);
        return 1;
    }
    bool pool_on = start_pool(&c, &caps);
    sbx_rpc_init();
    executor x = {0};
    if ((code = start_history(&x, &c)) == 0 && (code = start_sandboxes(&x, &c, pool_on)) == 0)
        code = serve(&x, &c, &so);
    stop_all(&x);
    sbx_rpc_shutdown();
    sbx_exec_config_free(&c);
    if (code == 0)
        SBX_LOG_INFO("executor", "stopped cleanly");
    return code;
}
