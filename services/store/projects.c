/* projects.c: project metadata. A project record (codec.c) holds a sorted field map, a
 * version bumped on every update (expected-version CAS, 0 = must not exist), created/updated
 * times and its history retention. Reads merge in the execution statistics kept with the
 * history counter and the cache generation. An append or a cache put creates a missing project
 * (version 0) through sdb__project_ensure. DeleteProject removes the record and range-deletes
 * the project's scope in history, cache and meta in one atomic write. Calls commit.c, read.c,
 * codec.c and keys.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

/* ---- building sdb_project ---- */

typedef struct proj_priv {
    char *raw, *craw, *id;
} proj_priv;

void sdb_project_free(sdb_project *p)
{
    if (!p)
        return;
    proj_priv *pv = p->priv_;
    if (pv) {
        free(pv->raw);
        free(pv->craw);
        free(pv->id);
        free(pv);
    }
    free(p->fields);
    free(p);
}

typedef struct extras {
    char *craw; /* counter value, malloc'd, may be NULL */
    size_t cn;
    uint64_t gen, entries;
} extras;

/* Fills p from the record value and the extras (counter, cache generation and entries).
 * p->fields is malloc'd; everything else points into the given buffers. */
static int fill_project(sdb *db, sdb_project *p, sdb_slice id, const char *raw, size_t rn,
                        const extras *x, char *err, size_t errlen)
{
    sdb__projrec r;
    memset(p, 0, sizeof *p);
    if (!sdb__projrec_decode(raw, rn, &r))
        return sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
    p->id = id;
    p->version = r.version;
    p->created_ms = r.created_ms;
    p->updated_ms = r.updated_ms;
    p->n_fields = r.n_fields;
    p->fields = r.fields;
    p->retention_max_records = r.ret_max_records ? r.ret_max_records : db->o.history_max_records;
    p->retention_max_age_s = r.ret_max_age_s ? r.ret_max_age_s : db->o.history_max_age_s;
    p->cache_generation = x->gen;
    p->cache_entries = x->entries;
    if (x->craw) {
        sdb__counter c;
        if (!sdb__counter_decode(x->craw, x->cn, &c)) {
            free(p->fields);
            p->fields = NULL;
            return sdb__err(err, errlen, SBX_DATA_LOSS, "history counter of project is corrupted");
        }
        p->execution_count = c.exec_count;
        p->last_seq = c.last_seq;
        p->last_execution_ms = c.last_time_ms;
        p->last_exit_code = c.last_exit_code;
    }
    return SBX_OK;
}

/* Reads counter and generation of a project through get (txn or committed state). */
typedef int (*getter_fn)(void *g, int cf, const sdb__buf *k, char **v, size_t *vn, char *err,
                         size_t errlen);

static int get_db(void *g, int cf, const sdb__buf *k, char **v, size_t *vn, char *err,
                  size_t errlen)
{
    return sdb__get(g, cf, k, v, vn, err, errlen);
}

static int get_txn(void *g, int cf, const sdb__buf *k, char **v, size_t *vn, char *err,
                   size_t errlen)
{
    return sdb__txn_get(g, cf, k, v, vn, err, errlen);
}

