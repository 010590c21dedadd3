/* config.h: sbx-executor's settings. One table (config.c) gives every flag its SBX_* variable,
 * default, bounds and help (the server flags of serve.h come first); parsing fills an
 * sbx_exec_config that main.c wires into the libraries. --template NAME=DIR[,...] is split
 * and each directory checked here.
 *
 * Threads: main's, at start-up. Memory: strings point into argv, the environment or defaults;
 * the template arrays are the config's (sbx_exec_config_free). */
#ifndef SBX_EXEC_CONFIG_H
#define SBX_EXEC_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec_validate.h"
#include "route.h"
#include "serve.h"

typedef struct sbx_exec_config {
    sbx_server_flags server;
    const char *data_dir, *run_dir, *store, *store_key, *port_bind, *init_path, *templates;
    sbx_addr_list stores;      /* --store parsed: one entry per sbx-store */
    const char *cgroup_parent; /* no flag: NULL ("sbx") */
    bool allow_weak, outbox_sync;
    bool disk_limit; /* --disk-limit: homes are ext4 images with the disk limits */
    int64_t idle_timeout_s, max_sandboxes, pool_size;
    int64_t watch_max_dirs, watch_max_streams; /* WatchDir limits per sandbox */
    exv_limits defaults, max; /* --memory ... --disk, --memory-max ... --disk-max */
    /* network egress (egress.h) and the metrics endpoint */
    const char *egress_default, *egress_allow_private, *egress_deny, *metrics_listen;
    int64_t egress_max_conns, egress_idle_timeout_s;
    /* --template, split */
    const char **tpl_names, **tpl_dirs;
    size_t n_tpl;
    char *tpl_copy;
    char init_default[PATH_MAX + 16];
} sbx_exec_config;

/* Parses the environment and argv into c (--help and a bad value exit as sbx_cfg_parse_or_exit
 * does). Returns 0, or 2 (the exit status) with the reason printed when --template is wrong. */
int sbx_exec_config_parse(sbx_exec_config *c, int argc, char **argv);
/* Frees the template arrays. */
void sbx_exec_config_free(sbx_exec_config *c);

#endif
