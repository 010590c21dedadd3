/* pool.c: the warm pool of sandbox inits (sbx_sandbox_pool_config, see sandbox.h) and the
 * creates that let it choose the uid range (uid_base 0).
 *
 * Job: a refill thread keeps `size` inits parked with their namespaces, uid maps, cgroups
 * (already attached: the first cgroup.procs write after a quiet spell waits for an RCU grace
 * period, 6-15 ms here, so a batch is built in phases and one grace period covers all of its
 * moves), root filesystem and compiled seccomp program ready. A create with uid_base 0 claims
 * one and sends it only the per-sandbox parts (home mount, hostname, rlimits, tmpfs sizes;
 * the cgroup limits that differ are written here); with none parked, it creates cold in a free
 * 65536-id block of the pool's range. The range is a bitmap of blocks; a block is free again
 * once the sandbox in it is destroyed.
 *
 * Threads: the refill thread (pool_main, joined by sbx_sandbox_pool_shutdown) and callers of
 * any thread. Ownership: parked inits belong to the pool until claimed; a claimed one belongs
 * to the creator. Locks: pool.lock, taken after the registry lock (service.c), never before
 * it; no other lock is taken while it is held. pool.cond runs on CLOCK_MONOTONIC (made so
 * before main, pool_cond_init). */
#include "sandbox_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define POOL_MAX 64  /* parked inits at most */
#define POOL_BATCH 8 /* built together, so one RCU grace period covers their cgroup moves */
#define CLAIM_TRIES 3
#define FULL_WAIT_S 10 /* a uid_base 0 create waits this long for an init being built */

/* What a batch of parked inits is built from (a snapshot of the configuration). */
typedef struct {
    char init_path[4096];
    char parent[65];
    char template_root[4096]; /* "" = host system dirs */
    uint64_t tmp_bytes;       /* /tmp and /dev/shm of the prebuilt roots */
    sbx_cg_limits lim;        /* written ahead into the parked inits' groups */
    uint32_t uid_first;
} pool_params;

static struct {
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* refill work, a slot freed, ready count changed, stop */
    bool configured;      /* a uid range is reserved */
    bool running, stop;   /* refill thread */
    pthread_t thread;
    unsigned gen; /* bumped by every (re)configuration: older parked inits are dropped */
    size_t target;
    pool_params p;
    uint32_t nslots, nused, cursor;
    uint8_t used[65536 / 8];
    sbx_sandbox *ready[POOL_MAX];
    size_t nready, building;
    uint64_t claimed, cold, built, failures;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* pool.cond waits with sbx_deadline_in deadlines: it must run on CLOCK_MONOTONIC, which a
 * static initializer cannot say. */
__attribute__((constructor)) static void pool_cond_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool.cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* ---------------------------------------------------------------- uid blocks */

/* caller holds pool.lock; returns a free slot index or -1 */
static int slot_take_locked(void)
{
    for (uint32_t k = 0; k < pool.nslots; k++) {
        uint32_t i = (pool.cursor + k) % pool.nslots;
        if (!(pool.used[i / 8] & (1u << (i % 8)))) {
            pool.used[i / 8] |= (uint8_t)(1u << (i % 8));
            pool.nused++;
            pool.cursor = i + 1;
            return (int)i;
        }
    }
    return -1;
}

void sbx__pool_slot_put(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&pool.lock);
    uint32_t i = (uint32_t)slot;
    if (i < pool.nslots && (pool.used[i / 8] & (1u << (i % 8)))) {
        pool.used[i / 8] &= (uint8_t) ~(1u << (i % 8));
        pool.nused--;
        pthread_cond_broadcast(&pool.cond);
    }
    pthread_mutex_unlock(&pool.lock);
}

bool sbx__pool_in_range(uint32_t base)
{
    pthread_mutex_lock(&pool.lock);
    uint64_t lo = pool.p.uid_first, hi = lo + (uint64_t)pool.nslots * UID_BLOCK;
    bool in = pool.configured && (uint64_t)base + UID_BLOCK > lo && base < hi;
    pthread_mutex_unlock(&pool.lock);
    return in;
}

