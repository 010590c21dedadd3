/* cgroup.h: per-sandbox control groups, created beneath the executor's own cgroup in each
 * hierarchy (never at a hierarchy root): cgroup v2 where its controllers are delegated to us,
 * else v1 memory/pids/cpu; the cgroup2 tree (even without controllers) gives every sandbox a
 * delegated subtree for per-command groups and cgroup.kill. All functions return 0 or -errno. */
#ifndef SBX_CGROUP_H
#define SBX_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { SBX_CG_MEMORY = 0, SBX_CG_PIDS, SBX_CG_CPU, SBX_CG_NCTRL };

typedef struct {
    char v2_own[PATH_MAX];               /* our cgroup2 dir, "" without a cgroup2 mount */
    unsigned v2_ctrl;                    /* bit (1 << SBX_CG_*) = usable through cgroup2 */
    bool v2_kill;                        /* cgroup.kill works */
    char v1_own[SBX_CG_NCTRL][PATH_MAX]; /* our dir in the v1 hierarchy of each controller */
} sbx_cg_env;

/* Reads /proc/self/mountinfo and /proc/self/cgroup. parent is the group made under our own
 * cgroup (created if missing, to probe cgroup.kill). */
int sbx_cg_detect(sbx_cg_env *env, const char *parent);

typedef struct {
    uint64_t memory_bytes; /* 0 = unlimited */
    uint64_t pids;         /* 0 = unlimited */
    uint32_t cpu_millis;   /* quota, 1000 = one CPU; 0 = none */
    uint32_t cpu_weight;   /* 1..10000, 100 = default share; 0 = default */
} sbx_cg_limits;

typedef struct {
    char v2[PATH_MAX];               /* the sandbox's cgroup2 dir or "" */
    char v1[SBX_CG_NCTRL][PATH_MAX]; /* the sandbox's dir per v1 controller or "" */
} sbx_cg;

/* Creates <own>/<parent>/<id> in every usable hierarchy, writes the limits and delegates the
 * cgroup2 dir to owner (the host uid of the sandbox's root). Appends static strings naming what
 * is enforced (e.g. "memory:cgroup-v1") to enforced[*n] (room for at least 6). On failure
 * everything created is removed. */
int sbx_cg_create(const sbx_cg_env *env, const char *parent, const char *id,
                  const sbx_cg_limits *lim, uid_t owner, sbx_cg *out, const char **enforced,
                  size_t *n);
/* Changes the limits of groups made by sbx_cg_create (with *old) to *lim, writing only the
 * values that differ (0 = unlimited), and appends what is enforced as sbx_cg_create does. */
int sbx_cg_update(const sbx_cg_env *env, const sbx_cg *cg, const sbx_cg_limits *old,
                  const sbx_cg_limits *lim, const char **enforced, size_t *n);
/* Kills and removes every group below <own>/<parent> in each hierarchy env uses (v2 and each
 * v1 controller): at start-up, the groups a previous run of the same executor left (each
 * executor has its own parent). *removed counts the groups removed. Returns 0 or the -errno of
 * the first group that would not go (logged; the others are still tried). */
int sbx_cg_sweep(const sbx_cg_env *env, const char *parent, size_t *removed);
/* Removes the (empty) <own>/<parent> groups at shutdown; a group still in use stays. */
void sbx_cg_remove_parent(const sbx_cg_env *env, const char *parent);
/* Moves pid into all of the sandbox's groups. */
int sbx_cg_attach(const sbx_cg *cg, pid_t pid);
/* SIGKILLs every process in the sandbox's groups (cgroup.kill, else a kill loop over v1). */
int sbx_cg_kill(const sbx_cg *cg);
/* Removes the groups (children first), waiting up to ~2 s for them to empty; -EBUSY if a group
 * is still populated. Harmless on a zeroed sbx_cg. */
int sbx_cg_destroy(sbx_cg *cg);

typedef struct {
    uint64_t memory_current, memory_peak, oom_kills, pids_current;
} sbx_cg_stats;
int sbx_cg_stats_read(const sbx_cg *cg, sbx_cg_stats *st);

#endif
