/* registry.c: sandboxes by id and by (tenant, project), their creation (one per project at a
 * time), uid blocks, homes, idle expiry and teardown (see registry.h). Two small chained hash
 * indexes under one registry mutex; each box has its own mutex for state, use count and clocks.
 * Lock order: registry mutex, then a box mutex. Slow work (creating or destroying a sandbox)
 * runs with no lock held. */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "status.h"

#define NBUCKETS 1024
#define UID_BLOCK 65536u

struct sbx_box {
    sbx_reg *reg;
    int refs; /* atomic */
    char id[EXV_ID_MAX + 1];
    char tenant[72];
    char project[EXV_PROJECT_MAX + 1];
    char template_name[EXV_TEMPLATE_MAX + 1];
    char *home;
    exv_limits limits;
    char **env;
    size_t n_env;
    char **meta_k, **meta_v;
    size_t n_meta;
    char **enforced;
    size_t n_enforced;
    int uid_slot;

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

int64_t sbx_now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
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

/* ---------------------------------------------------------------- box memory */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void sbx_box_ref(sbx_box *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
}

void sbx_box_unref(sbx_box *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(b->home);
    free_strv(b->env, b->n_env);
    free_strv(b->meta_k, b->n_meta);
    free_strv(b->meta_v, b->n_meta);
    free_strv(b->enforced, b->n_enforced);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    free(b);
}

/* ---------------------------------------------------------------- paths */

static int mkdir_p(const char *path, mode_t mode)
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
static char *home_path(const sbx_reg *r, const char *tenant, const char *project)
{
    char *p = NULL;
    const char *pre = tenant[0] == '.' ? "%" : "";
    if (asprintf(&p, "%s/sandboxes/%s%s/%s/home", r->data_dir, pre, tenant, project) < 0)
        return NULL;
    return p;
}

static int rm_rf_at(int dfd, const char *name, int depth)
{
    if (depth > 512)
        return -ELOOP;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int r2 = rm_rf_at(dirfd(d), e->d_name, depth + 1);
        if (r2 < 0 && rc == 0)
            rc = r2;
    }
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

/* ---------------------------------------------------------------- index */

static void index_add(sbx_reg *r, sbx_box *b)
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

static void index_remove(sbx_reg *r, sbx_box *b)
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

static sbx_box *find_id(sbx_reg *r, const char *id)
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

/* ---------------------------------------------------------------- teardown */

/* Destroys the runtime of a STOPPED box without users. Runs with no lock held. */
static void teardown(sbx_box *b)
{
    sbx_reg *r = b->reg;
    if (r->cfg.on_stop) /* again: something may have been added by a use that ended since */
        r->cfg.on_stop(r->cfg.on_stop_arg, b);
    if (r->cfg.hooks.detach)
        r->cfg.hooks.detach(r->cfg.hooks.arg, b);
    sbx_proctab_destroy(b->pt);
    sbx_files_free(b->fs);
    sbx_sandbox_destroy(b->sb);
    pthread_mutex_lock(&r->mu);
    if (b->uid_slot >= 0) {
        r->slots[b->uid_slot] = 0;
        b->uid_slot = -1;
    }
    r->n_live--;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&b->mu);
    b->pt = NULL;
    b->fs = NULL;
    b->sb = NULL;
    b->ext = NULL;
    b->init_pid = 0;
    bool wipe = b->wipe;
    pthread_mutex_unlock(&b->mu);
    if (wipe) {
        int rc = rm_rf_at(AT_FDCWD, b->home, 0);
        if (rc < 0)
            SBX_LOG_ERRNO(SBX_LOG_WARN, "registry", rc, "cannot wipe home dir=%s", b->home);
    }
    pthread_mutex_lock(&b->mu);
    b->torn = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    SBX_LOG_INFO("registry", "sandbox stopped id=%s tenant=%s project=%s", b->id, b->tenant,
                 b->project);
}

static void box_release(sbx_box *b, bool touch)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->users--;
    if (touch)
        b->last_used_ms = sbx_now_unix_ms();
    bool down = b->state == SBX_BOX_STOPPED && b->users == 0 && !b->torn && b->sb;
    if (down)
        b->users = -1; /* teardown in progress: nobody else starts it */
    pthread_mutex_unlock(&b->mu);
    if (down)
        teardown(b);
    sbx_box_unref(b);
}

