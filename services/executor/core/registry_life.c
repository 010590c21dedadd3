/* registry_life.c: the life of a box after its start (see registry.h, registry_int.h): its
 * references and uses, its stop (KillSandbox, a dead init, idle expiry, shutdown: state
 * STOPPED, every process SIGKILLed), the teardown of its runtime when the last use goes, the
 * wipe of its home, and the reaper thread that expires idle boxes and forgets old stopped ones.
 *
 * Threads: any; the reaper thread. Locks: the registry mutex, then a box mutex; teardown runs
 * with no lock held, on whichever thread released the last use. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "registry_int.h"
#include "status.h"

/* ---------------------------------------------------------------- references */

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
    sbx_egress_sb_free(b->net);
    free(b->home);
    free(b->image);
    free_strv(b->env, b->n_env);
    free_strv(b->meta_k, b->n_meta);
    free_strv(b->meta_v, b->n_meta);
    free_strv(b->enforced, b->n_enforced);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    free(b);
}

/* Removes name below dfd, a directory tree without following symlinks. */
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

/* Removes the project's home: the image (its space is freed once its last mount is gone) and
 * the directory. */
static int remove_home(sbx_box *b)
{
    int rc = 0;
    if (b->image && unlink(b->image) < 0 && errno != ENOENT)
        rc = -errno;
    int r = rm_rf_at(AT_FDCWD, b->home, 0);
    return rc < 0 ? rc : r;
}

/* ---------------------------------------------------------------- teardown */

/* Destroys the runtime of a STOPPED box without users. Runs with no lock held. */
static void teardown(sbx_box *b)
{
    sbx_reg *r = b->reg;
    if (r->cfg.on_stop) /* again: something may have been added by a use that ended since */
        r->cfg.on_stop(r->cfg.on_stop_arg, b);
    sbx_egress_sb_stop(b->net);
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
        int rc = remove_home(b);
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

void sbx__box_release(sbx_box *b, bool touch)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->users--;
    if (touch)
        b->last_used_ms = sbx_wall_ms();
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
    sbx__box_release(b, true);
}

bool sbx__box_use(sbx_box *b, bool touch)
{
    pthread_mutex_lock(&b->mu);
    bool ok = b->state == SBX_BOX_RUNNING;
    if (ok) {
        b->users++;
        if (touch)
            b->last_used_ms = sbx_wall_ms();
        sbx_box_ref(b);
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

bool sbx_box_use(sbx_box *b)
{
    return sbx__box_use(b, true);
}

bool sbx__box_stop(sbx_box *b, const char *why)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != SBX_BOX_RUNNING) {
        pthread_mutex_unlock(&b->mu);
        return false;
    }
    b->state = SBX_BOX_STOPPED;
    b->stopped_ms = sbx_wall_ms();
    b->users++; /* our own use while we kill */
    sbx_box_ref(b);
    sbx_sandbox *sb = b->sb;
    pthread_mutex_unlock(&b->mu);
    SBX_LOG_INFO("registry", "stopping sandbox id=%s reason=%s", b->id, why);
    sbx__reg_table_save(b->reg, b); /* STOPPED, also after a restart */
    if (b->reg->cfg.on_stop)
        b->reg->cfg.on_stop(b->reg->cfg.on_stop_arg, b);
    sbx_egress_sb_stop(b->net); /* its proxies and connections close at once */
    if (sb)
        sbx_sandbox_kill_all(sb);
    sbx__box_release(b, false);
    return true;
}

void sbx__box_wait_torn(sbx_box *b, int timeout_ms)
{
    struct timespec ts;
    sbx_deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&b->mu);
    while (!b->torn)
        if (pthread_cond_timedwait(&b->cond, &b->mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&b->mu);
}

void sbx_box_mark_dead(sbx_box *b, const char *why)
{
    sbx__box_stop(b, why);
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
            int rc = remove_home(b);
            if (rc < 0) {
                sbx__reg_seterr(err, errlen, "wipe_home: cannot remove the home directory: %s",
                                strerror(-rc));
                *killed = false;
                return SBX_INTERNAL;
            }
        }
    }
    *killed = sbx__box_stop(b, "killed");
    sbx__box_wait_torn(b, 10000);
    return SBX_OK;
}