/* ---------------------------------------------------------------- building parked inits */

typedef struct {
    sbx_sandbox *sb;
    pid_t helper;
    int cg2fd;
} parked_build;

static void build_drop(parked_build *b)
{
    if (b->cg2fd >= 0)
        close(b->cg2fd);
    sbx_sandbox_destroy(b->sb);
}

/* Phase 1 for one slot: the parked sandbox, its groups and its helper. false when it failed
 * (the slot is released). */
static bool build_spawn(int slot, const pool_params *pp, const sbx_cg_env *cgenv, parked_build *b)
{
    uint32_t base = pp->uid_first + (uint32_t)slot * UID_BLOCK;
    char id[32];
    snprintf(id, sizeof id, "@pool-%u", base); /* '@' is never in a sandbox id */
    sbx_sandbox *sb = sbx__sb_alloc(id, base, slot);
    if (!sb) {
        sbx__pool_slot_put(slot);
        return false;
    }
    sb->parked = true;
    int rc = sbx__svc_add(sb);
    if (rc < 0) {
        sbx__sb_free(sb);
        sbx__pool_slot_put(slot);
        return false;
    }
    const char *scratch[8];
    size_t ns = 0;
    sb->cg_lim = pp->lim;
    rc = sbx_cg_create(cgenv, pp->parent, id, &pp->lim, base, &sb->cg, scratch, &ns);
    *b = (parked_build){.sb = sb, .cg2fd = -1};
    b->helper = rc < 0 ? rc : sbx__sb_spawn_init(sb, pp->init_path, &b->cg2fd);
    if (b->helper < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", b->helper, "pool: cannot start an init uid_base=%u",
                      base);
        build_drop(b);
        return false;
    }
    return true;
}

/* Phase 3 for one init: Setup with park set, answered by Ready. */
static int build_park(parked_build *b, const pool_params *pp)
{
    Sbxinit__Setup su = SBXINIT__SETUP__INIT;
    su.park = true;
    su.has_cgroup2 = b->cg2fd >= 0;
    su.tmp_bytes = pp->tmp_bytes;
    int tfd = -1, rc = 0;
    if (pp->template_root[0] && (tfd = sbx__template_mount_fd(pp->template_root)) < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", tfd, "pool: cannot clone the template dir=%s",
                      pp->template_root);
        rc = tfd;
    }
    su.has_template_mount = tfd >= 0;
    if (rc == 0)
        rc = sbx__sb_setup(b->sb, &su, b->helper, &tfd, tfd >= 0 ? 1 : 0);
    else /* no Setup: the helper waits for one */
        while (kill(b->helper, SIGKILL) == 0 && waitpid(b->helper, NULL, 0) < 0 && errno == EINTR) {
        }
    if (tfd >= 0)
        close(tfd);
    if (b->cg2fd >= 0)
        close(b->cg2fd);
    b->cg2fd = -1;
    return rc;
}

/* Builds parked inits in the given slots, in phases so that one RCU grace period covers all of
 * their cgroup moves. Returns how many were made (into made[]); failed slots are released. */
static size_t pool_build(const int *slots, size_t k, const pool_params *pp, sbx_sandbox **made)
{
    parked_build b[POOL_BATCH];
    sbx_cg_env cgenv = sbx__detect_cg_env();
    size_t n = 0;
    for (size_t i = 0; i < k; i++)
        if (build_spawn(slots[i], pp, &cgenv, &b[n]))
            n++;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) { /* the first move pays the grace period, the rest not */
        if (sbx__sb_attach(b[i].sb, b[i].helper) < 0)
            build_drop(&b[i]);
        else
            b[w++] = b[i];
    }
    size_t nmade = 0;
    for (size_t i = 0; i < w; i++) {
        if (build_park(&b[i], pp) < 0)
            sbx_sandbox_destroy(b[i].sb);
        else
            made[nmade++] = b[i].sb;
    }
    return nmade;
}

/* ---------------------------------------------------------------- refill thread */

