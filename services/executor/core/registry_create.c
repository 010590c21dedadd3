/* registry_create.c: starting a sandbox for a project (see registry.h, registry_int.h): one live
 * sandbox per project (a create that finds one STARTING waits for it), the server's limits and
 * templates, a uid block and an id, then the runtime (sandbox, process table, file handle, the
 * execution table through the attach hook) built with no lock held.
 *
 * Threads: any handler thread. Locks: the registry mutex while the STARTING box is added to the
 * index, then none while the runtime is built, then the registry mutex and the box mutex to
 * publish it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "registry_int.h"
#include "status.h"

/* ---------------------------------------------------------------- paths, ids, slots */

int sbx__reg_mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* A tenant may be "." or "..": those (and any leading '.') get a '%' prefix, a byte tenant
 * names cannot contain. */
char *sbx__reg_home_path(const sbx_reg *r, const char *tenant, const char *project)
{
    char *p = NULL;
    const char *pre = tenant[0] == '.' ? "%" : "";
    if (asprintf(&p, "%s/sandboxes/%s%s/%s/home", r->data_dir, pre, tenant, project) < 0)
        return NULL;
    return p;
}

static int pick_slot(sbx_reg *r)
{
    for (size_t i = 0; i < r->cfg.max_sandboxes; i++)
        if (!r->slots[i]) {
            r->slots[i] = 1;
            return (int)i;
        }
    return -1;
}

/* "sb-" + 16 hex of a per-process random salt mixed with a sequence (caller holds r->mu). */
static void mix_id(sbx_reg *r, char *id, size_t len)
{
    static uint64_t salt;
    if (!salt) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        salt = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
        int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (ufd >= 0) {
            if (read(ufd, &salt, sizeof salt) != (ssize_t)sizeof salt)
                salt ^= 0x9e3779b97f4a7c15ull;
            close(ufd);
        }
        salt |= 1;
    }
    uint64_t x = salt + (++r->id_seq) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    snprintf(id, len, "sb-%016llx", (unsigned long long)x);
}

/* A new sandbox id, never the id of a box in the index (those restored from the table on disk
 * included: a registry made again in one process has the same salt). Caller holds r->mu. */
static void new_id(sbx_reg *r, char *id, size_t len)
{
    do
        mix_id(r, id, len);
    while (sbx__reg_find_id(r, id));
}

static const char *template_dir(const sbx_reg *r, const char *name)
{
    for (size_t i = 0; name[0] && i < r->n_tpl; i++)
        if (strcmp(r->tpl_names[i], name) == 0)
            return r->tpl_dirs[i];
    return NULL;
}

/* ---------------------------------------------------------------- box memory */

static int copy_kv(const exv_kv *kv, size_t n, char ***keys, char ***vals, bool joined)
{
    *keys = NULL;
    if (vals)
        *vals = NULL;
    if (!n)
        return 0;
    *keys = calloc(n, sizeof **keys);
    if (vals)
        *vals = calloc(n, sizeof **vals);
    if (!*keys || (vals && !*vals))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (joined) {
            if (asprintf(&(*keys)[i], "%s=%s", kv[i].key, kv[i].value ? kv[i].value : "") < 0) {
                (*keys)[i] = NULL;
                return -ENOMEM;
            }
        } else {
            (*keys)[i] = strdup(kv[i].key);
            (*vals)[i] = strdup(kv[i].value ? kv[i].value : "");
            if (!(*keys)[i] || !(*vals)[i])
                return -ENOMEM;
        }
    }
    return 0;
}

static void add_enforced(sbx_box *b, const char *s)
{
    char **nv = realloc(b->enforced, (b->n_enforced + 1) * sizeof *nv);
    if (!nv)
        return;
    b->enforced = nv;
    if ((nv[b->n_enforced] = strdup(s)))
        b->n_enforced++;
}

/* What the sandbox enforces, as GetSandbox lists it. */
static void list_enforced(sbx_box *b, sbx_sandbox *sb)
{
    const char *const *list;
    size_t n = sbx_sandbox_enforced(sb, &list);
    bool rlimits = false;
    for (size_t i = 0; i < n; i++) {
        add_enforced(b, list[i]);
        if (strncmp(list[i], "rlimits:", 8) == 0)
            rlimits = true;
    }
    if (rlimits) {
        add_enforced(b, "open_files:rlimit");
        if (!b->image) /* else the image's own entries (disk:, disk_inodes:) came above */
            add_enforced(b, "disk:rlimit-fsize-per-file");
    }
    add_enforced(b, "command_timeout:kill");
    add_enforced(b, "max_output_bytes:truncate");
}

