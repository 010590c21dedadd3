/* registry.h: the executor's sandboxes, keyed by sandbox_id and by (tenant, project_id), and
 * their lifecycle: one live sandbox per project (concurrent creates for a project create one),
 * a private 65536-id host uid block per sandbox (reused once its runtime is gone), a home
 * persisted under <data-dir>/sandboxes/<tenant>/<project>/ that outlives the sandbox (home.img,
 * an ext4 image with the disk limits, or a plain directory home without them), idle
 * expiry by a reaper thread, and stopped sandboxes remembered for GetSandbox for a while.
 * Tenants never see each other's sandboxes: a lookup across tenants is NOT_FOUND.
 *
 * Lifetimes. A sbx_box is reference counted. A *use* (taken by sbx_reg_get with REG_USE or
 * REG_CREATE) additionally keeps the box's runtime (sandbox, process table, file handle) alive:
 * KillSandbox, the idle reaper or a dead init mark the box STOPPED and SIGKILL its processes,
 * and the runtime is destroyed when the last use is released. Handlers therefore hold a use for
 * as long as they touch sbx_box_sandbox/proctab/files, and re-check sbx_box_running() in long
 * waits. Every function is thread-safe; status-returning functions return a gRPC code and a
 * message naming the field in err.
 *
 * Files: registry.c (index, lookups, the registry's start and end), registry_create.c (starting
 * a sandbox), registry_life.c (uses, stop, teardown, the idle reaper), registry_table.c (the
 * table on disk: after a restart, also a kill -9, the previous run's sandboxes are STOPPED for
 * the retention); registry_int.h. */
#ifndef SBX_EXEC_REGISTRY_H
#define SBX_EXEC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"
#include "exec_validate.h"
#include "files.h"
#include "proc.h"
#include "sandbox.h"

typedef struct sbx_reg sbx_reg;
typedef struct sbx_box sbx_box;

typedef enum { SBX_BOX_STARTING = 0, SBX_BOX_RUNNING = 1, SBX_BOX_STOPPED = 2 } sbx_box_state;

/* Hooks for the layer above (the execution table): attach runs once the runtime is up and
 * before the box is visible (0 or -errno); detach runs at teardown before the runtime is
 * destroyed; running returns the number of commands still running (the box is not idle then). */
typedef struct sbx_reg_hooks {
    int (*attach)(void *arg, sbx_box *b);
    void (*detach)(void *arg, sbx_box *b);
    int (*running)(void *arg, sbx_box *b);
    void *arg;
} sbx_reg_hooks;

typedef struct sbx_reg_cfg {
    const char *data_dir;              /* homes go to <data_dir>/sandboxes/... */
    const char *init_path;             /* sbx-init */
    const char *cgroup_parent;         /* NULL = "sbx" */
    const char *const *template_names; /* --template NAME=DIR pairs */
    const char *const *template_dirs;
    size_t n_templates;
    bool allow_weak_isolation;
    int64_t idle_timeout_ms; /* default idle timeout (0 = never) */
    exv_limits defaults, max;
    size_t max_sandboxes;         /* live sandboxes at once; 0 = 1000 */
    uint32_t uid_base_first;      /* 0 = 200000 */
    bool use_pool;                /* sandboxes without a template come from the warm pool
                                     (sbx_sandbox_pool_config done by the caller) */
    bool home_images;             /* homes are ext4 images with the disk limits,
                                     <project dir>/home.img (sbx_disk_setup found a mechanism);
                                     else directories with no total limit */
    int64_t stopped_retention_ms; /* how long a stopped sandbox stays visible; 0 = 10 min */
    size_t ring_bytes;            /* per-stream output ring of each command; 0 = 1 MiB */
    int reaper_interval_ms;       /* 0 = 500 */
    sbx_reg_hooks hooks;
    /* optional: called (no lock held) when a running sandbox stops (KillSandbox, idle expiry, a
       dead init, shutdown) and again at its teardown, e.g. to close its port forwards */
    void (*on_stop)(void *arg, sbx_box *b);
    void *on_stop_arg;
    /* optional: the egress proxies; each box gets a record of them (sbx_box_egress) whose proxies
       open with the sandbox when its policy is not empty, and close when it stops */
    sbx_egress *egress;
    sbx_egress_policy *egress_default; /* --egress-default (borrowed; NULL = empty) */
} sbx_reg_cfg;

/* What CreateSandbox asks for (strings are copied). */
typedef struct sbx_box_params {
    const char *project_id;
    const char *template_name;            /* "" or NULL = the default root */
    const Sbx__V1__SandboxLimits *limits; /* NULL = defaults */
    int64_t idle_timeout_ms;              /* 0 = the server default */
    const exv_kv *env;                    /* validated by the caller */
    size_t n_env;
    const exv_kv *metadata;
    size_t n_metadata;
    sbx_egress_policy *network; /* borrowed; NULL = the registry's egress_default */
} sbx_box_params;

/* Validates cfg (limits, templates), creates the data dirs and starts the reaper. Returns 0 or
 * -errno with the reason in err. */
