/* stores.c: one client + outbox per sbx-store, routing by project, leftover outboxes drained
 * (see stores.h). */
#include "stores.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "status.h"
#include "store_client.h"

#define LEFTOVERS_MAX 32
#define RECORD_DEADLINE_MS 10000
/* A store that is down is retried at least every 2 s (plus jitter): one cheap failed connect
 * per store, and a restarted store gets its backlog within about 2 s instead of up to 12. */
#define RETRY_MAX_MS 2000

typedef struct store {
    char *addr;
    char *label; /* "store=ADDR" for log lines */
    char *dir;   /* its outbox directory */
    sbx_storecli *cli;
    sbx_outbox *ob;
} store;

typedef struct leftover {
    char *dir;
    sbx_outbox *ob;
} leftover;

struct sbx_stores {
    store *v;
    size_t n;
    const char **addrs; /* v[i].addr, for sbx_route_pick */
    leftover left[LEFTOVERS_MAX];
    size_t nleft;
};

static int deliver(void *arg, const char *tenant, const uint8_t *req, size_t len, char *err,
                   size_t errlen)
{
    store *st = arg;
    return sbx_storecli_record(st->cli, tenant, req, len, RECORD_DEADLINE_MS, err, errlen);
}

/* A leftover's record goes to the current owner of its project. */
static int deliver_rerouted(void *arg, const char *tenant, const uint8_t *req, size_t len,
                            char *err, size_t errlen)
{
    sbx_stores *s = arg;
    Sbx__V1__RecordExecutionRequest *r = sbx__v1__record_execution_request__unpack(NULL, len, req);
    if (!r) {
        snprintf(err, errlen, "a queued record does not decode");
        return SBX_INVALID_ARGUMENT; /* permanent: the outbox moves it to dead.log */
    }
    store *st = &s->v[sbx_route_pick(s->addrs, s->n, r->project_id)];
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return sbx_storecli_record(st->cli, tenant, req, len, RECORD_DEADLINE_MS, err, errlen);
}