/* A new STARTING box (one reference, not indexed); NULL when out of memory. */
static sbx_box *box_new(sbx_reg *r, const char *tenant, const sbx_box_params *p,
                        const exv_limits *lim, int slot)
{
    sbx_box *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->reg = r;
    b->refs = 1;
    b->uid_slot = slot;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    new_id(r, b->id, sizeof b->id);
    snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
    snprintf(b->project, sizeof b->project, "%s", p->project_id);
    snprintf(b->template_name, sizeof b->template_name, "%s",
             p->template_name ? p->template_name : "");
    b->limits = *lim;
    b->state = SBX_BOX_STARTING;
    b->idle_timeout_ms = p->idle_timeout_ms ? p->idle_timeout_ms : r->cfg.idle_timeout_ms;
    b->created_ms = b->last_used_ms = sbx_wall_ms();
    b->home = sbx__reg_home_path(r, tenant, p->project_id);
    if (b->home && r->cfg.home_images && asprintf(&b->image, "%s.img", b->home) < 0)
        b->image = NULL;
    int rc = copy_kv(p->env, p->n_env, &b->env, NULL, true);
    if (rc == 0)
        rc = copy_kv(p->metadata, p->n_metadata, &b->meta_k, &b->meta_v, false);
    b->n_env = p->n_env;
    b->n_meta = p->n_metadata;
    if (rc == 0 && r->cfg.egress) {
        char label[200];
        snprintf(label, sizeof label, "%s/%s", tenant, p->project_id);
        b->net = sbx_egress_sb_new(r->cfg.egress, b->id, label,
                                   p->network ? p->network : r->cfg.egress_default);
        rc = b->net ? 0 : -ENOMEM;
    }
    if (!b->home || (r->cfg.home_images && !b->image) || rc < 0) {
        b->uid_slot = -1;
        sbx_box_unref(b);
        return NULL;
    }
    return b;
}

/* ---------------------------------------------------------------- runtime */

/* The file handle of a running sandbox: its root as the init sent it (sbx_sandbox_root_fd). */
static int open_files(sbx_box *b, sbx_sandbox *sb, sbx_files **out)
{
    if (sbx_sandbox_root_fd(sb) < 0)
        return -ENOENT;
    int rootfd = fcntl(sbx_sandbox_root_fd(sb), F_DUPFD_CLOEXEC, 0);
    if (rootfd < 0)
        return -errno;
    sbx_files_config fc;
    sbx_files_config_init(&fc);
    uid_t hu = sbx_sandbox_user_uid(sb);
    fc.host_uid = hu;
    fc.host_gid = (gid_t)hu;
    fc.max_file_size = (uint64_t)b->limits.disk_bytes;
    int rc = sbx_files_new(rootfd, &fc, out);
    close(rootfd);
    return rc;
}

static sbx_sandbox_cfg sandbox_cfg(sbx_reg *r, sbx_box *b, const char *tdir)
{
    return (sbx_sandbox_cfg){
        .id = b->id,
        .init_path = r->init_path,
        .home_dir = b->image ? NULL : b->home,
        .home_image = b->image,
        .disk_bytes = (uint64_t)b->limits.disk_bytes,
        .disk_inodes = (uint64_t)b->limits.disk_inodes,
        .template_root = tdir,
        .cgroup_parent = r->cgroup_parent,
        /* 0: the warm pool picks an init and its uid block (templates are built cold) */
        .uid_base = r->cfg.use_pool && !tdir
                        ? 0
                        : r->cfg.uid_base_first + (uint32_t)b->uid_slot * UID_BLOCK,
        .limits = {.memory_bytes = (uint64_t)b->limits.memory_bytes,
                   .pids = (uint64_t)b->limits.pids,
                   .cpu_millis = (uint32_t)b->limits.cpu_millis,
                   .nofile = (uint64_t)b->limits.open_files,
                   .file_bytes = (uint64_t)b->limits.disk_bytes},
        .allow_weak_isolation = r->cfg.allow_weak_isolation,
    };
}

