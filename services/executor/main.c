/* main.c (sbx-executor): wires the settings (config.c), the sandbox runtime, the warm pool, the
 * disk limits of the homes, the stores (a client and an outbox each), the background monitor, the
 * port forwarder, the egress proxies, the registry and the SandboxExecutor handlers into the gRPC
 * server (and /metrics when asked), then serves until SIGTERM/SIGINT and tears everything down in
 * order (calls, sandboxes, pool, forwarder, background followers, outbox). Before serving it lifts
 * a container's /proc masks and proves with a self-test sandbox that it can run sandboxes; while it
 * cannot, health answers NOT_SERVING.
 *
 * Threads: main's; every library starts its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "exectab.h"
#include "handlers.h"
#include "egress.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "portfwd.h"
#include "registry.h"
#include "rpc_server.h"
#include "sandbox.h"
#include "selftest.h"
#include "sbx/v1/executor.pb-c.h"
#include "serve.h"
#include "stores.h"
#include "uidrange.h"

/* What main starts, in start order (stopped in reverse by stop_all). */
typedef struct executor {
    char cg_parent[32]; /* "sbx-<hash of the data dir>": this executor's cgroups, no other's */
    sbx_uid_range uids; /* this executor's host uids: [self-test block][registry][pool] */
    sbx_stores *stores;
    sbx_execmon *mon;
    sbx_portfwd *fwd;
    sbx_egress *egress;
    sbx_egress_policy *egress_default;
    sbx_reg *reg;
    sbx_server *srv;
    sbx_exsvc svc;
    sbx_selftest_cfg selftest;
    bool selftest_ok;        /* the start-up self-test passed */
    char selftest_why[256];  /* else why */
    sbx_selftest_mon *retry; /* retries it while it fails (health NOT_SERVING meanwhile) */
    sbx_metrics_http *metrics;
} executor;

/* The executor's own /metrics lines: the warm pool's claims and misses, the egress proxies',
 * the stores' outboxes. */
static void metrics_write(FILE *out, void *arg)
{
    executor *x = arg;
    sbx_sandbox_pool_stats st;
    if (sbx_sandbox_pool_stats_get(&st) == 0)
        fprintf(out,
                "# HELP sbx_executor_pool_claims_total Sandboxes served from the warm pool.\n"
                "# TYPE sbx_executor_pool_claims_total counter\n"
                "sbx_executor_pool_claims_total %llu\n"
                "# HELP sbx_executor_pool_misses_total Pool creates built cold (no parked init "
                "fitted).\n"
                "# TYPE sbx_executor_pool_misses_total counter\n"
                "sbx_executor_pool_misses_total %llu\n"
                "# HELP sbx_executor_pool_ready Parked inits ready to be claimed.\n"
                "# TYPE sbx_executor_pool_ready gauge\n"
                "sbx_executor_pool_ready %zu\n"
                "# HELP sbx_executor_pool_target Parked inits the pool keeps.\n"
                "# TYPE sbx_executor_pool_target gauge\n"
                "sbx_executor_pool_target %zu\n",
                (unsigned long long)st.claimed, (unsigned long long)st.cold_creates, st.ready,
                st.target);
    sbx_egress_metrics_write(out, x->egress);
    sbx_stores_metrics_write(out, x->stores);
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

/* A container runtime's /proc masks would make every sandbox's proc mount fail: lift them in a
 * private mount namespace of this process (runtime/procmask.c). */
static void lift_proc_masks(void)
{
    int n = sbx_sandbox_lift_proc_masks();
    if (n > 0)
        SBX_LOG_INFO("executor",
                     "/proc masks of the container lifted in a private mount "
                     "namespace n=%d",
                     n);
    else if (n < 0)
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "executor", n,
                      "/proc is masked (a container?) and the masks cannot be lifted: sandboxes "
                      "need a fresh /proc; grant CAP_SYS_ADMIN");
}

/* Host uids for every sandbox of this executor, reserved host-wide (uidrange.h) so that no
 * other executor on the machine hands out the same ones: one block for the self-test, then
 * --max-sandboxes blocks for the registry, then as many for the warm pool. */
static int reserve_uids(executor *x, const sbx_exec_config *c)
{
    uint64_t need = (1 + 2 * (uint64_t)c->max_sandboxes) * 65536u;
    char err[512] = "";
    int rc = sbx_uid_range_reserve(c->run_dir, c->data_dir, need, &x->uids, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: host uids: %s\n", err);
        return -1;
    }
    SBX_LOG_INFO("executor", "host uids reserved first=%u count=%llu slot=%u run_dir=%s",
                 x->uids.first, (unsigned long long)x->uids.count, x->uids.slot, c->run_dir);
    return 0;
}