static int read_extras(getter_fn get, void *g, sdb_slice tenant, sdb_slice project, extras *x,
                       char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    memset(x, 0, sizeof *x);
    sdb__key_meta(&k, tenant, project, 'c', sdb_slice_n("", 0));
    int rc = get(g, SDB__CF_META, &k, &x->craw, &x->cn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        rc = SBX_OK;
    for (int i = 0; i < 2 && rc == SBX_OK; i++) {
        char *v = NULL;
        size_t vn = 0;
        sdb__key_meta(&k, tenant, project, i == 0 ? 'g' : 'n', sdb_slice_n("", 0));
        rc = get(g, SDB__CF_META, &k, &v, &vn, err, errlen);
        if (rc == SBX_OK && vn == 8)
            *(i == 0 ? &x->gen : &x->entries) = sdb__be64(v);
        if (rc == SBX_NOT_FOUND || rc == SBX_OK)
            rc = SBX_OK;
        free(v);
    }
    if (rc) {
        free(x->craw);
        x->craw = NULL;
    }
    sdb__buf_free(&k);
    return rc;
}

/* Takes ownership of raw and x->craw. */
static int make_project(sdb *db, sdb_slice id, char *raw, size_t rn, const extras *x,
                        sdb_project **out, char *err, size_t errlen)
{
    sdb_project *p = calloc(1, sizeof *p);
    proj_priv *pv = calloc(1, sizeof *pv);
    char *idc = malloc(id.n + 1);
    if (!p || !pv || !idc) {
        free(p);
        free(pv);
        free(idc);
        free(raw);
        free(x->craw);
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    }
    memcpy(idc, id.p, id.n);
    idc[id.n] = '\0';
    int rc = fill_project(db, p, sdb_slice_n(idc, id.n), raw, rn, x, err, errlen);
    pv->raw = raw;
    pv->craw = x->craw;
    pv->id = idc;
    p->priv_ = pv;
    if (rc) {
        sdb_project_free(p);
        return rc;
    }
    *out = p;
    return SBX_OK;
}

static int not_found(sdb_slice project, char *err, size_t errlen)
{
    return sdb__err(err, errlen, SBX_NOT_FOUND, "project_id: '%.*s' not found",
                    (int)(project.n > 200 ? 200 : project.n), project.p);
}

/* The stored record of a valid (tenant, project): SBX_OK with *raw malloc'd, SBX_NOT_FOUND, or
 * an error. */
static int get_record(sdb *db, sdb_slice tenant, sdb_slice project, char **raw, size_t *rn,
                      char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    rc = sdb__get(db, SDB__CF_PROJECTS, &k, raw, rn, err, errlen);
    sdb__buf_free(&k);
    return rc;
}

int sdb_proj_get(sdb *db, sdb_slice tenant, sdb_slice project, sdb_project **out, char *err,
                 size_t errlen)
{
    char *raw = NULL;
    size_t rn = 0;
    extras x;
    *out = NULL;
    int rc = get_record(db, tenant, project, &raw, &rn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        return not_found(project, err, errlen);
    if (rc)
        return rc;
    rc = read_extras(get_db, db, tenant, project, &x, err, errlen);
    if (rc) {
        free(raw);
        return rc;
    }
    return make_project(db, project, raw, rn, &x, out, err, errlen);
}

/* ---- update ---- */

typedef struct {
    sdb_slice key, value;
    size_t prio;
} mfield;

static int mfield_cmp(const void *a, const void *b)
{
    const mfield *x = a, *y = b;
    size_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
    int c = n ? memcmp(x->key.p, y->key.p, n) : 0;
    if (c)
        return c;
    if (x->key.n != y->key.n)
        return x->key.n < y->key.n ? -1 : 1;
    return x->prio > y->prio ? -1 : x->prio < y->prio ? 1 : 0; /* newest first */
}

static bool slice_eq(sdb_slice a, sdb_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

typedef struct {
    sdb_slice tenant;
    const sdb_proj_patch *u;
    sdb_project **out;
} update_arg;

/* The stored record through the txn; *exists is false when there is none. */
static int load_record(sdb__txn *t, const sdb__buf *k, char **raw, sdb__projrec *cur, bool *exists,
                       char *err, size_t errlen)
{
    size_t rn = 0;
    *exists = false;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, k, raw, &rn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc)
        return rc;
    if (!sdb__projrec_decode(*raw, rn, cur))
        return sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
    *exists = true;
    return SBX_OK;
}

static int check_version(const sdb_proj_patch *u, uint64_t have, char *err, size_t errlen)
{
    if (u->has_expected_version && u->expected_version != have)
        return sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                        "version mismatch: expected %llu, current %llu",
                        (unsigned long long)u->expected_version, (unsigned long long)have);
    return SBX_OK;
}

static bool removed_by(const sdb_proj_patch *u, sdb_slice key)
{
    for (size_t j = 0; j < u->n_remove; j++)
        if (slice_eq(u->remove[j], key))
            return true;
    return false;
}

/* The fields after the patch, sorted by key: the existing ones (prio 0), then set (prio 1+i,
 * later wins), minus remove. *out (malloc'd, free it) points into cur and u. */
static int merge_fields(const sdb__projrec *cur, const sdb_proj_patch *u, sdb_field **out,
                        size_t *m_out, char *err, size_t errlen)
{
    size_t total = cur->n_fields + u->n_set, n = 0, m = 0;
    mfield *mf = calloc(total ? total : 1, sizeof *mf);
    sdb_field *nf = calloc(total ? total : 1, sizeof *nf);
    if (!mf || !nf) {
        free(mf);
        free(nf);
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < cur->n_fields; i++)
        mf[n++] = (mfield){cur->fields[i].key, cur->fields[i].value, 0};
    for (size_t i = 0; i < u->n_set; i++)
        mf[n++] = (mfield){u->set[i].key, u->set[i].value, 1 + i};
    qsort(mf, n, sizeof *mf, mfield_cmp);
    for (size_t i = 0; i < n; i++) {
        if (m && slice_eq(nf[m - 1].key, mf[i].key))
            continue; /* an older value of the field just taken */
        if (removed_by(u, mf[i].key)) {
            /* keep it out, and skip its older duplicates */
            while (i + 1 < n && slice_eq(mf[i + 1].key, mf[i].key))
                i++;
            continue;
        }
        nf[m].key = mf[i].key;
        nf[m].value = mf[i].value;
        m++;
    }
    free(mf);
    *out = nf;
    *m_out = m;
    return SBX_OK;
}

static int check_fields(const sdb_field *f, size_t m, char *err, size_t errlen)
{
    size_t total_bytes = 0;
    for (size_t i = 0; i < m; i++)
        total_bytes += f[i].key.n + f[i].value.n;
    if (m > SDB_FIELDS_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "fields: %zu exceeds the limit of %d fields per project", m,
                        SDB_FIELDS_MAX);
    if (total_bytes > SDB_FIELDS_TOTAL_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "fields: %zu bytes in total exceeds the limit of %u bytes", total_bytes,
                        SDB_FIELDS_TOTAL_MAX);
    return SBX_OK;
}

/* *out: the project as just written (value b), with its counter and cache figures read
 * through the txn. */
static int updated_project(sdb__txn *t, const update_arg *x, const sdb__buf *b, char *err,
                           size_t errlen)
{
    char *copy = malloc(b->n);
    extras ex;
    if (!copy)
        return sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(copy, b->p, b->n);
    int rc = read_extras(get_txn, t, x->tenant, x->u->project, &ex, err, errlen);
    if (rc) {
        free(copy);
        return rc;
    }
    return make_project(sdb__txn_db(t), x->u->project, copy, b->n, &ex, x->out, err, errlen);
}

static int update_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    update_arg *x = arg;
    const sdb_proj_patch *u = x->u;
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    char *raw = NULL;
    sdb__projrec cur = {0};
    sdb_field *nf = NULL;
    size_t m = 0;
    bool exists;

    sdb__key_project(&k, x->tenant, u->project);
    int rc = load_record(t, &k, &raw, &cur, &exists, err, errlen);
    if (rc == SBX_OK)
        rc = check_version(u, exists ? cur.version : 0, err, errlen);
    if (rc == SBX_OK)
        rc = merge_fields(&cur, u, &nf, &m, err, errlen);
    if (rc == SBX_OK)
        rc = check_fields(nf, m, err, errlen);
    if (rc == SBX_OK) {
        int64_t now = sdb__now(sdb__txn_db(t));
        sdb__projrec nr = {
            .version = (exists ? cur.version : 0) + 1,
            .created_ms = exists ? cur.created_ms : now,
            .updated_ms = now,
            .ret_max_records = u->has_retention ? u->retention_max_records : cur.ret_max_records,
            .ret_max_age_s = u->has_retention ? u->retention_max_age_s : cur.ret_max_age_s,
            .n_fields = m,
            .fields = nf,
        };
        sdb__projrec_encode(&b, &nr);
        sdb__txn_put(t, SDB__CF_PROJECTS, &k, b.p, b.n);
        if (x->out)
            rc = updated_project(t, x, &b, err, errlen);
    }
    free(cur.fields);
    free(raw);
    free(nf);
    sdb__buf_free(&k);
    sdb__buf_free(&b);
    return rc;
}