void sbx_box_release(sbx_box *b)
{
    box_release(b, true);
}

static bool box_use(sbx_box *b, bool touch)
{
    pthread_mutex_lock(&b->mu);
    bool ok = b->state == SBX_BOX_RUNNING;
    if (ok) {
        b->users++;
        if (touch)
            b->last_used_ms = sbx_now_unix_ms();
        sbx_box_ref(b);
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool sbx_box_use(sbx_box *b)
{
    return box_use(b, true);
}

/* Marks the box stopped and kills its processes; returns false if it was not running. */
static bool stop_box(sbx_box *b, const char *why)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != SBX_BOX_RUNNING) {
        pthread_mutex_unlock(&b->mu);
        return false;
    }
    b->state = SBX_BOX_STOPPED;
    b->stopped_ms = sbx_now_unix_ms();
    b->users++; /* our own use while we kill */
    sbx_box_ref(b);
    sbx_sandbox *sb = b->sb;
    pthread_mutex_unlock(&b->mu);
    SBX_LOG_INFO("registry", "stopping sandbox id=%s reason=%s", b->id, why);
    if (b->reg->cfg.on_stop)
        b->reg->cfg.on_stop(b->reg->cfg.on_stop_arg, b);
    if (sb)
        sbx_sandbox_kill_all(sb);
    box_release(b, false);
    return true;
}

static void wait_torn(sbx_box *b, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->mu);
    while (!b->torn)
        if (pthread_cond_timedwait(&b->cond, &b->mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&b->mu);
}

void sbx_box_mark_dead(sbx_box *b, const char *why)
{
    stop_box(b, why);
}

int sbx_reg_kill(sbx_reg *r, sbx_box *b, bool wipe_home, bool *killed, char *err, size_t errlen)
{
    (void)r;
    if (wipe_home) {
        pthread_mutex_lock(&b->mu);
        b->wipe = true;
        bool torn = b->torn;
        pthread_mutex_unlock(&b->mu);
        if (torn) { /* already gone: wipe now */
            int rc = rm_rf_at(AT_FDCWD, b->home, 0);
            if (rc < 0) {
                seterr(err, errlen, "wipe_home: cannot remove the home directory: %s", strerror(-rc));
                *killed = false;
                return SBX_INTERNAL;
            }
        }
    }
    *killed = stop_box(b, "killed");
    wait_torn(b, 10000);
    return SBX_OK;
}

/* ---------------------------------------------------------------- create */

static int pick_slot(sbx_reg *r)
{
    for (size_t i = 0; i < r->cfg.max_sandboxes; i++)
        if (!r->slots[i]) {
            r->slots[i] = 1;
            return (int)i;
        }
    return -1;
}

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