/* The cgroup parent of this executor's sandboxes, "sbx-" + 16 hex of a hash of its data dir's
 * real path: several executors on one host (sharing their own cgroup) never touch each other's
 * groups, and a restart on the same data dir finds the groups its previous run left. Those are
 * removed now (after a kill -9 the inits die with the executor, their groups stay). */
static void scope_cgroups(executor *x, sbx_exec_config *c)
{
    char real[PATH_MAX];
    const char *dir = realpath(c->data_dir, real) ? real : c->data_dir;
    uint64_t h = 14695981039346656037ull;
    for (const char *p = dir; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    snprintf(x->cg_parent, sizeof x->cg_parent, "sbx-%016llx", (unsigned long long)h);
    c->cgroup_parent = x->cg_parent;
    size_t removed = 0;
    int rc = sbx_sandbox_sweep_cgroups(x->cg_parent, &removed);
    if (removed || rc < 0)
        SBX_LOG_INFO("executor",
                     "removed the sandbox cgroups a previous run left removed=%zu parent=%s%s",
                     removed, x->cg_parent, rc < 0 ? " (some would not go)" : "");
}

static uint32_t uid_selftest(const executor *x)
{
    return x->uids.first;
}

static uint32_t uid_registry(const executor *x)
{
    return x->uids.first + 65536u;
}

/* The warm pool: its uid range sits above every block the registry hands out. Returns whether
 * it is on. */
static bool start_pool(const executor *x, const sbx_exec_config *c, const sbx_sandbox_caps *caps)
{
    if (c->pool_size <= 0 || !caps->namespaces)
        return false;
    uint64_t pool_first = uid_registry(x) + (uint64_t)c->max_sandboxes * 65536u;
    uint64_t pool_count = (uint64_t)c->max_sandboxes * 65536u;
    sbx_sandbox_pool_cfg pc = {
        .size = (size_t)c->pool_size,
        .init_path = c->init_path,
        .cgroup_parent = c->cgroup_parent,
        .uid_first = (uint32_t)pool_first,
        .uid_count = (uint32_t)pool_count, /* ids, not blocks: one 65536-id block a sandbox */
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

/* The disk limits of the homes (runtime/disk.c): probes whether ext4 images on loop devices
 * work under --data-dir and keeps blank images ready for the warm pool's creates. Without a
 * mechanism it refuses to start unless --allow-weak-isolation. Returns 0 (*images: homes are
 * images) or -1. */
static int start_disk(const sbx_exec_config *c, bool *images)
{
    *images = false;
    if (!c->disk_limit) {
        SBX_LOG_INFO("executor", "disk limits off (--disk-limit off): homes are directories and "
                                 "--disk bounds each file only");
        return 0;
    }
    exv_limits def;
    char err[256] = "", dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/disk", c->data_dir);
    if (exv_limits_resolve(NULL, &c->defaults, &c->max, &def, err, sizeof err) != SBX_OK) {
        fprintf(stderr, "sbx-executor: %s\n", err);
        return -1;
    }
    sbx_disk_cfg dc = {.dir = dir,
                       .blanks =
                           c->pool_size > 0 ? (size_t)(c->pool_size < 64 ? c->pool_size : 64) : 1,
                       .bytes = (uint64_t)def.disk_bytes,
                       .inodes = (uint64_t)def.disk_inodes};
    sbx_disk_caps dcap;
    int rc = sbx_disk_setup(&dc, &dcap);
    if (rc == 0 && dcap.mechanism) {
        SBX_LOG_INFO("executor",
                     "disk limits enforced on each home (bytes and inodes) mechanism=%s "
                     "blanks=%zu probe_ms=%.1f dir=%s",
                     dcap.mechanism, dc.blanks, dcap.probe_us / 1000.0, dir);
        *images = true;
        return 0;
    }
    const char *why = rc < 0 ? strerror(-rc) : dcap.why;
    if (!c->allow_weak) {
        fprintf(stderr,
                "sbx-executor: cannot enforce disk limits: an ext4 image on a loop device does "
                "not work under --data-dir %s (%s); give the executor /dev/loop-control and "
                "/dev/loop* and mke2fs (e2fsprogs), or pass --disk-limit off (or "
                "--allow-weak-isolation) to run with only a per-file limit\n",
                c->data_dir, why);
        SBX_LOG_ERROR("executor", "disk limits unavailable; refusing to start reason=\"%s\"", why);
        return -1;
    }
    SBX_LOG_WARN("executor",
                 "disk limits NOT enforced: homes are directories with only a per-file limit "
                 "(--allow-weak-isolation) reason=\"%s\"",
                 why);
    return 0;
}

/* The stores (a client and an outbox each) and the monitor that records into the outboxes.
 * Returns 0 or 1 (the exit status). */
static int start_history(executor *x, const sbx_exec_config *c)
{
    char obdir[PATH_MAX];
    snprintf(obdir, sizeof obdir, "%s/outbox", c->data_dir);
    sbx_stores_cfg sc = {
        .addrs = &c->stores, .api_key = c->store_key, .outbox_root = obdir, .sync = c->outbox_sync};
    char err[600] = "";
    int rc = sbx_stores_open(&sc, &x->stores, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: --data-dir: %s\n", err[0] ? err : strerror(-rc));
        return 1;
    }
    if (!(x->mon = sbx_execmon_new(x->stores))) {
        fprintf(stderr, "sbx-executor: cannot start the background monitor\n");
        return 1;
    }
    char jdir[PATH_MAX];
    size_t recovered = 0;
    snprintf(jdir, sizeof jdir, "%s/running", c->data_dir);
    int jrc = sbx_execmon_journal(x->mon, jdir, &recovered);
    if (jrc < 0) {
        fprintf(stderr, "sbx-executor: --data-dir: cannot create %s: %s\n", jdir, strerror(-jrc));
        return 1;
    }
    if (recovered)
        SBX_LOG_INFO("executor",
                     "background commands the previous run left running recorded as killed "
                     "(SIGKILL) count=%zu",
                     recovered);
    return 0;
}

/* The egress proxies (egress/). Returns 0 or 2 (a bad --egress-* flag). */
static int start_egress(executor *x, const sbx_exec_config *c)
{
    /* sandboxes never reach the executor or any of its stores through the proxies */
    const char **svc = calloc(1 + c->stores.n, sizeof *svc);
    if (!svc) {
        fprintf(stderr, "sbx-executor: out of memory\n");
        return 1;
    }
    size_t nsvc = 0;
    svc[nsvc++] = c->server.listen;
    for (size_t i = 0; i < c->stores.n; i++)
        svc[nsvc++] = c->stores.v[i];
    sbx_egress_cfg ec = {.allow_private = c->egress_allow_private,
                         .deny = c->egress_deny,
                         .service_addrs = svc,
                         .n_service_addrs = nsvc,
                         .max_conns = (uint32_t)c->egress_max_conns,
                         .idle_timeout_s = (uint32_t)c->egress_idle_timeout_s};
    char err[512] = "";
    int rc = sbx_egress_policy_from_list(c->egress_default, false, "--egress-default",
                                         &x->egress_default, err, sizeof err);
    if (rc == 0)
        rc = sbx_egress_new(&ec, &x->egress, err, sizeof err);
    free(svc); /* sbx_egress_new keeps its own rules, not the array */
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: %s\n", err[0] ? err : strerror(-rc));
        return 2;
    }
    return 0;
}

/* The forwarder and the registry. Returns 0 or 2 (a bad flag). */
static int start_sandboxes(executor *x, const sbx_exec_config *c, bool pool_on, bool images)
{
    if (start_egress(x, c) != 0)
        return 2;
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
        .uid_base_first = uid_registry(x),
        .use_pool = pool_on,
        .home_images = images,
        .hooks = {.attach = sbx_exectab_attach,
                  .detach = sbx_exectab_detach,
                  .running = sbx_exectab_running,
                  .arg = x->mon},
        .on_stop = exh_ports_on_stop, /* a stopped sandbox's host ports are closed at once */
        .on_stop_arg = x->fwd,
        .egress = x->egress,
        .egress_default = x->egress_default,
    };
    char err[512] = "";
    if ((rc = sbx_reg_new(&rcfg, &x->reg, err, sizeof err)) < 0) {
        fprintf(stderr, "sbx-executor: %s\n", err[0] ? err : strerror(-rc));
        return 2;
    }
    return 0;
}

/* Proves that a sandbox can be built and run here, before serving (selftest.c). */
static void run_selftest(executor *x, const sbx_exec_config *c, bool pool_on)
{
    x->selftest = (sbx_selftest_cfg){
        .init_path = c->init_path,
        .cgroup_parent = c->cgroup_parent,
        .use_pool = pool_on,
        .uid_base = uid_selftest(x),
        .limits = {.memory_bytes = (uint64_t)c->defaults.memory_bytes,
                   .pids = (uint64_t)c->defaults.pids,
                   .cpu_millis = (uint32_t)c->defaults.cpu_millis},
    };
    x->selftest_ok = sbx_selftest_run(&x->selftest, x->selftest_why, sizeof x->selftest_why) == 0;
    if (!x->selftest_ok)
        SBX_LOG_ERROR("executor",
                      "self-test failed: this executor cannot run sandboxes; health is "
                      "NOT_SERVING until it passes (retried every 10 s) reason=\"%s\"",
                      x->selftest_why);
}

static void selftest_passed(void *arg)
{
    executor *x = arg;
    SBX_LOG_INFO("executor", "self-test passed on retry: health SERVING");
    sbx_server_set_serving(x->srv, true);
}

/* Serves until SIGTERM/SIGINT. Returns 0, or 1 when the server cannot start. */
static int serve(executor *x, const sbx_exec_config *c, const sbx_server_opts *so)
{
    x->svc = (sbx_exsvc){
        .reg = x->reg, .mon = x->mon, .stores = x->stores, .fwd = x->fwd, .egress = x->egress};
    x->svc.watch_max_dirs = (int)c->watch_max_dirs;
    x->svc.watch_max_streams = (int)c->watch_max_streams;
    sbx_service_def def = {.desc = &sbx__v1__sandbox_executor__descriptor,
                           .methods = sbx_executor_methods,
                           .n_methods = sbx_executor_n_methods,
                           .data = &x->svc};
    if (!(x->srv = sbx_server_new(so, &def, 1)))
        return 1;
    if (c->metrics_listen) {
        int mport = 0;
        if (!(x->metrics = sbx_metrics_listen(c->metrics_listen, x->srv, metrics_write, x, &mport)))
            return 1;
        char maddr[300];
        sbx_listen_addr(c->metrics_listen, mport, maddr, sizeof maddr);
        SBX_LOG_INFO("executor", "metrics on http://%s/metrics", maddr);
    }
    sbx_server_start(x->srv);
    if (!x->selftest_ok) {
        sbx_server_set_serving(x->srv, false);
        x->retry = sbx_selftest_retry(&x->selftest, selftest_passed, x);
    }
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
    sbx_selftest_retry_stop(x->retry);
    x->retry = NULL;
    sbx_server_shutdown(x->srv);
    return 0;
}

static void stop_all(executor *x)
{
    sbx_metrics_stop(x->metrics);
    sbx_server_free(x->srv);
    sbx_reg_free(x->reg);       /* kills every sandbox (homes stay) and closes their forwards */
    sbx_egress_free(x->egress); /* after the sandboxes: their records are gone */
    sbx_egress_policy_unref(x->egress_default);
    sbx_sandbox_pool_shutdown(); /* parked inits and their cgroups */
    sbx_disk_shutdown();         /* blank images unmounted (kept for the next start) */
    if (x->cg_parent[0])
        sbx_sandbox_cgroups_done(x->cg_parent); /* no sandbox or parked init is left */
    sbx_portfwd_destroy(x->fwd);
    sbx_execmon_free(x->mon);          /* records what background commands were still followed */
    sbx_stores_close(x->stores, 2000); /* what is not delivered stays queued for the next start */
    sbx_uid_range_release(&x->uids);   /* last: no sandbox of ours is left */
}

int main(int argc, char **argv)
{
    sbx_exec_config c;
    int code = sbx_exec_config_parse(&c, argc, argv);
    if (code != 0)
        return code;
    sbx_server_opts so;
    sbx_server_flags_apply(&c.server, &so, "sbx.v1.SandboxExecutor"); /* the log level first */
    lift_proc_masks();                                                /* before any thread */
    sbx_signals_block();
    sbx_sandbox_caps caps;
    if (check_isolation(&c, &caps) < 0) {
        sbx_exec_config_free(&c);
        return 1;
    }
    executor x = {0};
    if (reserve_uids(&x, &c) < 0) {
        sbx_exec_config_free(&c);
        return 2;
    }
    scope_cgroups(&x, &c);
    bool images = false;
    if (start_disk(&c, &images) < 0) {
        sbx_uid_range_release(&x.uids);
        sbx_exec_config_free(&c);
        return 1;
    }
    bool pool_on = start_pool(&x, &c, &caps);
    sbx_rpc_init();
    run_selftest(&x, &c, pool_on);
    if ((code = start_history(&x, &c)) == 0 &&
        (code = start_sandboxes(&x, &c, pool_on, images)) == 0)
        code = serve(&x, &c, &so);
    stop_all(&x);
    sbx_rpc_shutdown();
    sbx_exec_config_free(&c);
    if (code == 0)
        SBX_LOG_INFO("executor", "stopped cleanly");
    return code;
}