/* "<root>/store-<addr with [^A-Za-z0-9.-] as _>-<fnv32 of addr>" */
static char *store_dir(const char *root, const char *addr)
{
    char safe[128];
    size_t k = 0;
    for (const char *p = addr; *p && k < sizeof safe - 1; p++)
        safe[k++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                   (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'
                               ? *p
                               : '_');
    safe[k] = 0;
    char *d = NULL;
    if (asprintf(&d, "%s/store-%s-%08x", root, safe, (unsigned)sbx_route_score(addr, "dir")) < 0)
        return NULL;
    return d;
}

static int open_store(sbx_stores *s, size_t i, const sbx_stores_cfg *cfg, char *err, size_t errlen)
{
    store *st = &s->v[i];
    if (!(st->addr = strdup(cfg->addrs->v[i])) || asprintf(&st->label, "store=%s", st->addr) < 0 ||
        !(st->dir = store_dir(cfg->outbox_root, st->addr)) ||
        !(st->cli = sbx_storecli_new(st->addr, cfg->api_key)))
        return -ENOMEM;
    const char *dir = st->dir;
    s->addrs[i] = st->addr;
    sbx_outbox_cfg oc = {.dir = dir,
                         .label = st->label,
                         .sync = cfg->sync,
                         .deliver = cfg->deliver ? cfg->deliver : deliver,
                         .deliver_arg = cfg->deliver ? cfg->deliver_arg : st,
                         .retry_initial_ms = cfg->retry_initial_ms,
                         .retry_max_ms = RETRY_MAX_MS};
    int rc = sbx_outbox_open(&oc, &st->ob);
    if (rc < 0)
        snprintf(err, errlen, "cannot open the outbox in %s: %s", dir, strerror(-rc));
    else
        sbx_storecli_set_outbox(st->cli, st->ob); /* cache lookups read our own records */
    return rc;
}

/* Whether root/name is the outbox of a listed store. */
static bool is_current(const sbx_stores *s, const char *root, const char *name)
{
    size_t rl = strlen(root);
    for (size_t i = 0; i < s->n; i++)
        if (!strncmp(s->v[i].dir, root, rl) && s->v[i].dir[rl] == '/' &&
            !strcmp(s->v[i].dir + rl + 1, name))
            return true;
    return false;
}

static int open_leftover(sbx_stores *s, const char *dir, char *err, size_t errlen)
{
    if (s->nleft == LEFTOVERS_MAX) {
        SBX_LOG_WARN("outbox", "too many leftover outboxes; later ones wait dir=%s", dir);
        return 0;
    }
    leftover *l = &s->left[s->nleft];
    if (!(l->dir = strdup(dir)))
        return -ENOMEM;
    sbx_outbox_cfg oc = {.dir = dir,
                         .label = "store=(rerouted)",
                         .sync = true,
                         .deliver = deliver_rerouted,
                         .deliver_arg = s};
    int rc = sbx_outbox_open(&oc, &l->ob);
    if (rc < 0) {
        snprintf(err, errlen, "cannot open the leftover outbox in %s: %s", dir, strerror(-rc));
        free(l->dir);
        return rc;
    }
    s->nleft++;
    return 0;
}

/* The outbox of earlier versions (<root>/queue.log) and store-* dirs of stores not listed. */
static int open_leftovers(sbx_stores *s, const char *root, char *err, size_t errlen)
{
    char *legacy = NULL;
    if (asprintf(&legacy, "%s/queue.log", root) < 0)
        return -ENOMEM;
    int rc = access(legacy, F_OK) == 0 ? open_leftover(s, root, err, errlen) : 0;
    free(legacy);
    DIR *d = rc == 0 ? opendir(root) : NULL;
    if (!d)
        return rc < 0 || errno == ENOENT ? rc : -errno;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)))
        if (!strncmp(de->d_name, "store-", 6) && de->d_type == DT_DIR &&
            !is_current(s, root, de->d_name)) {
            char *dir = NULL;
            if (asprintf(&dir, "%s/%s", root, de->d_name) < 0)
                rc = -ENOMEM;
            else
                rc = open_leftover(s, dir, err, errlen);
            free(dir);
        }
    closedir(d);
    return rc;
}

int sbx_stores_open(const sbx_stores_cfg *cfg, sbx_stores **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->addrs || cfg->addrs->n == 0)
        return -EINVAL;
    sbx_stores *s = calloc(1, sizeof *s);
    if (!s || !(s->v = calloc(cfg->addrs->n, sizeof *s->v)) ||
        !(s->addrs = calloc(cfg->addrs->n, sizeof *s->addrs))) {
        sbx_stores_close(s, 0);
        return -ENOMEM;
    }
    s->n = cfg->addrs->n;
    int rc = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++)
        rc = open_store(s, i, cfg, err, errlen);
    if (rc == 0)
        rc = open_leftovers(s, cfg->outbox_root, err, errlen);
    if (rc < 0) {
        sbx_stores_close(s, 0);
        return rc;
    }
    *out = s;
    return 0;
}

/* Closes a drained leftover and removes its files (a non-empty dead.log stays). */
static void close_leftover(leftover *l)
{
    sbx_outbox_stats st;
    sbx_outbox_get_stats(l->ob, &st);
    sbx_outbox_close(l->ob);
    if (st.pending == 0) {
        const char *files[] = {"queue.log", "queue.ack"};
        for (size_t i = 0; i < 2; i++) {
            char *p = NULL;
            if (asprintf(&p, "%s/%s", l->dir, files[i]) >= 0)
                unlink(p);
            free(p);
        }
        char *dead = NULL;
        struct stat sb;
        if (asprintf(&dead, "%s/dead.log", l->dir) >= 0 && stat(dead, &sb) == 0 && sb.st_size == 0)
            unlink(dead);
        free(dead);
        if (strstr(l->dir, "/store-"))
            rmdir(l->dir);
        SBX_LOG_INFO("outbox", "leftover outbox drained and removed dir=%s", l->dir);
    }
    free(l->dir);
}