/* Builds the runtime of a STARTING box (no locks held). Returns a gRPC code. */
static int start_runtime(sbx_reg *r, sbx_box *b, const char *template_dir, char *err,
                         size_t errlen)
{
    int rc = mkdir_p(b->home, 0711);
    if (rc < 0) {
        seterr(err, errlen, "cannot create the sandbox home: %s", strerror(-rc));
        return SBX_INTERNAL;
    }
    sbx_sandbox_cfg sc = {
        .id = b->id,
        .init_path = r->init_path,
        .home_dir = b->home,
        .template_root = template_dir,
        .cgroup_parent = r->cgroup_parent,
        /* 0: the warm pool picks an init and its uid block (templates are built cold) */
        .uid_base = r->cfg.use_pool && !template_dir ? 0
                                                     : r->cfg.uid_base_first + (uint32_t)b->uid_slot * UID_BLOCK,
        .limits = {.memory_bytes = (uint64_t)b->limits.memory_bytes,
                   .pids = (uint64_t)b->limits.pids,
                   .cpu_millis = (uint32_t)b->limits.cpu_millis,
                   .nofile = (uint64_t)b->limits.open_files,
                   .file_bytes = (uint64_t)b->limits.disk_bytes},
        .allow_weak_isolation = r->cfg.allow_weak_isolation,
    };
    sbx_sandbox *sb = NULL;
    if ((rc = sbx_sandbox_create(&sc, &sb)) < 0) {
        seterr(err, errlen, "sandbox init failed to start: %s", strerror(-rc));
        return rc == -EINVAL ? SBX_INTERNAL : SBX_UNAVAILABLE;
    }
    sbx_proctab_cfg pc = {.ring_bytes = r->cfg.ring_bytes, .max_finished = 64};
    sbx_proctab *pt = NULL;
    if ((rc = sbx_proctab_create(sb, &pc, &pt)) < 0) {
        sbx_sandbox_destroy(sb);
        seterr(err, errlen, "cannot create the process table: %s", strerror(-rc));
        return SBX_UNAVAILABLE;
    }
    char root[64];
    snprintf(root, sizeof root, "/proc/%d/root", (int)sbx_sandbox_init_pid(sb));
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    sbx_files *fs = NULL;
    if (rootfd < 0) {
        rc = -errno;
    } else {
        sbx_files_config fc;
        sbx_files_config_init(&fc);
        uid_t hu = sbx_sandbox_user_uid(sb);
        fc.host_uid = hu;
        fc.host_gid = (gid_t)hu;
        fc.max_file_size = (uint64_t)b->limits.disk_bytes;
        rc = sbx_files_new(rootfd, &fc, &fs);
        close(rootfd);
    }
    if (rc < 0) {
        sbx_proctab_destroy(pt);
        sbx_sandbox_destroy(sb);
        seterr(err, errlen, "cannot open the sandbox root: %s", strerror(-rc));
        return SBX_UNAVAILABLE;
    }
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
        add_enforced(b, "disk:rlimit-fsize-per-file");
    }
    add_enforced(b, "command_timeout:kill");
    add_enforced(b, "max_output_bytes:truncate");

    pthread_mutex_lock(&b->mu);
    b->sb = sb;
    b->pt = pt;
    b->fs = fs;
    b->init_pid = (int)sbx_sandbox_init_pid(sb);
    pthread_mutex_unlock(&b->mu);
    if (r->cfg.hooks.attach && (rc = r->cfg.hooks.attach(r->cfg.hooks.arg, b)) < 0) {
        pthread_mutex_lock(&b->mu);
        b->sb = NULL;
        b->pt = NULL;
        b->fs = NULL;
        pthread_mutex_unlock(&b->mu);
        sbx_proctab_destroy(pt);
        sbx_files_free(fs);
        sbx_sandbox_destroy(sb);
        seterr(err, errlen, "cannot attach the execution table: %s", strerror(-rc));
        return SBX_INTERNAL;
    }
    return SBX_OK;
}

