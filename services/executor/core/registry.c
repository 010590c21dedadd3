/* registry.c: sandboxes by id and by (tenant, project) (see registry.h, registry_int.h): two
 * small chained hash indexes under the registry mutex, address resolution (sandbox_id and/or
 * project_id, tenants isolated), listings, the box's immutable accessors, and the registry's
 * own start (data dirs, reaper) and end (every sandbox killed, homes kept).
 *
 * Threads: any. Locks: the registry mutex, then a box mutex. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "registry_int.h"
#include "status.h"

void sbx__reg_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t hash_str(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const char *s = a; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *s = b ? b : ""; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % NBUCKETS;
}

/* ---------------------------------------------------------------- index */

void sbx__reg_index_add(sbx_reg *r, sbx_box *b)
{
    uint32_t hi = hash_str(b->id, NULL), hp = hash_str(b->tenant, b->project);
    b->next_id = r->by_id[hi];
    r->by_id[hi] = b;
    b->next_proj = r->by_proj[hp];
    r->by_proj[hp] = b;
    b->indexed = true;
    r->n_boxes++;
    sbx_box_ref(b); /* the index's */
}

void sbx__reg_index_remove(sbx_reg *r, sbx_box *b)
{
    if (!b->indexed)
        return;
    uint32_t hi = hash_str(b->id, NULL), hp = hash_str(b->tenant, b->project);
    for (sbx_box **pp = &r->by_id[hi]; *pp; pp = &(*pp)->next_id)
        if (*pp == b) {
            *pp = b->next_id;
            break;
        }
    for (sbx_box **pp = &r->by_proj[hp]; *pp; pp = &(*pp)->next_proj)
        if (*pp == b) {
            *pp = b->next_proj;
            break;
        }
    b->indexed = false;
    r->n_boxes--;
    sbx_box_unref(b);
}

sbx_box *sbx__reg_find_id(sbx_reg *r, const char *id)
{
    for (sbx_box *b = r->by_id[hash_str(id, NULL)]; b; b = b->next_id)
        if (strcmp(b->id, id) == 0)
            return b;
    return NULL;
}

/* The project's STARTING or RUNNING box (caller holds r->mu). */
static sbx_box *find_live(sbx_reg *r, const char *tenant, const char *project)
{
    for (sbx_box *b = r->by_proj[hash_str(tenant, project)]; b; b = b->next_proj) {
        if (strcmp(b->tenant, tenant) != 0 || strcmp(b->project, project) != 0)
            continue;
        pthread_mutex_lock(&b->mu);
        bool live = b->state != SBX_BOX_STOPPED;
        pthread_mutex_unlock(&b->mu);
        if (live)
            return b;
    }
    return NULL;
}

sbx_box *sbx__reg_live_with_use(sbx_reg *r, const char *tenant, const char *project)
{
    for (;;) {
        sbx_box *b = find_live(r, tenant, project);
        if (!b)
            return NULL;
        pthread_mutex_lock(&b->mu);
        sbx_box_state st = b->state;
        pthread_mutex_unlock(&b->mu);
        if (st == SBX_BOX_STARTING) {
            pthread_cond_wait(&r->cond, &r->mu);
            continue;
        }
        if (sbx_box_use(b))
            return b;
        return NULL; /* stopped in between */
    }
}

size_t sbx__reg_all(sbx_reg *r, sbx_box ***out)
{
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    sbx_box **v = r->n_boxes ? calloc(r->n_boxes, sizeof *v) : NULL;
    size_t n = 0;
    for (size_t i = 0; v && i < NBUCKETS; i++)
        for (sbx_box *b = r->by_id[i]; b; b = b->next_id) {
            sbx_box_ref(b);
            v[n++] = b;
        }
    pthread_mutex_unlock(&r->mu);
    *out = v;
    return n;
}

/* ---------------------------------------------------------------- lookups */