void sbx_stores_close(sbx_stores *s, int flush_ms)
{
    if (!s)
        return;
    uint64_t t0 = sbx_mono_ms();
    for (size_t i = 0; i < s->n; i++) {
        store *st = &s->v[i];
        if (st->ob) {
            int64_t left = flush_ms - (int64_t)(sbx_mono_ms() - t0);
            sbx_outbox_flush(st->ob, left > 0 ? (int)left : 0);
            sbx_outbox_stats os;
            sbx_outbox_get_stats(st->ob, &os);
            if (os.pending)
                SBX_LOG_WARN("executor",
                             "history records not yet delivered to the store; kept in the "
                             "outbox for the next start %s pending=%llu",
                             st->label, (unsigned long long)os.pending);
            sbx_outbox_close(st->ob);
        }
    }
    for (size_t i = 0; i < s->nleft; i++)
        close_leftover(&s->left[i]);
    for (size_t i = 0; i < s->n; i++) {
        sbx_storecli_free(s->v[i].cli);
        free(s->v[i].addr);
        free(s->v[i].label);
        free(s->v[i].dir);
    }
    free(s->v);
    free(s->addrs);
    free(s);
}

static store *owner(const sbx_stores *s, const char *project)
{
    return &s->v[sbx_route_pick(s->addrs, s->n, project)];
}

int sbx_stores_append(sbx_stores *s, const char *tenant, const char *project, const uint8_t *req,
                      size_t len)
{
    return sbx_outbox_append(owner(s, project)->ob, tenant, req, len);
}

int sbx_stores_cache_get(sbx_stores *s, const char *tenant, const char *project,
                         const char *command_key, int64_t deadline_ms,
                         Sbx__V1__GetCachedResultResponse **out, char *err, size_t errlen)
{
    return sbx_storecli_cache_get(owner(s, project)->cli, tenant, project, command_key, deadline_ms,
                                  out, err, errlen);
}

size_t sbx_stores_count(const sbx_stores *s)
{
    return s->n;
}

const char *sbx_stores_addr(const sbx_stores *s, size_t i)
{
    return i < s->n ? s->v[i].addr : NULL;
}

const char *sbx_stores_route(const sbx_stores *s, const char *project)
{
    return owner(s, project)->addr;
}

void sbx_stores_stats(sbx_stores *s, size_t i, sbx_outbox_stats *st)
{
    sbx_outbox_get_stats(s->v[i].ob, st);
}

void sbx_stores_metrics_write(FILE *out, sbx_stores *s)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"sbx_outbox_pending_records", "gauge", "history records queued for the store"},
        {"sbx_outbox_oldest_record_seconds", "gauge",
         "age of the oldest queued record (0 = none; 1 s resolution)"},
        {"sbx_outbox_failing_seconds", "gauge",
         "how long deliveries to the store have been failing (0 = the last one worked)"},
        {"sbx_outbox_delivered_total", "counter", "records the store took since start"},
        {"sbx_outbox_dead_total", "counter", "records the store refused for good (dead.log)"},
        {"sbx_outbox_retries_total", "counter", "failed delivery attempts since start"},
    };
    sbx_outbox_stats *st = calloc(s->n, sizeof *st);
    if (!st)
        return;
    for (size_t i = 0; i < s->n; i++)
        sbx_outbox_get_stats(s->v[i].ob, &st[i]);
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (size_t i = 0; i < s->n; i++) {
            if (k == 1 || k == 2)
                fprintf(out, "%s{store=\"%s\"} %.3f\n", m[k].name, s->v[i].addr,
                        (k == 1 ? st[i].oldest_ms : st[i].failing_ms) / 1000.0);
            else
                fprintf(out, "%s{store=\"%s\"} %llu\n", m[k].name, s->v[i].addr,
                        (unsigned long long)(k == 0   ? st[i].pending
                                             : k == 3 ? st[i].delivered
                                             : k == 4 ? st[i].dead
                                                      : st[i].retries));
        }
    }
    free(st);
}