static int create_locked_start(sbx_reg *r, const char *tenant, const sbx_box_params *p,
                               sbx_box **out, char *err, size_t errlen)
{
    /* caller holds r->mu; on SBX_OK *out is a new STARTING box in the index (lock released by
       the caller after) */
    const char *tname = p->template_name ? p->template_name : "";
    const char *tdir = NULL;
    if (tname[0]) {
        for (size_t i = 0; i < r->n_tpl; i++)
            if (strcmp(r->tpl_names[i], tname) == 0)
                tdir = r->tpl_dirs[i];
        if (!tdir) {
            seterr(err, errlen, "template: this server has no template named \"%s\"", tname);
            return SBX_NOT_FOUND;
        }
    }
    exv_limits lim;
    int code = exv_limits_resolve(p->limits, &r->cfg.defaults, &r->cfg.max, &lim, err, errlen);
    if (code != SBX_OK)
        return code;
    if (r->n_live >= r->cfg.max_sandboxes) {
        seterr(err, errlen, "sandboxes: %zu live sandboxes is the server limit (--max-sandboxes)",
               r->cfg.max_sandboxes);
        return SBX_RESOURCE_EXHAUSTED;
    }
    int slot = pick_slot(r);
    if (slot < 0) {
        seterr(err, errlen, "sandboxes: no free uid block (stopped sandboxes are still shutting down)");
        return SBX_RESOURCE_EXHAUSTED;
    }
    sbx_box *b = calloc(1, sizeof *b);
    if (!b) {
        r->slots[slot] = 0;
        seterr(err, errlen, "out of memory");
        return SBX_RESOURCE_EXHAUSTED;
    }
    b->reg = r;
    b->refs = 1;
    b->uid_slot = slot;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* ids: "sb-" + 16 hex of a per-process random salt mixed with a sequence */
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
    snprintf(b->id, sizeof b->id, "sb-%016llx", (unsigned long long)x);
    snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
    snprintf(b->project, sizeof b->project, "%s", p->project_id);
    snprintf(b->template_name, sizeof b->template_name, "%s", tname);
    b->limits = lim;
    b->state = SBX_BOX_STARTING;
    b->idle_timeout_ms = p->idle_timeout_ms ? p->idle_timeout_ms : r->cfg.idle_timeout_ms;
    b->created_ms = b->last_used_ms = sbx_now_unix_ms();
    b->home = home_path(r, tenant, p->project_id);
    if (!b->home || copy_kv(p->env, p->n_env, &b->env, NULL, true) < 0 ||
        copy_kv(p->metadata, p->n_metadata, &b->meta_k, &b->meta_v, false) < 0) {
        b->n_env = p->n_env;
        b->n_meta = p->n_metadata;
        r->slots[slot] = 0;
        sbx_box_unref(b);
        seterr(err, errlen, "out of memory");
        return SBX_RESOURCE_EXHAUSTED;
    }
    b->n_env = p->n_env;
    b->n_meta = p->n_metadata;
    index_add(r, b);
    r->n_live++;
    *out = b;
    return SBX_OK;
}

/* Waits for the project's STARTING box (if any) and returns its live box with a use, or NULL
 * when there is none. Caller holds r->mu. */
static sbx_box *live_with_use(sbx_reg *r, const char *tenant, const char *project)
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