/* Creates the sandbox, its process table and its file handle. Returns a gRPC code. */
static int make_runtime(sbx_reg *r, sbx_box *b, const char *tdir, char *err, size_t errlen)
{
    sbx_sandbox_cfg sc = sandbox_cfg(r, b, tdir);
    sbx_sandbox *sb = NULL;
    int rc = sbx_sandbox_create(&sc, &sb);
    if (rc < 0) {
        sbx__reg_seterr(err, errlen, "sandbox init failed to start: %s", strerror(-rc));
        return rc == -EINVAL ? SBX_INTERNAL : SBX_UNAVAILABLE;
    }
    sbx_proctab_cfg pc = {.ring_bytes = r->cfg.ring_bytes, .max_finished = 64};
    sbx_proctab *pt = NULL;
    if ((rc = sbx_proctab_create(sb, &pc, &pt)) < 0) {
        sbx_sandbox_destroy(sb);
        sbx__reg_seterr(err, errlen, "cannot create the process table: %s", strerror(-rc));
        return SBX_UNAVAILABLE;
    }
    sbx_files *fs = NULL;
    if ((rc = open_files(b, sb, &fs)) < 0) {
        sbx_proctab_destroy(pt);
        sbx_sandbox_destroy(sb);
        sbx__reg_seterr(err, errlen, "cannot open the sandbox root: %s", strerror(-rc));
        return SBX_UNAVAILABLE;
    }
    list_enforced(b, sb);
    b->from_pool = sbx_sandbox_from_pool(sb);
    pthread_mutex_lock(&b->mu);
    b->sb = sb;
    b->pt = pt;
    b->fs = fs;
    b->init_pid = (int)sbx_sandbox_init_pid(sb);
    pthread_mutex_unlock(&b->mu);
    return SBX_OK;
}

/* Builds the runtime of a STARTING box and attaches the layer above (no locks held). Returns a
 * gRPC code. */
static int start_runtime(sbx_reg *r, sbx_box *b, const char *tdir, char *err, size_t errlen)
{
    /* the project's dir (an image goes in it) or the home dir itself */
    char *dir = b->image ? strndup(b->home, (size_t)(strrchr(b->home, '/') - b->home)) : NULL;
    int rc = sbx__reg_mkdir_p(dir ? dir : b->home, 0700);
    free(dir);
    if (rc < 0) {
        sbx__reg_seterr(err, errlen, "cannot create the sandbox home: %s", strerror(-rc));
        return SBX_INTERNAL;
    }
    int code = make_runtime(r, b, tdir, err, errlen);
    if (code != SBX_OK)
        return code;
    const char *what = "cannot open the egress proxies";
    rc = b->net ? sbx_egress_sb_start(b->net, sbx_sandbox_netns_fd(b->sb)) : 0;
    if (rc >= 0) {
        what = "cannot attach the execution table";
        if (!r->cfg.hooks.attach || (rc = r->cfg.hooks.attach(r->cfg.hooks.arg, b)) >= 0)
            return SBX_OK;
        sbx_egress_sb_stop(b->net);
    }
    pthread_mutex_lock(&b->mu);
    sbx_sandbox *sb = b->sb;
    sbx_proctab *pt = b->pt;
    sbx_files *fs = b->fs;
    b->sb = NULL;
    b->pt = NULL;
    b->fs = NULL;
    pthread_mutex_unlock(&b->mu);
    sbx_proctab_destroy(pt);
    sbx_files_free(fs);
    sbx_sandbox_destroy(sb);
    sbx__reg_seterr(err, errlen, "%s: %s", what, strerror(-rc));
    return SBX_INTERNAL;
}

/* An existing home decides the disk limits: an image keeps what it was made with (a request
 * for others is FAILED_PRECONDITION), a directory home made before images stays a directory.
 * Returns a gRPC code. */
static int settle_home(sbx_box *b, const Sbx__V1__SandboxLimits *req, char *err, size_t errlen)
{
    if (!b->image)
        return SBX_OK;
    uint64_t bytes = 0, inodes = 0;
    int rc = sbx_disk_image_spec(b->image, &bytes, &inodes);
    struct stat st;
    if (rc == -ENOENT && lstat(b->home, &st) == 0) {
        SBX_LOG_INFO("registry",
                     "home is a directory made before disk images: no total disk limit (kill "
                     "with wipe_home to give it one) dir=%s",
                     b->home);
        free(b->image);
        b->image = NULL;
        return SBX_OK;
    }
    if (rc < 0)
        return SBX_OK; /* a new image (made with b->limits), or one that does not say */
    if (req && ((req->disk_bytes && (uint64_t)req->disk_bytes != bytes) ||
                (req->disk_inodes && (uint64_t)req->disk_inodes != inodes))) {
        sbx__reg_seterr(err, errlen,
                        "limits.disk_bytes/disk_inodes: the project's home was made with %llu "
                        "bytes and %llu inodes and keeps them (kill the sandbox with wipe_home "
                        "to make it again with other limits)",
                        (unsigned long long)bytes, (unsigned long long)inodes);
        return SBX_FAILED_PRECONDITION;
    }
    b->limits.disk_bytes = (int64_t)bytes;
    b->limits.disk_inodes = (int64_t)inodes;
    return SBX_OK;
}