/* Takes up to POOL_BATCH free slots for the inits still missing (caller holds pool.lock). */
static size_t refill_slots_locked(int *slots)
{
    size_t have = pool.nready + pool.building;
    size_t want = pool.target > have ? pool.target - have : 0;
    if (want > POOL_BATCH)
        want = POOL_BATCH;
    size_t k = 0;
    while (k < want) {
        int s = slot_take_locked();
        if (s < 0)
            break;
        slots[k++] = s;
    }
    return k;
}

/* Parks what a batch made, unless the pool was reconfigured or stopped meanwhile (caller holds
 * pool.lock); the rest goes into drop[]. Returns how many to drop. */
static size_t refill_publish_locked(sbx_sandbox **made, size_t nmade, size_t k, unsigned gen,
                                    sbx_sandbox **drop)
{
    size_t ndrop = 0;
    pool.building -= k;
    pool.built += nmade;
    pool.failures += k - nmade;
    for (size_t i = 0; i < nmade; i++) {
        if (gen == pool.gen && !pool.stop && pool.nready < POOL_MAX)
            pool.ready[pool.nready++] = made[i];
        else
            drop[ndrop++] = made[i];
    }
    pthread_cond_broadcast(&pool.cond);
    return ndrop;
}

static void *pool_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    while (!pool.stop) {
        int slots[POOL_BATCH];
        size_t k = refill_slots_locked(slots);
        if (k == 0) { /* full, or no free uid range until a sandbox is destroyed */
            pthread_cond_wait(&pool.cond, &pool.lock);
            continue;
        }
        pool_params pp = pool.p;
        unsigned gen = pool.gen;
        pool.building += k;
        pthread_mutex_unlock(&pool.lock);

        sbx_sandbox *made[POOL_BATCH], *drop[POOL_BATCH];
        size_t nmade = pool_build(slots, k, &pp, made);

        pthread_mutex_lock(&pool.lock);
        size_t ndrop = refill_publish_locked(made, nmade, k, gen, drop);
        if (ndrop) {
            pthread_mutex_unlock(&pool.lock);
            for (size_t i = 0; i < ndrop; i++)
                sbx_sandbox_destroy(drop[i]);
            pthread_mutex_lock(&pool.lock);
        }
        if (nmade == 0 && !pool.stop) { /* do not spin on a persistent failure */
            struct timespec dl;
            sbx_deadline_in(&dl, 1000);
            pthread_cond_timedwait(&pool.cond, &pool.lock, &dl);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* ---------------------------------------------------------------- configuration */

/* Takes the parked inits out of the pool (caller holds pool.lock) into out[]. */
static size_t pool_drain_locked(sbx_sandbox **out)
{
    size_t n = pool.nready;
    memcpy(out, pool.ready, n * sizeof *out);
    pool.nready = 0;
    pthread_cond_broadcast(&pool.cond);
    return n;
}

static bool valid_pool_cfg(const sbx_sandbox_pool_cfg *cfg)
{
    return cfg && cfg->init_path && strlen(cfg->init_path) < sizeof pool.p.init_path &&
           (!cfg->template_root || strlen(cfg->template_root) < sizeof pool.p.template_root) &&
           cfg->size <= POOL_MAX && (!cfg->cgroup_parent || sbx__valid_id(cfg->cgroup_parent)) &&
           cfg->uid_first >= UID_BLOCK && cfg->uid_count >= UID_BLOCK &&
           (uint64_t)cfg->uid_first + cfg->uid_count <= (uint64_t)UINT32_MAX - UID_BLOCK;
}

/* The parameters cfg asks for (uid_first included). */
static pool_params params_of(const sbx_sandbox_pool_cfg *cfg)
{
    pool_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.init_path, sizeof p.init_path, "%s", cfg->init_path);
    snprintf(p.parent, sizeof p.parent, "%s", cfg->cgroup_parent ? cfg->cgroup_parent : "sbx");
    snprintf(p.template_root, sizeof p.template_root, "%s",
             cfg->template_root ? cfg->template_root : "");
    p.tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : DEFAULT_TMP_BYTES;
    p.lim = sbx__cg_limits_of(&cfg->limits);
    p.uid_first = cfg->uid_first;
    return p;
}

static bool same_params(const pool_params *a, const pool_params *b)
{
    return strcmp(a->init_path, b->init_path) == 0 && strcmp(a->parent, b->parent) == 0 &&
           strcmp(a->template_root, b->template_root) == 0 && a->tmp_bytes == b->tmp_bytes &&
           memcmp(&a->lim, &b->lim, sizeof a->lim) == 0;
}

/* Starts the refill thread unless it runs (caller holds pool.lock); 0 or -errno. */
static int start_refill_locked(void)
{
    if (pool.running || pool.target == 0)
        return 0;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pool.stop = false;
    int rc = -pthread_create(&pool.thread, &a, pool_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    pool.running = rc == 0;
    return rc;
}

/* Installs the new configuration (caller holds pool.lock); parked inits built for another one
 * go to drop[]. -EBUSY when the range would change under a block in use. */
static int reconfigure_locked(const sbx_sandbox_pool_cfg *cfg, const pool_params *np,
                              uint32_t nslots, sbx_sandbox **drop, size_t *ndrop)
{
    bool same_range = pool.configured && pool.p.uid_first == np->uid_first && pool.nslots == nslots;
    if (!same_range && pool.nused > 0) {
        SBX_LOG_ERROR("sandbox",
                      "pool: the uid range cannot change while %u of its blocks are in use",
                      pool.nused);
        return -EBUSY;
    }
    if (!same_range || !same_params(&pool.p, np)) {
        pool.gen++;
        *ndrop = pool_drain_locked(drop);
    }
    if (!same_range) {
        memset(pool.used, 0, sizeof pool.used);
        pool.nslots = nslots;
        pool.cursor = 0;
    }
    pool.p = *np;
    pool.configured = true;
    pool.target = cfg->size;
    return start_refill_locked();
}

int sbx_sandbox_pool_config(const sbx_sandbox_pool_cfg *cfg)
{
    if (!valid_pool_cfg(cfg))
        return -EINVAL;
    sbx_sandbox_caps caps;
    int rc = sbx__runtime_start(cfg->init_path, &caps);
    if (rc < 0)
        return rc;
    if (!caps.namespaces) {
        SBX_LOG_ERROR("sandbox", "no sandbox pool: namespaces cannot be created");
        return -EPERM;
    }
    uint32_t nslots = cfg->uid_count / UID_BLOCK;
    if (nslots > 65536)
        nslots = 65536;
    pool_params np = params_of(cfg);
    sbx_sandbox *drop[POOL_MAX];
    size_t ndrop = 0;

    pthread_mutex_lock(&pool.lock);
    rc = reconfigure_locked(cfg, &np, nslots, drop, &ndrop);
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i < ndrop; i++)
        sbx_sandbox_destroy(drop[i]);
    if (rc == 0)
        SBX_LOG_INFO("sandbox", "pool size=%zu uid_first=%u slots=%u parent=%s", cfg->size,
                     cfg->uid_first, nslots, np.parent);
    return rc;
}

void sbx_sandbox_pool_shutdown(void)
{
    sbx_sandbox *drop[POOL_MAX];
    pthread_mutex_lock(&pool.lock);
    bool join = pool.running;
    pool.stop = true;
    pool.target = 0;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    if (join)
        pthread_join(pool.thread, NULL);
    pthread_mutex_lock(&pool.lock);
    pool.running = false;
    pool.stop = false;
    pool.gen++;
    size_t n = pool_drain_locked(drop);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i < n; i++)
        sbx_sandbox_destroy(drop[i]);
}