/* By sandbox_id: the tenant's box (any state), checked against project_id when both are set. */
static int get_by_id(sbx_reg *r, const char *tenant, const char *sandbox_id, const char *project_id,
                     int mode, sbx_box **out, char *err, size_t errlen)
{
    pthread_mutex_lock(&r->mu);
    sbx_box *b = sbx__reg_find_id(r, sandbox_id);
    if (b && strcmp(b->tenant, tenant) != 0)
        b = NULL;
    if (b)
        sbx_box_ref(b);
    pthread_mutex_unlock(&r->mu);
    if (!b) {
        sbx__reg_seterr(err, errlen, "sandbox_id: no sandbox %s", sandbox_id);
        return SBX_NOT_FOUND;
    }
    if (project_id && project_id[0] && strcmp(b->project, project_id) != 0) {
        sbx_box_unref(b);
        sbx__reg_seterr(err, errlen,
                        "sandbox_id, project_id: sandbox %s does not belong to "
                        "project %s",
                        sandbox_id, project_id);
        return SBX_INVALID_ARGUMENT;
    }
    if (mode == REG_ANY) {
        *out = b;
        return SBX_OK;
    }
    bool ok = sbx_box_use(b);
    sbx_box_unref(b);
    if (!ok) {
        sbx__reg_seterr(err, errlen,
                        "sandbox_id: sandbox %s is stopped (the project's next call "
                        "starts a new one)",
                        sandbox_id);
        return SBX_FAILED_PRECONDITION;
    }
    *out = b;
    return SBX_OK;
}

/* By project_id: its live box (created with REG_CREATE). */
static int get_by_project(sbx_reg *r, const char *tenant, const char *project_id, int mode,
                          sbx_box **out, char *err, size_t errlen)
{
    if (mode == REG_CREATE) {
        sbx_box_params p = {.project_id = project_id};
        bool created;
        return sbx__reg_create_or_get(r, tenant, &p, out, &created, err, errlen);
    }
    pthread_mutex_lock(&r->mu);
    sbx_box *b = sbx__reg_live_with_use(r, tenant, project_id);
    pthread_mutex_unlock(&r->mu);
    if (!b) {
        sbx__reg_seterr(err, errlen, "project_id: project %s has no live sandbox", project_id);
        return SBX_NOT_FOUND;
    }
    if (mode == REG_ANY) { /* convert the use into a plain reference */
        sbx_box_ref(b);
        sbx__box_release(b, false);
    }
    *out = b;
    return SBX_OK;
}

int sbx_reg_get(sbx_reg *r, const char *tenant, const char *sandbox_id, const char *project_id,
                int mode, sbx_box **out, char *err, size_t errlen)
{
    *out = NULL;
    if (sandbox_id && sandbox_id[0])
        return get_by_id(r, tenant, sandbox_id, project_id, mode, out, err, errlen);
    if (project_id && project_id[0])
        return get_by_project(r, tenant, project_id, mode, out, err, errlen);
    /* exv_address refuses this before any call gets here */
    sbx__reg_seterr(err, errlen, "sandbox_id, project_id: set one of them");
    return SBX_INVALID_ARGUMENT;
}

static int cmp_box_id(const void *a, const void *b)
{
    return strcmp((*(sbx_box *const *)a)->id, (*(sbx_box *const *)b)->id);
}

size_t sbx_reg_list(sbx_reg *r, const char *tenant, const char *project_id, bool include_stopped,
                    sbx_box ***out)
{
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    sbx_box **v = r->n_boxes ? calloc(r->n_boxes, sizeof *v) : NULL;
    size_t n = 0;
    for (size_t i = 0; v && i < NBUCKETS; i++)
        for (sbx_box *b = r->by_id[i]; b; b = b->next_id) {
            if (strcmp(b->tenant, tenant) != 0)
                continue;
            if (project_id && project_id[0] && strcmp(b->project, project_id) != 0)
                continue;
            pthread_mutex_lock(&b->mu);
            bool keep =
                b->state == SBX_BOX_RUNNING || (include_stopped && b->state == SBX_BOX_STOPPED);
            pthread_mutex_unlock(&b->mu);
            if (!keep)
                continue;
            sbx_box_ref(b);
            v[n++] = b;
        }
    pthread_mutex_unlock(&r->mu);
    if (n)
        qsort(v, n, sizeof *v, cmp_box_id);
    *out = v;
    return n;
}

