/* registry_table.c: the sandbox table on disk (see registry.h, registry_int.h), so that the
 * sandboxes of an executor that died (kill -9, a crash) or was restarted still answer
 * GetSandbox/ListSandboxes as STOPPED for the retention time (the contract: at least 10 min)
 * instead of NOT_FOUND. One small text file per sandbox, <data-dir>/boxes/<sandbox_id>, written
 * when the sandbox starts (stopped_ms 0) and when it stops, removed when the reaper forgets the
 * stopped sandbox. At start-up every file becomes a STOPPED box (one that was still running
 * stopped now); files past the retention are removed. What a file keeps: id, tenant, project,
 * template, the clocks, the limits and the metadata (not the env or the enforcement list).
 *
 * The files are written to a temporary name and renamed, without fsync: they survive the
 * executor's death, and a host crash only loses the newest state of a sandbox that was running.
 *
 * Threads: any (a file per box: two writers of one box are its start and its stop, ordered by
 * the box's state). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "registry_int.h"

#define TABLE_MAGIC "sbx-box 1"
#define HEXSTR_MAX 260 /* hex of the longest id kept (128-byte project) + NUL */
#define LINE_MAX_TABLE (2 * (EXV_META_KEY_MAX + EXV_META_VALUE_MAX) + 64) /* a "meta" line */

static char *table_path(const sbx_reg *r, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/boxes%s%s", r->data_dir, name ? "/" : "", name ? name : "") < 0)
        return NULL;
    return p;
}

static void hex_of(const char *s, char *out, size_t room)
{
    size_t o = 0;
    for (; *s && o + 3 <= room; s++, o += 2)
        snprintf(out + o, 3, "%02x", (unsigned char)*s);
    out[o] = 0;
}

/* Decodes hex into out (room bytes, NUL-terminated); -1 when malformed or too long. */
static int unhex(const char *h, char *out, size_t room)
{
    size_t n = strlen(h);
    if (n % 2 || n / 2 + 1 > room)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1 || v == 0)
            return -1;
        out[i] = (char)v;
    }
    out[n / 2] = 0;
    return 0;
}

/* "meta <hex key> <hex value>" lines (the value may be empty). */
static void save_meta(FILE *f, const sbx_box *b)
{
    char k[2 * EXV_META_KEY_MAX + 1], v[2 * EXV_META_VALUE_MAX + 1];
    for (size_t i = 0; i < b->n_meta; i++) {
        hex_of(b->meta_k[i], k, sizeof k);
        hex_of(b->meta_v[i], v, sizeof v);
        fprintf(f, "meta %s %s\n", k, v);
    }
}

void sbx__reg_table_save(sbx_reg *r, sbx_box *b)
{
    char ten[HEXSTR_MAX], proj[HEXSTR_MAX], tpl[HEXSTR_MAX];
    hex_of(b->tenant, ten, sizeof ten);
    hex_of(b->project, proj, sizeof proj);
    hex_of(b->template_name, tpl, sizeof tpl);
    pthread_mutex_lock(&b->mu);
    int64_t created = b->created_ms, used = b->last_used_ms, idle = b->idle_timeout_ms;
    int64_t stopped = b->state == SBX_BOX_STOPPED ? b->stopped_ms : 0;
    pthread_mutex_unlock(&b->mu);
    char tmpname[EXV_ID_MAX + 8];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", b->id);
    char *tmp = table_path(r, tmpname), *path = table_path(r, b->id);
    FILE *f = tmp && path ? fopen(tmp, "we") : NULL;
    int rc = f ? 0 : -errno;
    if (f) {
        const exv_limits *l = &b->limits;
        fprintf(f,
                TABLE_MAGIC "\nid %s\ntenant %s\nproject %s\ntemplate %s\ncreated_ms %" PRId64
                            "\nlast_used_ms %" PRId64 "\nstopped_ms %" PRId64
                            "\nidle_timeout_ms %" PRId64 "\nlimits %" PRId64 " %" PRId64 " %" PRId64
                            " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n",
                b->id, ten, proj, tpl, created, used, stopped, idle, l->memory_bytes, l->pids,
                l->cpu_millis, l->command_timeout_ms, l->max_output_bytes, l->open_files,
                l->disk_bytes, l->disk_inodes);
        save_meta(f, b);
        if (fclose(f) != 0 || rename(tmp, path) < 0)
            rc = -errno;
    }
    if (rc < 0)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "registry", rc,
                      "cannot save the sandbox table entry (after a restart the sandbox would "
                      "be NOT_FOUND) id=%s",
                      b->id);
    free(tmp);
    free(path);
}