/* ---------------------------------------------------------------- observing */

int sbx_sandbox_pool_stats_get(sbx_sandbox_pool_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&pool.lock);
    st->target = pool.target;
    st->ready = pool.nready;
    st->building = pool.building;
    st->slots_total = pool.nslots;
    st->slots_used = pool.nused;
    st->claimed = pool.claimed;
    st->cold_creates = pool.cold;
    st->built = pool.built;
    st->build_failures = pool.failures;
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

int sbx_sandbox_pool_wait(size_t ready, int timeout_ms)
{
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.nready < ready && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&pool.cond, &pool.lock);
        else if (pthread_cond_timedwait(&pool.cond, &pool.lock, &dl) == ETIMEDOUT &&
                 pool.nready < ready)
            rc = -ETIMEDOUT;
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}

size_t sbx_sandbox_pool_pids(pid_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&pool.lock);
    for (size_t i = 0; i < pool.nready && n < max; i++)
        out[n++] = pool.ready[i]->init_pid;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

/* ---------------------------------------------------------------- claims */

/* Takes a parked init for cfg (none: NULL, *err 0 = use the cold path) and gives it cfg's id,
 * atomically with the duplicate-id check. Prefers the init whose range owns the home already
 * (no re-owning walk of the home tree). */
static sbx_sandbox *pool_take(const sbx_sandbox_cfg *cfg, const char *parent, int *err)
{
    uint32_t prefer = sbx__home_owner_base(cfg);
    *err = 0;
    sbx_sandbox *sb = NULL;
    sbx__svc_lock();
    if (sbx__svc_has_id_locked(cfg->id)) {
        sbx__svc_unlock();
        *err = -EEXIST;
        return NULL;
    }
    pthread_mutex_lock(&pool.lock);
    if (pool.nready > 0 && strcmp(pool.p.init_path, cfg->init_path) == 0 &&
        strcmp(pool.p.parent, parent) == 0 &&
        strcmp(pool.p.template_root, cfg->template_root ? cfg->template_root : "") == 0) {
        size_t pick = pool.nready - 1;
        for (size_t i = 0; i < pool.nready; i++)
            if (pool.ready[i]->uid_base == prefer)
                pick = i;
        sb = pool.ready[pick];
        pool.ready[pick] = pool.ready[--pool.nready];
        pool.claimed++;
        pthread_cond_broadcast(&pool.cond); /* refill */
    }
    pthread_mutex_unlock(&pool.lock);
    if (sb) {
        snprintf(sb->id, sizeof sb->id, "%s", cfg->id);
        sb->parked = false;
        sb->from_pool = true;
    }
    sbx__svc_unlock();
    return sb;
}