void sbx_reg_list_free(sbx_box **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sbx_box_unref(v[i]);
    free(v);
}

/* ---------------------------------------------------------------- box accessors */

const char *sbx_box_id(const sbx_box *b)
{
    return b->id;
}
const char *sbx_box_tenant(const sbx_box *b)
{
    return b->tenant;
}
const char *sbx_box_project(const sbx_box *b)
{
    return b->project;
}
const char *sbx_box_template(const sbx_box *b)
{
    return b->template_name;
}
bool sbx_box_disk_limited(const sbx_box *b)
{
    return b->image != NULL;
}

bool sbx_box_from_pool(const sbx_box *b)
{
    return b->from_pool;
}

int sbx_box_disk_usage(sbx_box *b, sbx_disk_usage *u)
{
    memset(u, 0, sizeof *u);
    if (!b->image || !sbx__box_use(b, false))
        return -ENOENT;
    int rc = sbx_sandbox_disk_usage(b->sb, u);
    sbx__box_release(b, false);
    return rc;
}

const exv_limits *sbx_box_limits(const sbx_box *b)
{
    return &b->limits;
}

size_t sbx_box_env(const sbx_box *b, const char *const **kv)
{
    *kv = (const char *const *)b->env;
    return b->n_env;
}

size_t sbx_box_metadata(const sbx_box *b, const char *const **keys, const char *const **values)
{
    *keys = (const char *const *)b->meta_k;
    *values = (const char *const *)b->meta_v;
    return b->n_meta;
}

size_t sbx_box_enforced(const sbx_box *b, const char *const **list)
{
    *list = (const char *const *)b->enforced;
    return b->n_enforced;
}

sbx_sandbox *sbx_box_sandbox(sbx_box *b)
{
    return b->sb;
}
sbx_proctab *sbx_box_proctab(sbx_box *b)
{
    return b->pt;
}
sbx_files *sbx_box_files(sbx_box *b)
{
    return b->fs;
}
void *sbx_box_ext(sbx_box *b)
{
    return b->ext;
}
void sbx_box_set_ext(sbx_box *b, void *ext)
{
    b->ext = ext;
}

/* ---------------------------------------------------------------- new / free */

/* The config with defaults applied and its strings copied into r. Returns 0 or -errno. */
static int take_config(sbx_reg *r, const sbx_reg_cfg *cfg, char *err, size_t errlen)
{
    r->cfg = *cfg;
    if (!r->cfg.max_sandboxes)
        r->cfg.max_sandboxes = 1000;
    if (!r->cfg.uid_base_first)
        r->cfg.uid_base_first = 200000;
    if (!r->cfg.stopped_retention_ms)
        r->cfg.stopped_retention_ms = 600000;
    if (!r->cfg.reaper_interval_ms)
        r->cfg.reaper_interval_ms = 500;
    uint64_t top = (uint64_t)r->cfg.uid_base_first + (uint64_t)r->cfg.max_sandboxes * UID_BLOCK;
    if (r->cfg.uid_base_first < UID_BLOCK || top > 0xfffffff0ull) {
        sbx__reg_seterr(err, errlen,
                        "--max-sandboxes: %zu uid blocks of 65536 from %u do not fit "
                        "in 32 bits",
                        r->cfg.max_sandboxes, r->cfg.uid_base_first);
        return -EINVAL;
    }
    r->data_dir = strdup(cfg->data_dir);
    r->init_path = strdup(cfg->init_path);
    r->cgroup_parent = cfg->cgroup_parent ? strdup(cfg->cgroup_parent) : NULL;
    r->slots = calloc(r->cfg.max_sandboxes, 1);
    r->n_tpl = cfg->n_templates;
    r->tpl_names = r->n_tpl ? calloc(r->n_tpl, sizeof(char *)) : NULL;
    r->tpl_dirs = r->n_tpl ? calloc(r->n_tpl, sizeof(char *)) : NULL;
    bool ok =
        r->data_dir && r->init_path && r->slots && (!r->n_tpl || (r->tpl_names && r->tpl_dirs));
    for (size_t i = 0; ok && i < r->n_tpl; i++) {
        r->tpl_names[i] = strdup(cfg->template_names[i]);
        r->tpl_dirs[i] = strdup(cfg->template_dirs[i]);
        ok = r->tpl_names[i] && r->tpl_dirs[i];
    }
    r->cfg.template_names = NULL;
    r->cfg.template_dirs = NULL;
    r->cfg.data_dir = r->data_dir;
    r->cfg.init_path = r->init_path;
    r->cfg.cgroup_parent = r->cgroup_parent;
    return ok ? 0 : -ENOMEM;
}

