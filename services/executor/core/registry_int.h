/* registry_int.h: what the files of the registry share (private to core/): the box and the
 * registry, and the steps one file offers another. registry.c holds the index, lookups and the
 * registry's life; registry_create.c starts sandboxes; registry_life.c holds a box's uses,
 * its stop and teardown, and the idle reaper. Cross-file functions use the sbx__reg_ /
 * sbx__box_ prefixes.
 *
 * Locks: the registry mutex (index, uid slots, live count, the STARTING cond), then a box mutex
 * (its state, uses, clocks, runtime pointers). Slow work (creating or destroying a sandbox,
 * wiping a home) runs with no lock held. */
#ifndef SBX_EXEC_REGISTRY_INT_H
#define SBX_EXEC_REGISTRY_INT_H

#include <pthread.h>
#include <sys/types.h>

#include "registry.h"

#define NBUCKETS 1024
#define UID_BLOCK 65536u

struct sbx_box {
    sbx_reg *reg;
    int refs; /* atomic */
    char id[EXV_ID_MAX + 1];
    char tenant[72];
    char project[EXV_PROJECT_MAX + 1];
    char template_name[EXV_TEMPLATE_MAX + 1];
    char *home;  /* <project dir>/home: the home directory (without images) */
    char *image; /* <project dir>/home.img, or NULL (homes are directories) */
    exv_limits limits;
    char **env;
    size_t n_env;
    char **meta_k, **meta_v;
    size_t n_meta;
    char **enforced;
    size_t n_enforced;
    int uid_slot;
    bool from_pool;     /* its sandbox was claimed from the warm pool (set before it runs) */
    sbx_egress_sb *net; /* the egress record (NULL without an egress service) */

    pthread_mutex_t mu; /* fields below */
    pthread_cond_t cond;
    sbx_box_state state;
    int users;
    bool torn, wipe;
    int64_t created_ms, last_used_ms, stopped_ms, idle_timeout_ms;
    int init_pid;
    sbx_sandbox *sb;
    sbx_proctab *pt;
    sbx_files *fs;
    void *ext;

    /* registry links (under the registry mutex) */
    sbx_box *next_id, *next_proj;
    bool indexed;
};

struct sbx_reg {
    sbx_reg_cfg cfg;
    char *data_dir, *init_path, *cgroup_parent;
    char **tpl_names, **tpl_dirs;
    size_t n_tpl;

    pthread_mutex_t mu;
    pthread_cond_t cond; /* a STARTING box finished starting */
    sbx_box *by_id[NBUCKETS];
    sbx_box *by_proj[NBUCKETS];
    size_t n_boxes, n_live;
    uint8_t *slots; /* uid blocks in use */
    uint64_t id_seq;

    pthread_t reaper;
    bool stop;
    pthread_cond_t reaper_cond;
};

/* ---- registry.c ---- */
void sbx__reg_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Index membership (caller holds r->mu); the index holds a reference. */
void sbx__reg_index_add(sbx_reg *r, sbx_box *b);
void sbx__reg_index_remove(sbx_reg *r, sbx_box *b);
/* The indexed box with this sandbox_id, any tenant and state (caller holds r->mu), or NULL. */
sbx_box *sbx__reg_find_id(sbx_reg *r, const char *id);
/* Waits for the project's STARTING box (if any) and returns its live box with a use, or NULL
 * when there is none (caller holds r->mu). */
sbx_box *sbx__reg_live_with_use(sbx_reg *r, const char *tenant, const char *project);
/* Every box of the index, as references (free with sbx_reg_list_free). */
size_t sbx__reg_all(sbx_reg *r, sbx_box ***out);

/* ---- registry_create.c ---- */
/* The project's live sandbox with a use (*created false), or a new one (*created true). */
int sbx__reg_create_or_get(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                           bool *created, char *err, size_t errlen);
int sbx__reg_mkdir_p(const char *path, mode_t mode);
/* <data_dir>/sandboxes/<tenant>/<project>/home (malloc'd), or NULL. */
char *sbx__reg_home_path(const sbx_reg *r, const char *tenant, const char *project);

/* ---- registry_table.c ---- */
/* Writes the box's entry of the table on disk (its state, clocks, limits). No lock held. */
void sbx__reg_table_save(sbx_reg *r, sbx_box *b);
/* Removes the box's entry (the reaper forgot the stopped box). */
void sbx__reg_table_forget(sbx_reg *r, sbx_box *b);
/* At start: every entry within the retention becomes a STOPPED box (*was_running: how many
 * were running when the previous run ended); the others are removed. Returns how many. */
size_t sbx__reg_table_load(sbx_reg *r, size_t *was_running);

/* ---- registry_life.c ---- */
/* A use with (touch) or without restarting the idle clock. */
bool sbx__box_use(sbx_box *b, bool touch);
void sbx__box_release(sbx_box *b, bool touch);
/* Marks the box stopped and kills its processes; false if it was not running. */
bool sbx__box_stop(sbx_box *b, const char *why);
/* Waits (bounded) until the box's runtime is torn down. */
void sbx__box_wait_torn(sbx_box *b, int timeout_ms);
/* Starts / stops the idle reaper thread (r->reaper_cond is initialised by the caller). */
int sbx__reg_reaper_start(sbx_reg *r);
void sbx__reg_reaper_stop(sbx_reg *r);

#endif
