/* config.c: sbx-executor's flag table and its parsing (see config.h). Each row binds a flag to
 * a field of sbx_exec_config by offset, so the table is plain data, read top to bottom as
 * --help prints it. */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUMMARY                                                                                    \
    "sbx-executor: isolated Linux sandboxes that run commands, hold files and forward ports."

typedef struct {
    sbx_cfg_opt opt; /* dst unset: the field at off */
    size_t off;
} row;

#define F(field) offsetof(sbx_exec_config, field)

static const row ROWS[] = {
    {{"data-dir", "SBX_DATA_DIR", SBX_CFG_STR, "./sbx-data/executor", 0, 0, NULL,
      "directory for sandbox homes (sandboxes/<tenant>/<project>/home) and the outbox", NULL},
     F(data_dir)},
    {{"run-dir", "SBX_RUN_DIR", SBX_CFG_STR, "/run/sbx", 0, 0, NULL,
      "host-wide directory where executors on this machine reserve disjoint host uid ranges "
      "(lock files); executors sharing a kernel must share it",
      NULL},
     F(run_dir)},
    {{"store", "SBX_STORE", SBX_CFG_STR, "127.0.0.1:50052", 0, 0, NULL,
      "sbx-store addresses HOST:PORT[,HOST:PORT...]: each project's records and cache lookups "
      "go to the store libsbx picks for it (one outbox per store)",
      NULL},
     F(store)},
    {{"store-api-key", "SBX_STORE_API_KEY", SBX_CFG_STR, NULL, 0, 0, NULL,
      "API key (a @service principal) for calls to the store", NULL},
     F(store_key)},
    {{"port-bind", "SBX_PORT_BIND", SBX_CFG_STR, "127.0.0.1", 0, 0, NULL,
      "host address that forwarded sandbox ports listen on", NULL},
     F(port_bind)},
    {{"init-path", "SBX_INIT_PATH", SBX_CFG_STR, NULL /* init_default */, 0, 0, NULL,
      "the sbx-init helper binary (default: next to sbx-executor)", NULL},
     F(init_path)},
    {{"template", "SBX_TEMPLATE", SBX_CFG_STR, NULL, 0, 0, NULL,
      "rootfs templates NAME=DIR[,NAME=DIR] (read-only root trees CreateSandbox may name)", NULL},
     F(templates)},
    {{"allow-weak-isolation", "SBX_ALLOW_WEAK_ISOLATION", SBX_CFG_BOOL, "off", 0, 0, NULL,
      "start even when namespaces cannot be created (sandboxes are then NOT isolated)", NULL},
     F(allow_weak)},
    {{"idle-timeout", "SBX_IDLE_TIMEOUT", SBX_CFG_INT, "900", 0, 604800, NULL,
      "default idle timeout of a sandbox, seconds (0 = never)", NULL},
     F(idle_timeout_s)},
    {{"max-sandboxes", "SBX_MAX_SANDBOXES", SBX_CFG_INT, "1000", 1, 30000, NULL,
      "live sandboxes at most (each gets its own 65536-id host uid block)", NULL},
     F(max_sandboxes)},
    {{"pool-size", "SBX_POOL_SIZE", SBX_CFG_INT, "4", 0, 64, NULL,
      "sandbox inits kept ready (namespaces, cgroups and root built ahead) so CreateSandbox only "
      "attaches the home; 0 = build every sandbox on demand",
      NULL},
     F(pool_size)},
    {{"memory", "SBX_MEMORY", SBX_CFG_SIZE, "1G", 16 << 20, 1LL << 40, NULL,
      "default memory limit of a sandbox", NULL},
     F(defaults.memory_bytes)},
    {{"memory-max", "SBX_MEMORY_MAX", SBX_CFG_SIZE, "16G", 16 << 20, 1LL << 40, NULL,
      "largest memory limit a CreateSandbox may ask for", NULL},
     F(max.memory_bytes)},
    {{"pids", "SBX_PIDS", SBX_CFG_INT, "512", 8, 1 << 22, NULL,
      "default tasks (processes + threads) limit of a sandbox", NULL},
     F(defaults.pids)},
    {{"pids-max", "SBX_PIDS_MAX", SBX_CFG_INT, "32768", 8, 1 << 22, NULL,
      "largest pids limit a CreateSandbox may ask for", NULL},
     F(max.pids)},
    {{"cpu-millis", "SBX_CPU_MILLIS", SBX_CFG_INT, "1000", 10, 1 << 20, NULL,
      "default CPU bandwidth of a sandbox in thousandths of a core", NULL},
     F(defaults.cpu_millis)},
    {{"cpu-millis-max", "SBX_CPU_MILLIS_MAX", SBX_CFG_INT, "0", 0, 1 << 20, NULL,
      "largest CPU bandwidth a CreateSandbox may ask for (0 = number of cores x 1000)", NULL},
     F(max.cpu_millis)},
    {{"command-timeout-ms", "SBX_COMMAND_TIMEOUT_MS", SBX_CFG_INT, "1800000", 1, 86400000, NULL,
      "default wall-clock timeout of a command, ms", NULL},
     F(defaults.command_timeout_ms)},
    {{"command-timeout-ms-max", "SBX_COMMAND_TIMEOUT_MS_MAX", SBX_CFG_INT, "86400000", 1, 86400000,
      NULL, "largest default command timeout a CreateSandbox may ask for, ms", NULL},
     F(max.command_timeout_ms)},
    {{"max-output", "SBX_MAX_OUTPUT", SBX_CFG_SIZE, "16M", 1, 1LL << 40, NULL,
      "default cap on each of stdout and stderr of a command", NULL},
     F(defaults.max_output_bytes)},
    {{"max-output-max", "SBX_MAX_OUTPUT_MAX", SBX_CFG_SIZE, "1G", 1, 1LL << 40, NULL,
      "largest default output cap a CreateSandbox may ask for", NULL},
     F(max.max_output_bytes)},
    {{"open-files", "SBX_OPEN_FILES", SBX_CFG_INT, "1024", 16, 1 << 20, NULL,
      "default RLIMIT_NOFILE of commands", NULL},
     F(defaults.open_files)},
    {{"open-files-max", "SBX_OPEN_FILES_MAX", SBX_CFG_INT, "65536", 16, 1 << 20, NULL,
      "largest open-files limit a CreateSandbox may ask for", NULL},
     F(max.open_files)},
    {{"disk", "SBX_DISK", SBX_CFG_SIZE, "4G", 4 << 20, 1LL << 50, NULL,
      "default disk limit of a sandbox: bytes its home holds (an ext4 image per sandbox where "
      "loop devices work)",
      NULL},
     F(defaults.disk_bytes)},
    {{"disk-max", "SBX_DISK_MAX", SBX_CFG_SIZE, "1T", 4 << 20, 1LL << 50, NULL,
      "largest disk limit a CreateSandbox may ask for", NULL},
     F(max.disk_bytes)},
    {{"disk-inodes", "SBX_DISK_INODES", SBX_CFG_INT, "0", 0, 1LL << 32, NULL,
      "default number of files, directories and links a home holds (0 = one per 16 KiB of the "
      "disk limit)",
      NULL},
     F(defaults.disk_inodes)},
    {{"disk-inodes-max", "SBX_DISK_INODES_MAX", SBX_CFG_INT, "16777216", 1024, 1LL << 32, NULL,
      "largest inode limit a CreateSandbox may ask for", NULL},
     F(max.disk_inodes)},
    {{"disk-limit", "SBX_DISK_LIMIT", SBX_CFG_BOOL, "on", 0, 0, NULL,
      "enforce --disk and --disk-inodes on each home as a whole (an ext4 image per sandbox on a "
      "loop device; start-up fails where that does not work unless --allow-weak-isolation); off: "
      "homes are directories and --disk bounds each file only",
      NULL},
     F(disk_limit)},
    {{"watch-max-dirs", "SBX_WATCH_MAX_DIRS", SBX_CFG_INT, "8192", 1, 1 << 20, NULL,
      "directories (inotify watches) the WatchDir streams of one sandbox may follow together",
      NULL},
     F(watch_max_dirs)},
    {{"watch-max-streams", "SBX_WATCH_MAX_STREAMS", SBX_CFG_INT, "16", 1, 1024, NULL,
      "WatchDir streams one sandbox may have open at once", NULL},
     F(watch_max_streams)},
    {{"outbox-sync", "SBX_OUTBOX_SYNC", SBX_CFG_BOOL, "on", 0, 0, NULL,
      "fdatasync each history record before the command's result is answered", NULL},
     F(outbox_sync)},
    {{"egress-default", "SBX_EGRESS_DEFAULT", SBX_CFG_STR, NULL, 0, 0, NULL,
      "egress policy (allow_out PATTERN,...) of sandboxes created without one, e.g. by a first "
      "exec; default none: no network",
      NULL},
     F(egress_default)},
    {{"egress-allow-private", "SBX_EGRESS_ALLOW_PRIVATE", SBX_CFG_STR, NULL, 0, 0, NULL,
      "internal destinations CIDR[:PORT],... that sandbox policies may allow (loopback, private, "
      "link-local, this host and the services are refused otherwise)",
      NULL},
     F(egress_allow_private)},
    {{"egress-deny", "SBX_EGRESS_DENY", SBX_CFG_STR, NULL, 0, 0, NULL,
      "destinations PATTERN,... no sandbox may reach, whatever its policy", NULL},
     F(egress_deny)},
    {{"egress-max-conns", "SBX_EGRESS_MAX_CONNS", SBX_CFG_INT, "256", 1, 65536, NULL,
      "live egress proxy connections per sandbox", NULL},
     F(egress_max_conns)},
    {{"egress-idle-timeout", "SBX_EGRESS_IDLE_TIMEOUT", SBX_CFG_INT, "300", 1, 86400, NULL,
      "seconds without traffic after which a proxied connection is closed", NULL},
     F(egress_idle_timeout_s)},
    {{"metrics-listen", "SBX_METRICS_LISTEN", SBX_CFG_STR, NULL, 0, 0, NULL,
      "HOST:PORT serving Prometheus text on GET /metrics (off when unset)", NULL},
     F(metrics_listen)},
};