/* <data_dir>/sandboxes (0700: only the executor goes there; each init gets its home as a
 * mount the executor made, so no sandbox uid needs to search any directory above it).
 * Returns 0 or -errno. */
static int make_data_dirs(sbx_reg *r, char *err, size_t errlen)
{
    char *sbdir = NULL;
    if (asprintf(&sbdir, "%s/sandboxes", r->data_dir) < 0)
        return -ENOMEM;
    int rc = sbx__reg_mkdir_p(sbdir, 0700);
    if (rc < 0)
        sbx__reg_seterr(err, errlen, "--data-dir: cannot create %s: %s", sbdir, strerror(-rc));
    free(sbdir);
    return rc;
}

int sbx_reg_new(const sbx_reg_cfg *cfg, sbx_reg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->data_dir || !cfg->init_path) {
        sbx__reg_seterr(err, errlen, "data dir and init path are required");
        return -EINVAL;
    }
    if (exv_limits_check_config(&cfg->defaults, &cfg->max, err, errlen) != SBX_OK)
        return -EINVAL;
    sbx_reg *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->stop = true; /* no reaper yet */
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->reaper_cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = take_config(r, cfg, err, errlen);
    if (rc == 0)
        rc = make_data_dirs(r, err, errlen);
    if (rc == 0) {
        size_t was_running = 0, n = sbx__reg_table_load(r, &was_running);
        if (n)
            SBX_LOG_INFO("registry",
                         "sandboxes of the previous run shown as STOPPED count=%zu "
                         "were_running=%zu",
                         n, was_running);
    }
    if (rc == 0) {
        r->stop = false;
        if ((rc = sbx__reg_reaper_start(r)) < 0)
            sbx__reg_seterr(err, errlen, "cannot start the reaper thread");
    }
    if (rc < 0) {
        sbx_reg_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Stops every box and waits (bounded) for their teardown; the index lets them go. */
static void stop_all(sbx_reg *r)
{
    sbx_box **v;
    size_t n = sbx__reg_all(r, &v);
    size_t killed = 0;
    for (size_t i = 0; i < n; i++)
        if (sbx__box_stop(v[i], "executor shutdown"))
            killed++;
    for (size_t i = 0; i < n; i++)
        sbx__box_wait_torn(v[i], 10000);
    if (killed)
        SBX_LOG_INFO("registry", "killed every sandbox at shutdown count=%zu", killed);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n; i++)
        sbx__reg_index_remove(r, v[i]);
    pthread_mutex_unlock(&r->mu);
    sbx_reg_list_free(v, n);
}

void sbx_reg_free(sbx_reg *r)
{
    if (!r)
        return;
    sbx__reg_reaper_stop(r);
    stop_all(r);
    for (size_t i = 0; i < r->n_tpl; i++) {
        if (r->tpl_names)
            free(r->tpl_names[i]);
        if (r->tpl_dirs)
            free(r->tpl_dirs[i]);
    }
    free(r->tpl_names);
    free(r->tpl_dirs);
    free(r->slots);
    free(r->data_dir);
    free(r->init_path);
    free(r->cgroup_parent);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    pthread_cond_destroy(&r->reaper_cond);
    free(r);
}
