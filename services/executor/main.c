/* main.c (sbx-executor): wires the flags, the sandbox runtime, the registry, the execution
 * table, the outbox to the store and the SandboxExecutor handlers into the gRPC server, then
 * serves until SIGTERM/SIGINT and tears everything down in order (calls, sandboxes, background
 * followers, outbox). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

#define N_OWN 25

typedef struct flags {
    const char *data_dir, *store, *store_key, *port_bind, *init_path, *templates, *cgroup_parent;
    bool allow_weak, outbox_sync;
    int64_t idle_timeout_s, max_sandboxes, pool_size;
    int64_t memory, memory_max, pids, pids_max, cpu, cpu_max, cmd_timeout, cmd_timeout_max;
    int64_t max_output, max_output_max, open_files, open_files_max, disk, disk_max;
} flags;

static int deliver(void *arg, const char *tenant, const uint8_t *req, size_t len, char *err,
                   size_t errlen)
{
    return sbx_storecli_record(arg, tenant, req, len, 10000, err, errlen);
}

/* --init-path default: sbx-init next to this binary, else the build tree's. */
static const char *default_init_path(char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        snprintf(buf, len, "%s/sbx-init", dirname(self));
        if (access(buf, X_OK) == 0)
            return buf;
    }
#ifdef SBX_INIT_BUILD_PATH
    snprintf(buf, len, "%s", SBX_INIT_BUILD_PATH);
    return buf;
#else
    return "sbx-init";
#endif
}

/* --template NAME=DIR[,NAME=DIR]: splits into arrays (malloc'd, in place of a copy). */
static int parse_templates(const char *spec, char **copy, const char ***names, const char ***dirs,
                           size_t *n)
{
    *copy = NULL;
    *names = *dirs = NULL;
    *n = 0;
    if (!spec || !spec[0])
        return 0;
    *copy = strdup(spec);
    size_t cap = 1;
    for (const char *s = spec; *s; s++)
        cap += *s == ',';
    *names = calloc(cap, sizeof **names);
    *dirs = calloc(cap, sizeof **dirs);
    if (!*copy || !*names || !*dirs)
        return -1;
    char *save = NULL;
    for (char *t = strtok_r(*copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq || eq == t || !eq[1]) {
            fprintf(stderr, "sbx-executor: --template: \"%s\" is not NAME=DIR\n", t);
            return -1;
        }
        *eq = 0;
        char e[128];
        if (exv_template(t, e, sizeof e) != 0 || !t[0]) {
            fprintf(stderr, "sbx-executor: --template: %s\n", e);
            return -1;
        }
        if (access(eq + 1, R_OK | X_OK) != 0) {
            fprintf(stderr, "sbx-executor: --template %s: cannot read directory %s: %s\n", t,
                    eq + 1, strerror(errno));
            return -1;
        }
        (*names)[*n] = t;
        (*dirs)[*n] = eq + 1;
        (*n)++;
    }
    return 0;
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
    SBX_LOG_INFO("executor", "isolation namespaces=%s cgroup_v2=%s kill_tree=%s limits=%s "
                 "rlimits=nofile,fsize seccomp=on-in-init%s",
                 c->namespaces ? "user,pid,mount,net,ipc,uts,cgroup" : "UNAVAILABLE",
                 c->cgroup_v2 ? "yes" : "no", c->cgroup_v2_kill ? "cgroup.kill" : "process-group",
                 lim, weak && !c->namespaces ? " WEAK-ISOLATION" : "");
}