/* The home of a claim: prepared for the init's range, as a detached mount (*fd, -1 without a
 * home). */
static int claim_home(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int *fd)
{
    *fd = -1;
    return cfg->home_dir || cfg->home_image ? sbx__home_open(sb, cfg, fd) : 0;
}

/* Sends the Claim (with the home mount, if any) and waits for Ready. */
static int claim_send(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int home_fd)
{
    Sbxinit__InitMsg m = SBXINIT__INIT_MSG__INIT;
    Sbxinit__Claim c = SBXINIT__CLAIM__INIT;
    c.hostname = sb->id;
    c.tmp_bytes = cfg->limits.tmp_bytes ? cfg->limits.tmp_bytes : DEFAULT_TMP_BYTES;
    c.nofile = cfg->limits.nofile ? cfg->limits.nofile : DEFAULT_NOFILE;
    c.fsize_bytes = cfg->limits.file_bytes;
    c.nproc = cfg->limits.nproc;
    c.has_home_mount = home_fd >= 0;
    m.body_case = SBXINIT__INIT_MSG__BODY_CLAIM;
    m.claim = &c;
    sbx__pending p;
    int rc = sbx__request_fds(sb, &m, home_fd >= 0 ? &home_fd : NULL, home_fd >= 0 ? 1 : 0, &p,
                              SETUP_TIMEOUT_MS);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "sandbox", rc, "pooled init did not answer id=%s", sb->id);
        return rc;
    }
    return sbx__sb_take_ready(sb, &p);
}

/* Hands a parked init its sandbox: home, limits, hostname, rlimits. *init_failed tells a
 * failure of the init (worth a cold retry) from one of the request (home, cgroups). */