/* ---------------------------------------------------------------- create */

/* Adds a new STARTING box for the project to the index (caller holds r->mu). */
static int add_starting(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                        char *err, size_t errlen)
{
    const char *tname = p->template_name ? p->template_name : "";
    if (tname[0] && !template_dir(r, tname)) {
        sbx__reg_seterr(err, errlen, "template: this server has no template named \"%s\"", tname);
        return SBX_NOT_FOUND;
    }
    exv_limits lim;
    int code = exv_limits_resolve(p->limits, &r->cfg.defaults, &r->cfg.max, &lim, err, errlen);
    if (code != SBX_OK)
        return code;
    if (r->n_live >= r->cfg.max_sandboxes) {
        sbx__reg_seterr(err, errlen,
                        "sandboxes: %zu live sandboxes is the server limit "
                        "(--max-sandboxes)",
                        r->cfg.max_sandboxes);
        return SBX_RESOURCE_EXHAUSTED;
    }
    int slot = pick_slot(r);
    if (slot < 0) {
        sbx__reg_seterr(err, errlen,
                        "sandboxes: no free uid block (stopped sandboxes are still "
                        "shutting down)");
        return SBX_RESOURCE_EXHAUSTED;
    }
    sbx_box *b = box_new(r, tenant, p, &lim, slot);
    if (!b) {
        r->slots[slot] = 0;
        sbx__reg_seterr(err, errlen, "out of memory");
        return SBX_RESOURCE_EXHAUSTED;
    }
    if ((code = settle_home(b, p->limits, err, errlen)) != SBX_OK) {
        r->slots[slot] = 0;
        b->uid_slot = -1;
        sbx_box_unref(b);
        return code;
    }
    sbx__reg_index_add(r, b);
    r->n_live++;
    *out = b;
    return SBX_OK;
}

/* Publishes how the start went: RUNNING with the creator's use, or STOPPED and out of the
 * index (caller holds r->mu). */
static void publish_start(sbx_reg *r, sbx_box *b, int code)
{
    pthread_mutex_lock(&b->mu);
    if (code == SBX_OK) {
        b->state = SBX_BOX_RUNNING;
        b->users = 1; /* the creation reference becomes the caller's, with its use */
        b->last_used_ms = sbx_wall_ms();
    } else {
        b->state = SBX_BOX_STOPPED;
        b->torn = true;
        b->stopped_ms = sbx_wall_ms();
    }
    pthread_mutex_unlock(&b->mu);
    if (code != SBX_OK) {
        r->slots[b->uid_slot] = 0;
        b->uid_slot = -1;
        r->n_live--;
        sbx__reg_index_remove(r, b);
    }
    pthread_cond_broadcast(&r->cond);
}

int sbx__reg_create_or_get(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                           bool *created, char *err, size_t errlen)
{
    *out = NULL;
    *created = false;
    pthread_mutex_lock(&r->mu);
    if (r->stop) {
        pthread_mutex_unlock(&r->mu);
        sbx__reg_seterr(err, errlen, "the executor is shutting down");
        return SBX_UNAVAILABLE;
    }
    sbx_box *b = sbx__reg_live_with_use(r, tenant, p->project_id);
    bool found = b != NULL;
    int code = found ? SBX_OK : add_starting(r, tenant, p, &b, err, errlen);
    const char *tdir = code == SBX_OK && !found ? template_dir(r, b->template_name) : NULL;
    pthread_mutex_unlock(&r->mu);
    if (code != SBX_OK)
        return code;
    if (found) {
        *out = b;
        return SBX_OK;
    }
    code = start_runtime(r, b, tdir, err, errlen);
    pthread_mutex_lock(&r->mu);
    publish_start(r, b, code);
    pthread_mutex_unlock(&r->mu);
    if (code != SBX_OK) {
        SBX_LOG_WARN("registry", "sandbox creation failed tenant=%s project=%s msg=\"%s\"", tenant,
                     p->project_id, err);
        sbx_box_unref(b);
        return code;
    }
    sbx__reg_table_save(r, b);
    SBX_LOG_INFO("registry", "sandbox started id=%s tenant=%s project=%s", b->id, tenant,
                 p->project_id);
    *created = true;
    *out = b;
    return SBX_OK;
}

int sbx_reg_create(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                   bool *created, char *err, size_t errlen)
{
    return sbx__reg_create_or_get(r, tenant, p, out, created, err, errlen);
}