void sbx__reg_table_forget(sbx_reg *r, sbx_box *b)
{
    char *path = table_path(r, b->id);
    if (path && unlink(path) < 0 && errno != ENOENT)
        SBX_LOG_ERRNO(SBX_LOG_WARN, "registry", -errno,
                      "cannot remove a sandbox table entry "
                      "path=%s",
                      path);
    free(path);
}

/* One entry as read from its file. */
typedef struct {
    char id[EXV_ID_MAX + 1], tenant[72], project[EXV_PROJECT_MAX + 1];
    char tpl[EXV_TEMPLATE_MAX + 1];
    int64_t created, used, stopped, idle;
    exv_limits lim;
    char *meta_k[EXV_META_MAX], *meta_v[EXV_META_MAX]; /* malloc'd */
    size_t n_meta;
    unsigned seen; /* bit per line read */
} table_rec;

static void rec_free(table_rec *t)
{
    for (size_t i = 0; i < t->n_meta; i++) {
        free(t->meta_k[i]);
        free(t->meta_v[i]);
    }
    t->n_meta = 0;
}

/* One "meta" line's entry into t (a malformed or extra one is ignored). */
static void parse_meta(const char *val, table_rec *t)
{
    const char *sp = strchr(val, ' ');
    if (!sp || t->n_meta >= EXV_META_MAX)
        return;
    size_t kl = (size_t)(sp - val);
    char hk[2 * EXV_META_KEY_MAX + 1], k[EXV_META_KEY_MAX + 1], v[EXV_META_VALUE_MAX + 1];
    if (!kl || kl >= sizeof hk)
        return;
    memcpy(hk, val, kl);
    hk[kl] = 0;
    if (unhex(hk, k, sizeof k) < 0 || !k[0] || unhex(sp + 1, v, sizeof v) < 0)
        return;
    char *dk = strdup(k), *dv = strdup(v);
    if (!dk || !dv) {
        free(dk);
        free(dv);
        return;
    }
    t->meta_k[t->n_meta] = dk;
    t->meta_v[t->n_meta++] = dv;
}

static void parse_line(const char *line, table_rec *t)
{
    char key[32];
    exv_limits *l = &t->lim;
    if (strcmp(line, TABLE_MAGIC) == 0) {
        t->seen |= 1u;
        return;
    }
    const char *sp = strchr(line, ' ');
    size_t kl = sp ? (size_t)(sp - line) : 0;
    if (!kl || kl >= sizeof key)
        return;
    memcpy(key, line, kl);
    key[kl] = 0;
    const char *val = sp + 1; /* may be empty (the default template) */
    if (strcmp(key, "id") == 0 && val[0] && strlen(val) < sizeof t->id) {
        memcpy(t->id, val, strlen(val) + 1);
        t->seen |= 2u;
    } else if (strcmp(key, "tenant") == 0 && unhex(val, t->tenant, sizeof t->tenant) == 0)
        t->seen |= 4u;
    else if (strcmp(key, "project") == 0 && unhex(val, t->project, sizeof t->project) == 0)
        t->seen |= 8u;
    else if (strcmp(key, "template") == 0 && unhex(val, t->tpl, sizeof t->tpl) == 0)
        t->seen |= 16u;
    else if (strcmp(key, "created_ms") == 0 && sscanf(val, "%" SCNd64, &t->created) == 1)
        t->seen |= 32u;
    else if (strcmp(key, "last_used_ms") == 0)
        sscanf(val, "%" SCNd64, &t->used);
    else if (strcmp(key, "stopped_ms") == 0)
        sscanf(val, "%" SCNd64, &t->stopped);
    else if (strcmp(key, "idle_timeout_ms") == 0)
        sscanf(val, "%" SCNd64, &t->idle);
    else if (strcmp(key, "meta") == 0)
        parse_meta(val, t);
    else if (strcmp(key, "limits") == 0)
        sscanf(line,
               "limits %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64
               " %" SCNd64 " %" SCNd64,
               &l->memory_bytes, &l->pids, &l->cpu_millis, &l->command_timeout_ms,
               &l->max_output_bytes, &l->open_files, &l->disk_bytes, &l->disk_inodes);
}