#define N_ROWS (sizeof ROWS / sizeof ROWS[0])

/* --init-path default: sbx-init next to this binary, else where `cmake --install` puts it
 * relative to this binary (SBX_INIT_REL_PATH, e.g. ../libexec/sbx), else the build tree's. */
static const char *default_init_path(char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        const char *dir = dirname(self);
        /* next to this binary (the build tree), then the installed layout */
        snprintf(buf, len, "%s/sbx-init", dir);
        if (access(buf, X_OK) == 0)
            return buf;
        snprintf(buf, len, "%s/%s/sbx-init", dir, SBX_INIT_REL_PATH);
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

/* One NAME=DIR of --template: checked and added. */
static int add_template(sbx_exec_config *c, char *t)
{
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
        fprintf(stderr, "sbx-executor: --template %s: cannot read directory %s: %s\n", t, eq + 1,
                strerror(errno));
        return -1;
    }
    c->tpl_names[c->n_tpl] = t;
    c->tpl_dirs[c->n_tpl] = eq + 1;
    c->n_tpl++;
    return 0;
}

/* --template NAME=DIR[,NAME=DIR]: split into the arrays (in a copy of the spec). */
static int parse_templates(sbx_exec_config *c)
{
    const char *spec = c->templates;
    if (!spec || !spec[0])
        return 0;
    size_t cap = 1;
    for (const char *s = spec; *s; s++)
        cap += *s == ',';
    c->tpl_copy = strdup(spec);
    c->tpl_names = calloc(cap, sizeof *c->tpl_names);
    c->tpl_dirs = calloc(cap, sizeof *c->tpl_dirs);
    if (!c->tpl_copy || !c->tpl_names || !c->tpl_dirs)
        return -1;
    char *save = NULL;
    for (char *t = strtok_r(c->tpl_copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (add_template(c, t) < 0)
            return -1;
    return 0;
}

/* Every address flag, parsed before anything starts: 0, or 2 after naming the flag. */
static int check_addrs(sbx_exec_config *c)
{
    char err[320];
    int rc = sbx_addr_list_parse(c->store, &c->stores, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sbx-executor: --store: %s\n", rc == -ENOMEM ? "out of memory" : err);
        return 2;
    }
    if (sbx_check_addr_flag("sbx-executor", "--listen", c->server.listen, true) ||
        sbx_check_addr_flag("sbx-executor", "--metrics-listen", c->metrics_listen, true))
        return 2;
    return 0;
}

int sbx_exec_config_parse(sbx_exec_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    sbx_cfg_opt opts[SBX_SERVER_FLAG_COUNT + N_ROWS];
    sbx_server_flag_rows(opts, &c->server, "127.0.0.1:50051");
    for (size_t i = 0; i < N_ROWS; i++) {
        sbx_cfg_opt *o = &opts[SBX_SERVER_FLAG_COUNT + i];
        *o = ROWS[i].opt;
        o->dst = (char *)c + ROWS[i].off;
        if (ROWS[i].off == F(init_path))
            o->def = default_init_path(c->init_default, sizeof c->init_default);
    }
    sbx_cfg_parse_or_exit(opts, SBX_SERVER_FLAG_COUNT + N_ROWS, argc, argv, NULL, "sbx-executor",
                          SUMMARY);
    if (!c->max.cpu_millis) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        c->max.cpu_millis = (nc > 0 ? nc : 1) * 1000;
    }
    if (parse_templates(c) < 0 || check_addrs(c) != 0) {
        sbx_exec_config_free(c);
        return 2;
    }
    return 0;
}

void sbx_exec_config_free(sbx_exec_config *c)
{
    sbx_addr_list_free(&c->stores);
    free(c->tpl_copy);
    free(c->tpl_names);
    free(c->tpl_dirs);
    c->tpl_copy = NULL;
    c->tpl_names = c->tpl_dirs = NULL;
    c->n_tpl = 0;
}