static int create_or_get(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                         bool *created, char *err, size_t errlen)
{
    *out = NULL;
    *created = false;
    pthread_mutex_lock(&r->mu);
    if (r->stop) {
        pthread_mutex_unlock(&r->mu);
        seterr(err, errlen, "the executor is shutting down");
        return SBX_UNAVAILABLE;
    }
    sbx_box *b = live_with_use(r, tenant, p->project_id);
    if (b) {
        pthread_mutex_unlock(&r->mu);
        *out = b;
        return SBX_OK;
    }
    const char *tdir = NULL;
    int code = create_locked_start(r, tenant, p, &b, err, errlen);
    if (code != SBX_OK) {
        pthread_mutex_unlock(&r->mu);
        return code;
    }
    for (size_t i = 0; i < r->n_tpl; i++)
        if (b->template_name[0] && strcmp(r->tpl_names[i], b->template_name) == 0)
            tdir = r->tpl_dirs[i];
    pthread_mutex_unlock(&r->mu);

    code = start_runtime(r, b, tdir, err, errlen);

    pthread_mutex_lock(&r->mu);
    pthread_mutex_lock(&b->mu);
    if (code == SBX_OK) {
        b->state = SBX_BOX_RUNNING;
        b->users = 1;
        b->last_used_ms = sbx_now_unix_ms();
        /* the creation reference becomes the caller's, with its use */
    } else {
        b->state = SBX_BOX_STOPPED;
        b->torn = true;
        b->stopped_ms = sbx_now_unix_ms();
    }
    pthread_mutex_unlock(&b->mu);
    if (code != SBX_OK) {
        r->slots[b->uid_slot] = 0;
        b->uid_slot = -1;
        r->n_live--;
        index_remove(r, b);
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    if (code != SBX_OK) {
        SBX_LOG_WARN("registry", "sandbox creation failed tenant=%s project=%s msg=\"%s\"", tenant,
                     p->project_id, err);
        sbx_box_unref(b);
        return code;
    }
    SBX_LOG_INFO("registry", "sandbox started id=%s tenant=%s project=%s", b->id, tenant,
                 p->project_id);
    *created = true;
    *out = b;
    return SBX_OK;
}

int sbx_reg_create(sbx_reg *r, const char *tenant, const sbx_box_params *p, sbx_box **out,
                   bool *created, char *err, size_t errlen)
{
    return create_or_get(r, tenant, p, out, created, err, errlen);
}

int sbx_reg_get(sbx_reg *r, const char *tenant, const char *sandbox_id, const char *project_id,
                int mode, sbx_box **out, char *err, size_t errlen)
{
    *out = NULL;
    bool has_id = sandbox_id && sandbox_id[0], has_proj = project_id && project_id[0];
    if (has_id) {
        pthread_mutex_lock(&r->mu);
        sbx_box *b = find_id(r, sandbox_id);
        if (b && strcmp(b->tenant, tenant) != 0)
            b = NULL;
        if (b)
            sbx_box_ref(b);
        pthread_mutex_unlock(&r->mu);
        if (!b) {
            seterr(err, errlen, "sandbox_id: no sandbox %s", sandbox_id);
            return SBX_NOT_FOUND;
        }
        if (has_proj && strcmp(b->project, project_id) != 0) {
            sbx_box_unref(b);
            seterr(err, errlen, "sandbox_id, project_id: sandbox %s does not belong to project %s",
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
            seterr(err, errlen, "sandbox_id: sandbox %s is stopped (the project's next call "
                   "starts a new one)", sandbox_id);
            return SBX_FAILED_PRECONDITION;
        }
        *out = b;
        return SBX_OK;
    }
    if (!has_proj) {
        seterr(err, errlen, "sandbox_id, project_id: set one of them");
        return SBX_INVALID_ARGUMENT;
    }
    if (mode == REG_CREATE) {
        sbx_box_params p = {.project_id = project_id};
        bool created;
        return create_or_get(r, tenant, &p, out, &created, err, errlen);
    }
    pthread_mutex_lock(&r->mu);
    sbx_box *b = live_with_use(r, tenant, project_id);
    pthread_mutex_unlock(&r->mu);
    if (!b) {
        seterr(err, errlen, "project_id: project %s has no live sandbox", project_id);
        return SBX_NOT_FOUND;
    }
    if (mode == REG_ANY) { /* convert the use into a plain reference */
        sbx_box_ref(b);
        box_release(b, false);
    }
    *out = b;
    return SBX_OK;
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
            bool keep = b->state == SBX_BOX_RUNNING ||
                        (include_stopped && b->state == SBX_BOX_STOPPED);
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

size_t sbx_reg_live_count(sbx_reg *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_live;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---------------------------------------------------------------- box accessors */

void sbx_box_touch(sbx_box *b)
{
    pthread_mutex_lock(&b->mu);
    b->last_used_ms = sbx_now_unix_ms();
    pthread_mutex_unlock(&b->mu);
}

int sbx_box_set_idle_timeout(sbx_box *b, int64_t ms, char *err, size_t errlen)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != SBX_BOX_RUNNING) {
        pthread_mutex_unlock(&b->mu);
        seterr(err, errlen, "sandbox %s is stopped", b->id);
        return SBX_FAILED_PRECONDITION;
    }
    b->idle_timeout_ms = ms;
    b->last_used_ms = sbx_now_unix_ms();
    pthread_mutex_unlock(&b->mu);
    return SBX_OK;
}

bool sbx_box_running(sbx_box *b)
{
    pthread_mutex_lock(&b->mu);
    bool r = b->state == SBX_BOX_RUNNING;
    pthread_mutex_unlock(&b->mu);
    return r;
}

const char *sbx_box_id(const sbx_box *b) { return b->id; }
const char *sbx_box_tenant(const sbx_box *b) { return b->tenant; }
const char *sbx_box_project(const sbx_box *b) { return b->project; }
const char *sbx_box_template(const sbx_box *b) { return b->template_name; }
const exv_limits *sbx_box_limits(const sbx_box *b) { return &b->limits; }

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

sbx_sandbox *sbx_box_sandbox(sbx_box *b) { return b->sb; }
sbx_proctab *sbx_box_proctab(sbx_box *b) { return b->pt; }
sbx_files *sbx_box_files(sbx_box *b) { return b->fs; }
void *sbx_box_ext(sbx_box *b) { return b->ext; }
void sbx_box_set_ext(sbx_box *b, void *ext) { b->ext = ext; }

void sbx_box_snapshot(sbx_box *b, sbx_box_snap *s)
{
    sbx_reg *r = b->reg;
    pthread_mutex_lock(&b->mu);
    s->state = b->state;
    s->init_pid = b->state == SBX_BOX_RUNNING ? b->init_pid : 0;
    s->created_ms = b->created_ms;
    s->last_used_ms = b->last_used_ms;
    s->idle_timeout_ms = b->idle_timeout_ms;
    s->stopped_ms = b->stopped_ms;
    bool running = b->state == SBX_BOX_RUNNING && b->ext;
    pthread_mutex_unlock(&b->mu);
    s->running_processes = 0;
    if (running && r->cfg.hooks.running && box_use(b, false)) {
        s->running_processes = r->cfg.hooks.running(r->cfg.hooks.arg, b);
        box_release(b, false);
    }
    if (s->running_processes > 0)
        s->last_used_ms = sbx_now_unix_ms();
    s->expires_ms = s->state == SBX_BOX_RUNNING && s->idle_timeout_ms > 0
                        ? s->last_used_ms + s->idle_timeout_ms
                        : 0;
}

/* ---------------------------------------------------------------- reaper */

static void reap_once(sbx_reg *r)
{
    int64_t now = sbx_now_unix_ms();
    sbx_box **v = NULL;
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    if (r->n_boxes)
        v = calloc(r->n_boxes, sizeof *v);
    for (size_t i = 0; v && i < NBUCKETS; i++)
        for (sbx_box *b = r->by_id[i]; b; b = b->next_id) {
            sbx_box_ref(b);
            v[n++] = b;
        }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++) {
        sbx_box *b = v[i];
        pthread_mutex_lock(&b->mu);
        sbx_box_state st = b->state;
        bool torn = b->torn;
        int64_t stopped = b->stopped_ms, idle = b->idle_timeout_ms, last = b->last_used_ms;
        int users = b->users;
        pthread_mutex_unlock(&b->mu);
        if (st == SBX_BOX_STOPPED && torn && now - stopped >= r->cfg.stopped_retention_ms) {
            pthread_mutex_lock(&r->mu);
            index_remove(r, b);
            pthread_mutex_unlock(&r->mu);
        } else if (st == SBX_BOX_RUNNING) {
            if (!box_use(b, false))
                goto next;
            bool alive = sbx_sandbox_alive(b->sb);
            int running = r->cfg.hooks.running ? r->cfg.hooks.running(r->cfg.hooks.arg, b) : 0;
            box_release(b, false);
            if (running > 0 || users > 0) { /* busy is not idle */
                pthread_mutex_lock(&b->mu);
                b->last_used_ms = now;
                pthread_mutex_unlock(&b->mu);
            }
            if (!alive)
                stop_box(b, "the sandbox init died");
            else if (idle > 0 && running == 0 && users == 0 && now - last >= idle)
                stop_box(b, "idle timeout");
        }
    next:
        sbx_box_unref(b);
    }
    free(v);
}

static void *reaper_main(void *arg)
{
    sbx_reg *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)r->cfg.reaper_interval_ms * 1000000L;
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->reaper_cond, &r->mu, &ts);
        if (r->stop)
            break;
        pthread_mutex_unlock(&r->mu);
        reap_once(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---------------------------------------------------------------- new / free */

int sbx_reg_new(const sbx_reg_cfg *cfg, sbx_reg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->data_dir || !cfg->init_path) {
        seterr(err, errlen, "data dir and init path are required");
        return -EINVAL;
    }
    if (exv_limits_check_config(&cfg->defaults, &cfg->max, err, errlen) != SBX_OK)
        return -EINVAL;
    sbx_reg *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
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
        seterr(err, errlen, "--max-sandboxes: %zu uid blocks of 65536 from %u do not fit in 32 bits",
               r->cfg.max_sandboxes, r->cfg.uid_base_first);
        free(r);
        return -EINVAL;
    }
    r->data_dir = strdup(cfg->data_dir);
    r->init_path = strdup(cfg->init_path);
    r->cgroup_parent = cfg->cgroup_parent ? strdup(cfg->cgroup_parent) : NULL;
    r->slots = calloc(r->cfg.max_sandboxes, 1);
    r->n_tpl = cfg->n_templates;
    r->tpl_names = r->n_tpl ? calloc(r->n_tpl, sizeof(char *)) : NULL;
    r->tpl_dirs = r->n_tpl ? calloc(r->n_tpl, sizeof(char *)) : NULL;
    for (size_t i = 0; i < r->n_tpl && r->tpl_names && r->tpl_dirs; i++) {
        r->tpl_names[i] = strdup(cfg->template_names[i]);
        r->tpl_dirs[i] = strdup(cfg->template_dirs[i]);
    }
    r->cfg.template_names = NULL;
    r->cfg.template_dirs = NULL;
    r->cfg.data_dir = r->data_dir;
    r->cfg.init_path = r->init_path;
    r->cfg.cgroup_parent = r->cgroup_parent;
    char *sbdir = NULL;
    int rc = 0;
    if (!r->data_dir || !r->init_path || !r->slots || asprintf(&sbdir, "%s/sandboxes", r->data_dir) < 0) {
        sbdir = NULL;
        rc = -ENOMEM;
    } else if ((rc = mkdir_p(sbdir, 0711)) < 0) {
        seterr(err, errlen, "--data-dir: cannot create %s: %s", sbdir, strerror(-rc));
    } else {
        /* each sandbox's (unprivileged, per-sandbox) root must traverse to its home: the
           ancestors of the data dir are the operator's, so only say which one is closed */
        char anc[4096];
        if (realpath(r->data_dir, anc)) {
            for (char *sl = strrchr(anc, '/'); sl && sl != anc; sl = strrchr(anc, '/')) {
                *sl = 0;
                struct stat st;
                if (stat(anc, &st) == 0 && (st.st_mode & 0001) == 0)
                    SBX_LOG_WARN("registry", "a parent of --data-dir is not searchable by other "
                                 "users; sandboxes cannot reach their homes (chmod o+x it) dir=%s "
                                 "mode=%04o", anc, (unsigned)(st.st_mode & 07777));
            }
        }
        const char *dirs[2] = {r->data_dir, sbdir};
        for (int i = 0; i < 2; i++) {
            struct stat st;
            if (stat(dirs[i], &st) == 0 && (st.st_mode & 0111) != 0111) {
                SBX_LOG_INFO("registry", "adding search permission for sandboxes dir=%s", dirs[i]);
                if (chmod(dirs[i], (st.st_mode & 07777) | 0111) < 0)
                    SBX_LOG_ERRNO(SBX_LOG_WARN, "registry", errno, "chmod failed dir=%s", dirs[i]);
            }
        }
    }
    free(sbdir);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->reaper_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0 && (rc = -pthread_create(&r->reaper, NULL, reaper_main, r)) < 0)
        seterr(err, errlen, "cannot start the reaper thread");
    if (rc < 0) {
        r->stop = true;
        r->reaper = 0;
        sbx_reg_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void sbx_reg_free(sbx_reg *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    bool had_reaper = !r->stop;
    r->stop = true;
    pthread_cond_broadcast(&r->reaper_cond);
    pthread_mutex_unlock(&r->mu);
    if (had_reaper)
        pthread_join(r->reaper, NULL);
    /* kill every box, then drop the index */
    sbx_box **v = NULL;
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    if (r->n_boxes)
        v = calloc(r->n_boxes, sizeof *v);
    for (size_t i = 0; v && i < NBUCKETS; i++)
        for (sbx_box *b = r->by_id[i]; b; b = b->next_id) {
            sbx_box_ref(b);
            v[n++] = b;
        }
    pthread_mutex_unlock(&r->mu);
    size_t killed = 0;
    for (size_t i = 0; i < n; i++)
        if (stop_box(v[i], "executor shutdown"))
            killed++;
    for (size_t i = 0; i < n; i++)
        wait_torn(v[i], 10000);
    if (killed)
        SBX_LOG_INFO("registry", "killed every sandbox at shutdown count=%zu", killed);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n; i++)
        index_remove(r, v[i]);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++)
        sbx_box_unref(v[i]);
    free(v);
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