int sbx_reg_new(const sbx_reg_cfg *cfg, sbx_reg **out, char *err, size_t errlen);
/* Kills every sandbox (their homes stay), stops the reaper, frees everything. */
void sbx_reg_free(sbx_reg *r);

/* CreateSandbox: the project's live sandbox (*created = false, params ignored) or a new one.
 * On SBX_OK *out holds a use (release with sbx_box_release). */
int sbx_reg_create(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                   bool *created, char *err, size_t errlen);

enum {
    REG_ANY = 0,    /* any state (GetSandbox/List): a reference only (release with sbx_box_unref) */
    REG_USE = 1,    /* running only; takes a use */
    REG_CREATE = 2, /* like REG_USE, and a project without a live sandbox gets one (defaults) */
};
/* Resolves "Addressing a sandbox" (sandbox_id and/or project_id, already checked by
 * exv_address).
 * NOT_FOUND for unknown / other tenant / a project without a live sandbox (unless REG_CREATE),
 * FAILED_PRECONDITION for a stopped sandbox named by id with REG_USE, INVALID_ARGUMENT when
 * both fields name different sandboxes. */
int sbx_reg_get(sbx_reg *r, const char *tenant, const char *sandbox_id, const char *project_id,
                int mode, sbx_box **out, char *err, size_t errlen);

/* KillSandbox: SIGKILLs everything, waits (bounded) for the runtime to go, then wipes the home
 * if asked. *killed = false when it was already stopped. */
int sbx_reg_kill(sbx_reg *r, sbx_box *b, bool wipe_home, bool *killed, char *err, size_t errlen);

/* The caller's sandboxes ordered by sandbox_id (project filter "" = all), as references;
 * free the array with sbx_reg_list_free. */
size_t sbx_reg_list(sbx_reg *r, const char *tenant, const char *project_id, bool include_stopped,
                    sbx_box ***out);
void sbx_reg_list_free(sbx_box **v, size_t n);

void sbx_box_release(sbx_box *b); /* drops a use and its reference */
void sbx_box_ref(sbx_box *b);
void sbx_box_unref(sbx_box *b); /* NULL is harmless */
/* Takes a use on a box the caller holds a reference to; false when it is not running. */
bool sbx_box_use(sbx_box *b);

/* The init died or the socket broke (e.g. spawn returned -EPIPE): stop the box. */
void sbx_box_mark_dead(sbx_box *b, const char *why);
/* SetSandboxTimeout: new idle timeout (0 = never) and a restarted idle clock. FAILED_PRECONDITION
 * when stopped. */
int sbx_box_set_idle_timeout(sbx_box *b, int64_t ms, char *err, size_t errlen);
bool sbx_box_running(sbx_box *b);

/* Immutable after start. */
const char *sbx_box_id(const sbx_box *b);
const char *sbx_box_tenant(const sbx_box *b);
const char *sbx_box_project(const sbx_box *b);
const char *sbx_box_template(const sbx_box *b);
const exv_limits *sbx_box_limits(const sbx_box *b);
/* "K=V" strings of the sandbox env (CreateSandbox.env). */
size_t sbx_box_env(const sbx_box *b, const char *const **kv);
size_t sbx_box_metadata(const sbx_box *b, const char *const **keys, const char *const **values);
size_t sbx_box_enforced(const sbx_box *b, const char *const **list);
/* Whether the box's home has the total disk limits (an image): else limits.disk_bytes bounds
 * each file only. */
bool sbx_box_disk_limited(const sbx_box *b);
/* Whether the box's sandbox was claimed from the warm pool (false: built cold). */
bool sbx_box_from_pool(const sbx_box *b);
/* The home's disk use while the box runs: 0, -ENOENT (stopped, or no limited home). */
int sbx_box_disk_usage(sbx_box *b, sbx_disk_usage *u);
/* Runtime (valid while the caller holds a use). */
sbx_sandbox *sbx_box_sandbox(sbx_box *b);
sbx_proctab *sbx_box_proctab(sbx_box *b);
sbx_files *sbx_box_files(sbx_box *b);
void *sbx_box_ext(sbx_box *b);
/* The box's egress record (NULL without an egress service): policy, counters, whether commands
 * get the proxy environment. Valid while the caller holds a reference. */
sbx_egress_sb *sbx_box_egress(sbx_box *b);
/* UpdateSandboxNetwork: replaces the policy of a running box (caller holds a use); new
 * connections use it. Returns a gRPC code: FAILED_PRECONDITION (stopped, or a process of the
 * sandbox holds a proxy port), UNAVAILABLE (no egress service / the proxies cannot open). */
int sbx_box_set_network(sbx_box *b, sbx_egress_policy *p, char *err, size_t errlen);
void sbx_box_set_ext(sbx_box *b, void *ext);

typedef struct sbx_box_snap {
    sbx_box_state state;
    int init_pid;
    int64_t created_ms, last_used_ms, expires_ms, idle_timeout_ms, stopped_ms;
    int running_processes;
} sbx_box_snap;
void sbx_box_snapshot(sbx_box *b, sbx_box_snap *s);

#endif