int main(int argc, char **argv)
{
    sbx_server_flags sf;
    flags f = {0};
    char initbuf[PATH_MAX + 16];
    const char *init_default = default_init_path(initbuf, sizeof initbuf);
    sbx_cfg_opt opts[SBX_SERVER_FLAG_COUNT + N_OWN];
    sbx_server_flag_rows(opts, &sf, "127.0.0.1:50051");
    sbx_cfg_opt own[N_OWN] = {
        {"data-dir", "SBX_DATA_DIR", SBX_CFG_STR, "./sbx-data/executor", 0, 0, NULL,
         "directory for sandbox homes (sandboxes/<tenant>/<project>/home) and the outbox", &f.data_dir},
        {"store", "SBX_STORE", SBX_CFG_STR, "127.0.0.1:50052", 0, 0, NULL,
         "sbx-store address where finished commands are recorded", &f.store},
        {"store-api-key", "SBX_STORE_API_KEY", SBX_CFG_STR, NULL, 0, 0, NULL,
         "API key (a @service principal) for calls to the store", &f.store_key},
        {"port-bind", "SBX_PORT_BIND", SBX_CFG_STR, "127.0.0.1", 0, 0, NULL,
         "host address that forwarded sandbox ports listen on", &f.port_bind},
        {"init-path", "SBX_INIT_PATH", SBX_CFG_STR, init_default, 0, 0, NULL,
         "the sbx-init helper binary (default: next to sbx-executor)", &f.init_path},
        {"template", "SBX_TEMPLATE", SBX_CFG_STR, NULL, 0, 0, NULL,
         "rootfs templates NAME=DIR[,NAME=DIR] (read-only root trees CreateSandbox may name)",
         &f.templates},
        {"allow-weak-isolation", "SBX_ALLOW_WEAK_ISOLATION", SBX_CFG_BOOL, "off", 0, 0, NULL,
         "start even when namespaces cannot be created (sandboxes are then NOT isolated)",
         &f.allow_weak},
        {"idle-timeout", "SBX_IDLE_TIMEOUT", SBX_CFG_INT, "900", 0, 604800, NULL,
         "default idle timeout of a sandbox, seconds (0 = never)", &f.idle_timeout_s},
        {"max-sandboxes", "SBX_MAX_SANDBOXES", SBX_CFG_INT, "1000", 1, 60000, NULL,
         "live sandboxes at most (each gets its own 65536-id host uid block)", &f.max_sandboxes},
        {"pool-size", "SBX_POOL_SIZE", SBX_CFG_INT, "4", 0, 64, NULL,
         "sandbox inits kept ready (namespaces, cgroups and root built ahead) so CreateSandbox only "
         "attaches the home; 0 = build every sandbox on demand", &f.pool_size},
        {"memory", "SBX_MEMORY", SBX_CFG_SIZE, "1G", 16 << 20, 1LL << 40, NULL,
         "default memory limit of a sandbox", &f.memory},
        {"memory-max", "SBX_MEMORY_MAX", SBX_CFG_SIZE, "16G", 16 << 20, 1LL << 40, NULL,
         "largest memory limit a CreateSandbox may ask for", &f.memory_max},
        {"pids", "SBX_PIDS", SBX_CFG_INT, "512", 8, 1 << 22, NULL,
         "default tasks (processes + threads) limit of a sandbox", &f.pids},
        {"pids-max", "SBX_PIDS_MAX", SBX_CFG_INT, "32768", 8, 1 << 22, NULL,
         "largest pids limit a CreateSandbox may ask for", &f.pids_max},
        {"cpu-millis", "SBX_CPU_MILLIS", SBX_CFG_INT, "1000", 10, 1 << 20, NULL,
         "default CPU bandwidth of a sandbox in thousandths of a core", &f.cpu},
        {"cpu-millis-max", "SBX_CPU_MILLIS_MAX", SBX_CFG_INT, "0", 0, 1 << 20, NULL,
         "largest CPU bandwidth a CreateSandbox may ask for (0 = number of cores x 1000)", &f.cpu_max},
        {"command-timeout-ms", "SBX_COMMAND_TIMEOUT_MS", SBX_CFG_INT, "1800000", 1, 86400000, NULL,
         "default wall-clock timeout of a command, ms", &f.cmd_timeout},
        {"command-timeout-ms-max", "SBX_COMMAND_TIMEOUT_MS_MAX", SBX_CFG_INT, "86400000", 1, 86400000,
         NULL, "largest default command timeout a CreateSandbox may ask for, ms", &f.cmd_timeout_max},
        {"max-output", "SBX_MAX_OUTPUT", SBX_CFG_SIZE, "16M", 1, 1LL << 40, NULL,
         "default cap on each of stdout and stderr of a command", &f.max_output},
        {"max-output-max", "SBX_MAX_OUTPUT_MAX", SBX_CFG_SIZE, "1G", 1, 1LL << 40, NULL,
         "largest default output cap a CreateSandbox may ask for", &f.max_output_max},
        {"open-files", "SBX_OPEN_FILES", SBX_CFG_INT, "1024", 16, 1 << 20, NULL,
         "default RLIMIT_NOFILE of commands", &f.open_files},
        {"open-files-max", "SBX_OPEN_FILES_MAX", SBX_CFG_INT, "65536", 16, 1 << 20, NULL,
         "largest open-files limit a CreateSandbox may ask for", &f.open_files_max},
        {"disk", "SBX_DISK", SBX_CFG_SIZE, "4G", 1, 1LL << 50, NULL,
         "default disk limit of a sandbox (largest file a command or the file API may write)", &f.disk},
        {"disk-max", "SBX_DISK_MAX", SBX_CFG_SIZE, "1T", 1, 1LL << 50, NULL,
         "largest disk limit a CreateSandbox may ask for", &f.disk_max},
        {"outbox-sync", "SBX_OUTBOX_SYNC", SBX_CFG_BOOL, "on", 0, 0, NULL,
         "fdatasync each history record before the command's result is answered", &f.outbox_sync},
    };
    memcpy(opts + SBX_SERVER_FLAG_COUNT, own, sizeof own);
    size_t nopts = sizeof opts / sizeof opts[0];
    sbx_cfg_parse_or_exit(opts, nopts, argc, argv, NULL, "sbx-executor",
                          "sbx-executor: isolated Linux sandboxes that run commands, hold files and "
                          "forward ports.");
    if (!f.cpu_max) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        f.cpu_max = (nc > 0 ? nc : 1) * 1000;
    }
    char *tpl_copy = NULL;
    const char **tpl_names = NULL, **tpl_dirs = NULL;
    size_t n_tpl = 0;
    if (parse_templates(f.templates, &tpl_copy, &tpl_names, &tpl_dirs, &n_tpl) < 0) {
        free(tpl_copy);
        free(tpl_names);
        free(tpl_dirs);
        return 2;
    }
    sbx_signals_block();
    sbx_server_opts so;
    sbx_server_flags_apply(&sf, &so, "sbx.v1.SandboxExecutor");

    /* isolation: probe once, say what is enforced, refuse to run unisolated unless allowed */
    sbx_sandbox_caps caps;
    int rc = sbx_sandbox_caps_detect(f.init_path, &caps);
    if (rc < 0 || !caps.namespaces) {
        const char *why = rc < 0 ? strerror(-rc) : caps.namespaces_err;
        if (!f.allow_weak) {
            fprintf(stderr, "sbx-executor: cannot create sandbox namespaces (%s) with --init-path "
                    "%s; refusing to run commands without isolation (pass --allow-weak-isolation "
                    "to run anyway)\n", why, f.init_path);
            SBX_LOG_ERROR("executor", "namespaces unavailable; refusing to start reason=\"%s\"", why);
            free(tpl_copy);
            free(tpl_names);
            free(tpl_dirs);
            return 1;
        }
        SBX_LOG_WARN("executor", "namespaces unavailable; running WITHOUT isolation "
                     "(--allow-weak-isolation) reason=\"%s\"", why);
        if (rc < 0)
            memset(&caps, 0, sizeof caps);
    }
    log_caps(&caps, f.allow_weak);
    /* warm pool: its uid range sits above every block the registry hands out */
    const uint32_t uid_first_reg = 200000;
    bool pool_on = f.pool_size > 0 && caps.namespaces;
    if (pool_on) {
        sbx_sandbox_pool_cfg pc = {
            .size = (size_t)f.pool_size,
            .init_path = f.init_path,
            .cgroup_parent = f.cgroup_parent,
            .uid_first = uid_first_reg + (uint32_t)f.max_sandboxes * 65536u,
            .uid_count = (uint32_t)f.max_sandboxes,
            .limits = {.memory_bytes = (uint64_t)f.memory, .pids = (uint64_t)f.pids,
                       .cpu_millis = (uint32_t)f.cpu},
        };
        if ((rc = sbx_sandbox_pool_config(&pc)) < 0) {
            SBX_LOG_WARN("executor", "warm pool unavailable, sandboxes are built on demand err=\"%s\"",
                         strerror(-rc));
            pool_on = false;
        } else {
            SBX_LOG_INFO("executor", "warm pool size=%lld", (long long)f.pool_size);
        }
    }

    sbx_rpc_init();
    int exit_code = 1;
    sbx_storecli *store = sbx_storecli_new(f.store, f.store_key);
    sbx_outbox *ob = NULL;
    sbx_execmon *mon = NULL;
    sbx_reg *reg = NULL;
    sbx_portfwd *fwd = NULL;
    sbx_server *srv = NULL;
    char obdir[PATH_MAX], err[512] = "";
    snprintf(obdir, sizeof obdir, "%s/outbox", f.data_dir);
    sbx_outbox_cfg oc = {.dir = obdir, .sync = f.outbox_sync, .deliver = deliver, .deliver_arg = store};
    if (!store || (rc = sbx_outbox_open(&oc, &ob)) < 0) {
        fprintf(stderr, "sbx-executor: --data-dir: cannot open the outbox in %s: %s\n", obdir,
                strerror(store ? -rc : ENOMEM));
        goto out;
    }
    if (!(mon = sbx_execmon_new(ob))) {
        fprintf(stderr, "sbx-executor: cannot start the background monitor\n");
        goto out;
    }
    sbx_portfwd_cfg pcfg = {.bind_host = f.port_bind};
    if ((rc = sbx_portfwd_create(&pcfg, &fwd)) < 0) {
        fprintf(stderr, "sbx-executor: --port-bind %s: %s\n", f.port_bind,
                rc == -EINVAL ? "not a numeric IPv4/IPv6 address" : strerror(-rc));
        exit_code = 2;
        goto out;
    }
    sbx_reg_cfg rcfg = {
        .data_dir = f.data_dir,
        .init_path = f.init_path,
        .cgroup_parent = f.cgroup_parent,
        .template_names = tpl_names,
        .template_dirs = tpl_dirs,
        .n_templates = n_tpl,
        .allow_weak_isolation = f.allow_weak,
        .idle_timeout_ms = f.idle_timeout_s * 1000,
        .defaults = {f.memory, f.pids, f.cpu, f.cmd_timeout, f.max_output, f.open_files, f.disk},
        .max = {f.memory_max, f.pids_max, f.cpu_max, f.cmd_timeout_max, f.max_output_max,
                f.open_files_max, f.disk_max},
        .max_sandboxes = (size_t)f.max_sandboxes,
        .uid_base_first = uid_first_reg,
        .use_pool = pool_on,
        .hooks = {.attach = sbx_exectab_attach,
                  .detach = sbx_exectab_detach,
                  .running = sbx_exectab_running,
                  .arg = mon},
        .on_stop = exh_ports_on_stop, /* a stopped sandbox's host ports are closed at once */
        .on_stop_arg = fwd,
    };
    if ((rc = sbx_reg_new(&rcfg, &reg, err, sizeof err)) < 0) {
        fprintf(stderr, "sbx-executor: %s\n", err[0] ? err : strerror(-rc));
        exit_code = 2;
        goto out;
    }
    sbx_exsvc svc = {.reg = reg, .mon = mon, .ob = ob, .store = store, .port_bind = f.port_bind,
                     .fwd = fwd};
    sbx_service_def def = {.desc = &sbx__v1__sandbox_executor__descriptor,
                           .methods = sbx_executor_methods,
                           .n_methods = sbx_executor_n_methods,
                           .data = &svc};
    if (!(srv = sbx_server_new(&so, &def, 1)))
        goto out;
    sbx_server_start(srv);
    char addr[300];
    sbx_listen_addr(sf.listen, sbx_server_port(srv), addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    SBX_LOG_INFO("executor", "serving addr=%s data_dir=%s store=%s init=%s port_bind=%s", addr,
                 f.data_dir, f.store, f.init_path, sbx_portfwd_bind_host(fwd));
    int sig = sbx_signals_wait();
    SBX_LOG_INFO("executor", "stopping: health NOT_SERVING, finishing in-flight calls signal=%d", sig);
    __atomic_store_n(&svc.stopping, 1, __ATOMIC_RELAXED);
    sbx_server_shutdown(srv);
    exit_code = 0;

out:
    sbx_server_free(srv);
    sbx_reg_free(reg);      /* kills every sandbox (homes stay) and closes their forwards */
    sbx_sandbox_pool_shutdown(); /* parked inits and their cgroups */
    sbx_portfwd_destroy(fwd);
    sbx_execmon_free(mon);  /* records what background commands were still followed */
    if (ob) {
        sbx_outbox_stats st;
        sbx_outbox_flush(ob, 2000);
        sbx_outbox_get_stats(ob, &st);
        if (st.pending)
            SBX_LOG_WARN("executor", "history records not yet delivered to the store; kept in the "
                         "outbox for the next start pending=%llu", (unsigned long long)st.pending);
        sbx_outbox_close(ob);
    }
    sbx_storecli_free(store);
    sbx_rpc_shutdown();
    free(tpl_copy);
    free(tpl_names);
    free(tpl_dirs);
    if (exit_code == 0)
        SBX_LOG_INFO("executor", "stopped cleanly");
    return exit_code;
}