int sdb_proj_update(sdb *db, sdb_slice tenant, const sdb_proj_patch *u, sdb_project **out,
                    char *err, size_t errlen)
{
    int rc;
    if (out)
        *out = NULL;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(u->project, err, errlen)))
        return rc;
    if (u->n_set > SDB_FIELDS_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "set: %zu fields exceeds the limit of %d", u->n_set, SDB_FIELDS_MAX);
    if (u->n_remove > SDB_FIELDS_MAX)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "remove: %zu fields exceeds the limit of %d", u->n_remove, SDB_FIELDS_MAX);
    for (size_t i = 0; i < u->n_set; i++) {
        char f[64];
        snprintf(f, sizeof f, "set[%zu].key", i);
        if ((rc = sdb__check_bytes(f, u->set[i].key, SDB_FIELD_KEY_MAX, false, err, errlen)))
            return rc;
        snprintf(f, sizeof f, "set[%zu].value", i);
        if ((rc = sdb__check_bytes(f, u->set[i].value, SDB_FIELD_VALUE_MAX, true, err, errlen)))
            return rc;
        for (size_t j = 0; j < u->n_remove; j++)
            if (slice_eq(u->set[i].key, u->remove[j]))
                return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                                "remove[%zu]: field '%.*s' is also in set", j, (int)u->remove[j].n,
                                u->remove[j].p);
    }
    for (size_t i = 0; i < u->n_remove; i++) {
        char f[64];
        snprintf(f, sizeof f, "remove[%zu]", i);
        if ((rc = sdb__check_bytes(f, u->remove[i], SDB_FIELD_KEY_MAX, false, err, errlen)))
            return rc;
    }
    if (u->has_retention && u->retention_max_age_s < 0)
        return sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                        "retention_max_age_s: %lld must not be negative",
                        (long long)u->retention_max_age_s);
    update_arg x = {tenant, u, out};
    rc = sdb__commit(db, update_apply, &x, sdb__hash(tenant, u->project), false, err, errlen);
    if (rc && out && *out) {
        sdb_project_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- list ---- */

/* Hands one listed project to cb. Returns an error status (reading its counter or decoding it
 * failed) or SBX_OK with *cb_rc set to what cb returned. */
static int list_one(sdb *db, sdb_slice tenant, sdb_slice id, const char *v, size_t vn,
                    sdb_proj_cb cb, void *arg, int *cb_rc, char *err, size_t errlen)
{
    extras ex;
    sdb_project p;
    int rc = read_extras(get_db, db, tenant, id, &ex, err, errlen);
    if (rc == SBX_OK)
        rc = fill_project(db, &p, id, v, vn, &ex, err, errlen);
    if (rc) {
        free(ex.craw);
        return rc;
    }
    *cb_rc = cb ? cb(arg, &p) : 0;
    free(p.fields);
    free(ex.craw);
    return SBX_OK;
}

/* The page from the iterator's position on; returns what ends the listing early (an error or
 * the callback's stop value), else 0. */
static int list_page(sdb *db, sdb__iter *it, sdb_slice tenant, sdb_slice prefix, sdb_proj_cb cb,
                     void *arg, sdb_page *page, char *err, size_t errlen)
{
    sdb__buf last; /* the id last returned: the cursor of the next page */
    sdb__buf_init(&last);
    int stop = 0;
    for (; sdb__iter_valid(it); sdb__iter_next(it)) {
        size_t kn, vn;
        const char *k = sdb__iter_key(it, &kn);
        const char *v = sdb__iter_value(it, &vn);
        sdb_slice t, id;
        if (!sdb__key_split(k, kn, &t, &id))
            continue;
        if (page->count == page->applied_limit) {
            sdb__token_encode(SDB__TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
            break;
        }
        int rc = list_one(db, tenant, id, v, vn, cb, arg, &stop, err, errlen);
        if (rc) {
            stop = rc;
            break;
        }
        if (stop == SDB_PAGE_FULL) {
            stop = 0;
            sdb__token_encode(SDB__TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
            break;
        }
        page->count++;
        if (stop)
            break;
        sdb__buf_reset(&last);
        sdb__buf_raw(&last, id.p, id.n);
    }
    sdb__buf_free(&last);
    return stop;
}

int sdb_proj_list(sdb *db, sdb_slice tenant, sdb_slice prefix, bool has_limit, int64_t limit,
                  sdb_slice page_token, sdb_proj_cb cb, void *arg, sdb_page *page, char *err,
                  size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_bytes("prefix", prefix, SDB_PROJECT_ID_MAX, true, err, errlen)) ||
        (rc = sdb__check_limit(has_limit, limit, SDB_LIST_DEFAULT, page, err, errlen)))
        return rc;
    sdb__iter it;
    if ((rc = sdb__iter_open_page(db, &it, SDB__CF_PROJECTS, SDB__TOK_PROJ, "page_token", tenant,
                                  prefix, page_token, err, errlen)))
        return rc;
    int stop = list_page(db, &it, tenant, prefix, cb, arg, page, err, errlen);
    rc = sdb__iter_close(&it, stop ? NULL : err, stop ? 0 : errlen);
    return stop ? stop : rc;
}

/* ---- implicit creation, incarnation ---- */

int sdb__project_ensure(sdb__txn *t, sdb_slice tenant, sdb_slice project, int64_t now,
                        uint64_t *max_records, char *err, size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    if (max_records)
        *max_records = sdb__txn_db(t)->o.history_max_records;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    if (rc == SBX_OK && max_records) {
        sdb__projrec r;
        if (!sdb__projrec_decode(v, vn, &r))
            rc = sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
        else if (r.ret_max_records)
            *max_records = r.ret_max_records;
        free(r.fields);
    } else if (rc == SBX_NOT_FOUND) {
        sdb__projrec r = {.version = 0, .created_ms = now};
        sdb__buf b;
        sdb__buf_init(&b);
        sdb__projrec_encode(&b, &r);
        sdb__txn_put(t, SDB__CF_PROJECTS, &k, b.p, b.n);
        sdb__buf_free(&b);
        rc = SBX_OK;
    }
    free(v);
    sdb__buf_free(&k);
    return rc;
}

int sdb_proj_incarnation(sdb *db, sdb_slice tenant, sdb_slice project, int64_t *created_ms,
                         char *err, size_t errlen)
{
    char *v = NULL;
    size_t vn = 0;
    *created_ms = 0;
    int rc = get_record(db, tenant, project, &v, &vn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc)
        return rc;
    sdb__projrec r;
    bool ok = sdb__projrec_decode(v, vn, &r);
    free(v);
    if (!ok)
        return sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
    free(r.fields);
    /* never 0 for an existing project, even with a clock at the epoch */
    *created_ms = r.created_ms ? r.created_ms : 1;
    return SBX_OK;
}

/* ---- delete ---- */

typedef struct {
    sdb_slice tenant, project;
    bool *existed;
} delete_arg;

static int delete_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    delete_arg *x = arg;
    sdb__buf k, lo, hi;
    sdb__buf_init(&k);
    sdb__buf_init(&lo);
    sdb__buf_init(&hi);
    char *v = NULL;
    size_t vn = 0;
    sdb__key_project(&k, x->tenant, x->project);
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    bool existed = rc == SBX_OK;
    free(v);
    v = NULL;
    if (rc == SBX_NOT_FOUND) {
        sdb__key_meta(&lo, x->tenant, x->project, 'c', sdb_slice_n("", 0));
        rc = sdb__txn_get(t, SDB__CF_META, &lo, &v, &vn, err, errlen);
        existed = rc == SBX_OK;
        free(v);
    }
    if (rc != SBX_OK && rc != SBX_NOT_FOUND)
        goto out;
    rc = SBX_OK;
    *x->existed = existed;
    sdb__txn_del(t, SDB__CF_PROJECTS, &k);
    sdb__key_scope(&lo, x->tenant, x->project);
    sdb__buf_copy(&hi, &lo);
    sdb__buf_successor(&hi);
    sdb__txn_del_range(t, SDB__CF_HISTORY, &lo, &hi);
    sdb__txn_del_range(t, SDB__CF_CACHE, &lo, &hi);
    sdb__txn_del_range(t, SDB__CF_META, &lo, &hi);
    sdb__txn_notify(t, sdb__watch_stripe(x->tenant, x->project));
out:
    sdb__buf_free(&k);
    sdb__buf_free(&lo);
    sdb__buf_free(&hi);
    return rc;
}

int sdb_proj_delete(sdb *db, sdb_slice tenant, sdb_slice project, bool *existed, char *err,
                    size_t errlen)
{
    int rc;
    bool tmp;
    if (!existed)
        existed = &tmp;
    *existed = false;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    delete_arg x = {tenant, project, existed};
    rc = sdb__commit(db, delete_apply, &x, sdb__hash(tenant, project), true, err, errlen);
    if (rc)
        *existed = false;
    return rc;
}