/* Reads one entry: 0, or -1 when the file is not a whole entry for its name. */
static int read_rec(const char *path, const char *name, table_rec *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[LINE_MAX_TABLE];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        parse_line(line, t);
    }
    fclose(f);
    return t->seen == 63u && strcmp(t->id, name) == 0 && t->tenant[0] && t->project[0] ? 0 : -1;
}

/* A STOPPED box for the entry, indexed (caller holds no lock; the registry is not serving
 * yet); its file is rewritten when it was running (its stop time is now). Returns 0 or
 * -ENOMEM. */
static int restore(sbx_reg *r, table_rec *t, bool was_running)
{
    sbx_box *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->reg = r;
    b->refs = 1;
    b->uid_slot = -1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    snprintf(b->id, sizeof b->id, "%s", t->id);
    snprintf(b->tenant, sizeof b->tenant, "%s", t->tenant);
    snprintf(b->project, sizeof b->project, "%s", t->project);
    snprintf(b->template_name, sizeof b->template_name, "%s", t->tpl);
    b->limits = t->lim;
    b->state = SBX_BOX_STOPPED;
    b->torn = true;
    b->created_ms = t->created;
    b->last_used_ms = t->used ? t->used : t->created;
    b->stopped_ms = t->stopped;
    b->idle_timeout_ms = t->idle;
    if (t->n_meta) {
        b->meta_k = calloc(t->n_meta, sizeof *b->meta_k);
        b->meta_v = calloc(t->n_meta, sizeof *b->meta_v);
        if (!b->meta_k || !b->meta_v) {
            sbx_box_unref(b);
            return -ENOMEM;
        }
        memcpy(b->meta_k, t->meta_k, t->n_meta * sizeof *b->meta_k);
        memcpy(b->meta_v, t->meta_v, t->n_meta * sizeof *b->meta_v);
        b->n_meta = t->n_meta;
        t->n_meta = 0; /* the box's now */
    }
    b->home = sbx__reg_home_path(r, t->tenant, t->project);
    if (b->home && r->cfg.home_images && asprintf(&b->image, "%s.img", b->home) < 0)
        b->image = NULL;
    if (!b->home || (r->cfg.home_images && !b->image)) {
        sbx_box_unref(b);
        return -ENOMEM;
    }
    pthread_mutex_lock(&r->mu);
    sbx__reg_index_add(r, b);
    pthread_mutex_unlock(&r->mu);
    if (was_running)
        sbx__reg_table_save(r, b);
    sbx_box_unref(b); /* the index holds it */
    return 0;
}

/* One file of the table: restored (1), removed (0: expired or unreadable) or kept (-errno). */
static int load_one(sbx_reg *r, const char *name, int64_t now, size_t *was_running)
{
    char *path = table_path(r, name);
    if (!path)
        return -ENOMEM;
    table_rec t;
    memset(&t, 0, sizeof t);
    int rc = 0;
    if (name[0] == '.' || read_rec(path, name, &t) < 0) {
        SBX_LOG_INFO("registry", "removing an unreadable sandbox table entry path=%s", path);
    } else {
        bool running = !t.stopped; /* it was running when the executor died */
        if (running) {
            t.stopped = now;
            (*was_running)++;
        }
        if (now - t.stopped < r->cfg.stopped_retention_ms)
            rc = restore(r, &t, running) == 0 ? 1 : -ENOMEM;
    }
    rec_free(&t);
    if (rc == 0 && unlink(path) < 0 && errno != ENOENT)
        rc = -errno;
    free(path);
    return rc;
}

size_t sbx__reg_table_load(sbx_reg *r, size_t *was_running)
{
    char *dir = table_path(r, NULL);
    if (!dir)
        return 0;
    int rc = sbx__reg_mkdir_p(dir, 0700);
    DIR *d = rc == 0 ? opendir(dir) : NULL;
    if (!d) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, "registry", rc < 0 ? rc : -errno,
                      "cannot read the sandbox table dir=%s", dir);
        free(dir);
        return 0;
    }
    int64_t now = sbx_wall_ms();
    size_t restored = 0;
    *was_running = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (load_one(r, e->d_name, now, was_running) == 1)
            restored++;
    }
    closedir(d);
    free(dir);
    return restored;
}