/* ---------------------------------------------------------------- clocks */

int sbx_box_set_idle_timeout(sbx_box *b, int64_t ms, char *err, size_t errlen)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != SBX_BOX_RUNNING) {
        pthread_mutex_unlock(&b->mu);
        sbx__reg_seterr(err, errlen, "sandbox %s is stopped", b->id);
        return SBX_FAILED_PRECONDITION;
    }
    b->idle_timeout_ms = ms;
    b->last_used_ms = sbx_wall_ms();
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
    if (running && r->cfg.hooks.running && sbx__box_use(b, false)) {
        s->running_processes = r->cfg.hooks.running(r->cfg.hooks.arg, b);
        sbx__box_release(b, false);
    }
    if (s->running_processes > 0)
        s->last_used_ms = sbx_wall_ms();
    s->expires_ms = s->state == SBX_BOX_RUNNING && s->idle_timeout_ms > 0
                        ? s->last_used_ms + s->idle_timeout_ms
                        : 0;
}

/* ---------------------------------------------------------------- reaper */

/* One running box: stopped when its init died or it was idle too long; busy counts as used. */
static void reap_running(sbx_reg *r, sbx_box *b, int64_t now)
{
    pthread_mutex_lock(&b->mu);
    int64_t idle = b->idle_timeout_ms, last = b->last_used_ms;
    int users = b->users;
    pthread_mutex_unlock(&b->mu);
    if (!sbx__box_use(b, false))
        return;
    bool alive = sbx_sandbox_alive(b->sb);
    int running = r->cfg.hooks.running ? r->cfg.hooks.running(r->cfg.hooks.arg, b) : 0;
    sbx__box_release(b, false);
    if (running > 0 || users > 0) { /* busy is not idle */
        pthread_mutex_lock(&b->mu);
        b->last_used_ms = now;
        pthread_mutex_unlock(&b->mu);
    }
    if (!alive)
        sbx__box_stop(b, "the sandbox init died");
    else if (idle > 0 && running == 0 && users == 0 && now - last >= idle)
        sbx__box_stop(b, "idle timeout");
}

static void reap_once(sbx_reg *r)
{
    int64_t now = sbx_wall_ms();
    sbx_box **v;
    size_t n = sbx__reg_all(r, &v);
    for (size_t i = 0; i < n; i++) {
        sbx_box *b = v[i];
        pthread_mutex_lock(&b->mu);
        sbx_box_state st = b->state;
        bool forget =
            st == SBX_BOX_STOPPED && b->torn && now - b->stopped_ms >= r->cfg.stopped_retention_ms;
        pthread_mutex_unlock(&b->mu);
        if (forget) {
            sbx__reg_table_forget(r, b);
            pthread_mutex_lock(&r->mu);
            sbx__reg_index_remove(r, b);
            pthread_mutex_unlock(&r->mu);
        } else if (st == SBX_BOX_RUNNING) {
            reap_running(r, b, now);
        }
    }
    sbx_reg_list_free(v, n);
}

static void *reaper_main(void *arg)
{
    sbx_reg *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec ts;
        sbx_deadline_in(&ts, r->cfg.reaper_interval_ms);
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

int sbx__reg_reaper_start(sbx_reg *r)
{
    int rc = -pthread_create(&r->reaper, NULL, reaper_main, r);
    if (rc < 0)
        r->stop = true; /* nothing to join */
    return rc;
}

void sbx__reg_reaper_stop(sbx_reg *r)
{
    pthread_mutex_lock(&r->mu);
    bool running = !r->stop;
    r->stop = true;
    pthread_cond_broadcast(&r->reaper_cond);
    pthread_mutex_unlock(&r->mu);
    if (running)
        pthread_join(r->reaper, NULL);
}