static int pool_claim(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, bool *init_failed)
{
    int home_fd;
    *init_failed = false;
    sb->cb = cfg->on_exit;
    sb->cb_arg = cfg->on_exit_arg;
    int rc = claim_home(sb, cfg, &home_fd);
    if (rc < 0)
        return rc;
    sbx_cg_env cgenv = sbx__detect_cg_env();
    sbx_cg_limits cl = sbx__cg_limits_of(&cfg->limits);
    rc = sbx_cg_update(&cgenv, &sb->cg, &sb->cg_lim, &cl, sb->enforced, &sb->nenforced);
    if (rc < 0) {
        if (home_fd >= 0)
            close(home_fd);
        return rc;
    }
    sb->cg_lim = cl;
    *init_failed = true;
    rc = claim_send(sb, cfg, home_fd);
    if (home_fd >= 0)
        close(home_fd);
    if (rc < 0)
        return rc;
    *init_failed = false;
    sbx__sb_add_rlimit_enforced(sb);
    SBX_LOG_INFO("sandbox", "created id=%s init_pid=%d uid_base=%u pooled=yes", sb->id,
                 (int)sb->init_pid, sb->uid_base);
    return 0;
}

/* Takes a parked init for cfg and hands it the sandbox: 0 (*out set), 1 when none that fits
 * is parked, or -errno (*init_failed: the init failed, worth another try). */
static int claim_one(const sbx_sandbox_cfg *cfg, const char *parent, sbx_sandbox **out,
                     bool *init_failed)
{
    int rc;
    *init_failed = false;
    sbx_sandbox *sb = pool_take(cfg, parent, &rc);
    if (!sb)
        return rc < 0 ? rc : 1;
    if ((rc = pool_claim(sb, cfg, init_failed)) == 0) {
        *out = sb;
        return 0;
    }
    sbx_sandbox_destroy(sb);
    return rc;
}

/* A block of the range for a cold create: its index (*base set), -2 without a pool range, -1
 * when every block is taken. With all taken but inits being built, waits up to FULL_WAIT_S for
 * one of them; *parked says one arrived (return -1: claim it instead). */
static int slot_for_cold(uint32_t *base, bool *parked)
{
    *parked = false;
    pthread_mutex_lock(&pool.lock);
    int slot = pool.configured ? slot_take_locked() : -2;
    if (slot == -1 && pool.building > 0) {
        struct timespec dl;
        sbx_deadline_in(&dl, FULL_WAIT_S * 1000);
        while (pool.nready == 0 && pool.building > 0 &&
               pthread_cond_timedwait(&pool.cond, &pool.lock, &dl) == 0) {
        }
        if (pool.nready > 0) {
            *parked = true;
            pthread_mutex_unlock(&pool.lock);
            return -1;
        }
        slot = slot_take_locked();
    }
    *base = pool.p.uid_first + (uint32_t)(slot < 0 ? 0 : slot) * UID_BLOCK;
    if (slot >= 0)
        pool.cold++;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    return slot;
}

int sbx__pool_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out)
{
    const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent : "sbx";
    bool init_failed;
    for (int tries = 0; tries < CLAIM_TRIES; tries++) {
        int rc = claim_one(cfg, parent, out, &init_failed);
        if (rc == 1)
            break; /* none parked: cold */
        if (rc == 0 || !init_failed)
            return rc;
        SBX_LOG_WARN("sandbox", "pooled init failed, trying another id=%s", cfg->id);
    }
    uint32_t base;
    bool parked;
    int slot = slot_for_cold(&base, &parked);
    if (parked) {
        int rc = claim_one(cfg, parent, out, &init_failed);
        return rc == 1 ? -ENOSPC : rc;
    }
    if (slot == -2)
        return -EINVAL; /* uid_base 0 needs a pool range */
    if (slot < 0) {
        SBX_LOG_ERROR("sandbox", "no free uid range in the pool id=%s", cfg->id);
        return -ENOSPC;
    }
    return sbx__sb_create_cold(cfg, base, slot, out);
}
