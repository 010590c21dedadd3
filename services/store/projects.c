/* projects.c: project metadata. A project record holds a sorted field map, a version bumped on
 * every update (expected-version CAS, 0 = must not exist), created/updated times and its
 * history retention. Reads merge in the execution statistics kept with the history counter
 * and the cache generation. DeleteProject removes the record and range-deletes the project's
 * scope in history, cache and meta in one atomic write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storedb_int.h"

/* ---- record encoding ---- */

void sdb__projrec_encode(sdb__buf *b, const sdb__projrec *r)
{
    sdb__buf_u8(b, SDB__VALUE_V1);
    sdb__buf_be64(b, r->version);
    sdb__buf_be64(b, (uint64_t)r->created_ms);
    sdb__buf_be64(b, (uint64_t)r->updated_ms);
    sdb__buf_be64(b, r->ret_max_records);
    sdb__buf_be64(b, (uint64_t)r->ret_max_age_s);
    sdb__buf_be32(b, (uint32_t)r->n_fields);
    for (size_t i = 0; i < r->n_fields; i++) {
        sdb__buf_be32(b, (uint32_t)r->fields[i].key.n);
        sdb__buf_raw(b, r->fields[i].key.p, r->fields[i].key.n);
        sdb__buf_be32(b, (uint32_t)r->fields[i].value.n);
        sdb__buf_raw(b, r->fields[i].value.p, r->fields[i].value.n);
    }
}

/* r->fields is malloc'd (free it) and points into v. */
bool sdb__projrec_decode(const char *v, size_t n, sdb__projrec *r)
{
    sdb__rd d = sdb__rd_init(v, n);
    memset(r, 0, sizeof *r);
    if (sdb__rd_u8(&d) != SDB__VALUE_V1)
        return false;
    r->version = sdb__rd_be64(&d);
    r->created_ms = (int64_t)sdb__rd_be64(&d);
    r->updated_ms = (int64_t)sdb__rd_be64(&d);
    r->ret_max_records = sdb__rd_be64(&d);
    r->ret_max_age_s = (int64_t)sdb__rd_be64(&d);
    uint32_t nf = sdb__rd_be32(&d);
    if (d.bad || nf > SDB_FIELDS_MAX)
        return false;
    r->fields = nf ? calloc(nf, sizeof *r->fields) : NULL;
    if (nf && !r->fields)
        return false;
    for (uint32_t i = 0; i < nf; i++) {
        uint32_t kn = sdb__rd_be32(&d);
        r->fields[i].key = sdb__rd_bytes(&d, kn);
        uint32_t vn = sdb__rd_be32(&d);
        r->fields[i].value = sdb__rd_bytes(&d, vn);
    }
    r->n_fields = nf;
    if (d.bad) {
        free(r->fields);
        r->fields = NULL;
        return false;
    }
    return true;
}

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

int sdb_proj_get(sdb *db, sdb_slice tenant, sdb_slice project, sdb_project **out, char *err,
                 size_t errlen)
{
    int rc;
    *out = NULL;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    char *raw = NULL;
    size_t rn = 0;
    extras x;
    rc = sdb__get(db, SDB__CF_PROJECTS, &k, &raw, &rn, err, errlen);
    sdb__buf_free(&k);
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

static int update_apply(sdb__txn *t, void *arg, char *err, size_t errlen)
{
    update_arg *x = arg;
    const sdb_proj_patch *u = x->u;
    sdb *db = sdb__txn_db(t);
    sdb__buf k, b;
    sdb__buf_init(&k);
    sdb__buf_init(&b);
    char *raw = NULL;
    size_t rn = 0;
    sdb__projrec cur = {0};
    mfield *mf = NULL;
    sdb_field *nf = NULL;
    bool exists = false;

    sdb__key_project(&k, x->tenant, u->project);
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &raw, &rn, err, errlen);
    if (rc == SBX_OK) {
        if (!sdb__projrec_decode(raw, rn, &cur)) {
            rc = sdb__err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
            goto out;
        }
        exists = true;
    } else if (rc != SBX_NOT_FOUND) {
        goto out;
    }
    if (u->has_expected_version) {
        uint64_t have = exists ? cur.version : 0;
        if (u->expected_version != have) {
            rc = sdb__err(err, errlen, SBX_FAILED_PRECONDITION,
                          "version mismatch: expected %llu, current %llu",
                          (unsigned long long)u->expected_version, (unsigned long long)have);
            goto out;
        }
    }

    /* merge: existing fields (prio 0), then set (prio 1+i, later wins), minus remove */
    size_t total = cur.n_fields + u->n_set, n = 0;
    mf = calloc(total ? total : 1, sizeof *mf);
    nf = calloc(total ? total : 1, sizeof *nf);
    if (!mf || !nf) {
        rc = sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cur.n_fields; i++)
        mf[n++] = (mfield){cur.fields[i].key, cur.fields[i].value, 0};
    for (size_t i = 0; i < u->n_set; i++)
        mf[n++] = (mfield){u->set[i].key, u->set[i].value, 1 + i};
    qsort(mf, n, sizeof *mf, mfield_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && slice_eq(nf[m - 1].key, mf[i].key))
            continue;
        bool removed = false;
        for (size_t j = 0; j < u->n_remove && !removed; j++)
            removed = slice_eq(u->remove[j], mf[i].key);
        if (removed) {
            /* keep it out, and skip its older duplicates */
            while (i + 1 < n && slice_eq(mf[i + 1].key, mf[i].key))
                i++;
            continue;
        }
        nf[m].key = mf[i].key;
        nf[m].value = mf[i].value;
        m++;
    }
    size_t total_bytes = 0;
    for (size_t i = 0; i < m; i++)
        total_bytes += nf[i].key.n + nf[i].value.n;
    if (m > SDB_FIELDS_MAX) {
        rc = sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                      "fields: %zu exceeds the limit of %d fields per project", m, SDB_FIELDS_MAX);
        goto out;
    }
    if (total_bytes > SDB_FIELDS_TOTAL_MAX) {
        rc = sdb__err(err, errlen, SBX_INVALID_ARGUMENT,
                      "fields: %zu bytes in total exceeds the limit of %u bytes", total_bytes,
                      SDB_FIELDS_TOTAL_MAX);
        goto out;
    }
    int64_t now = sdb__now(db);
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
    rc = SBX_OK;

    if (x->out) {
        char *copy = malloc(b.n);
        extras ex;
        if (!copy) {
            rc = sdb__err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        memcpy(copy, b.p, b.n);
        rc = read_extras(get_txn, t, x->tenant, u->project, &ex, err, errlen);
        if (rc) {
            free(copy);
            goto out;
        }
        rc = make_project(db, u->project, copy, b.n, &ex, x->out, err, errlen);
    }
out:
    free(cur.fields);
    free(raw);
    free(mf);
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

int sdb_proj_list(sdb *db, sdb_slice tenant, sdb_slice prefix, bool has_limit, int64_t limit,
                  sdb_slice page_token, sdb_proj_cb cb, void *arg, sdb_page *page, char *err,
                  size_t errlen)
{
    int rc;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_bytes("prefix", prefix, SDB_PROJECT_ID_MAX, true, err, errlen)) ||
        (rc = sdb__check_limit(has_limit, limit, SDB_LIST_DEFAULT, page, err, errlen)))
        return rc;
    char cur[SDB_TOKEN_MAX];
    size_t cn = 0;
    if (page_token.n && (rc = sdb__token_decode("page_token", SDB__TOK_PROJ, tenant, prefix,
                                                page_token, cur, &cn, err, errlen)))
        return rc;

    sdb__buf lo, hi, seek;
    sdb__buf_init(&lo);
    sdb__buf_init(&hi);
    sdb__buf_init(&seek);
    sdb__key_project(&lo, tenant, prefix);
    sdb__buf_copy(&hi, &lo);
    bool has_hi = sdb__buf_successor(&hi);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lo.p, lo.n);
    if (has_hi)
        rocksdb_readoptions_set_iterate_upper_bound(ro, hi.p, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[SDB__CF_PROJECTS]);
    if (cn)
        sdb__key_project(&seek, tenant, sdb_slice_n(cur, cn));
    else
        sdb__buf_copy(&seek, &lo);
    rocksdb_iter_seek(it, seek.p, seek.n);
    if (cn && rocksdb_iter_valid(it)) {
        size_t kn;
        const char *k = rocksdb_iter_key(it, &kn);
        if (kn == seek.n && memcmp(k, seek.p, kn) == 0)
            rocksdb_iter_next(it); /* the cursor is the last id returned */
    }
    int stop = 0;
    sdb_slice last = {NULL, 0};
    char *lastbuf = NULL;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        sdb_slice t, id;
        if (!sdb__key_split(k, kn, &t, &id))
            continue;
        if (page->count == page->applied_limit) {
            sdb__token_encode(SDB__TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
            break;
        }
        extras ex;
        sdb_project p;
        rc = read_extras(get_db, db, tenant, id, &ex, err, errlen);
        if (rc == SBX_OK) {
            rc = fill_project(db, &p, id, v, vn, &ex, err, errlen);
            if (rc)
                free(ex.craw);
        }
        if (rc) {
            stop = rc;
            break;
        }
        stop = cb ? cb(arg, &p) : 0;
        free(p.fields);
        free(ex.craw);
        if (stop == SDB_PAGE_FULL) {
            stop = 0;
            sdb__token_encode(SDB__TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
            break;
        }
        page->count++;
        if (stop)
            break;
        free(lastbuf);
        lastbuf = malloc(id.n ? id.n : 1);
        if (!lastbuf)
            abort();
        memcpy(lastbuf, id.p, id.n);
        last = sdb_slice_n(lastbuf, id.n);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    sdb__buf_free(&lo);
    sdb__buf_free(&hi);
    sdb__buf_free(&seek);
    free(lastbuf);
    if (stop) {
        free(rerr);
        return stop;
    }
    return rerr ? sdb__rocks_err("read", rerr, err, errlen) : SBX_OK;
}

/* ---- implicit creation, incarnation ---- */

int sdb__ensure_project(sdb__txn *t, sdb_slice tenant, sdb_slice project, int64_t now, char *err,
                        size_t errlen)
{
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    int rc = sdb__txn_get(t, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    free(v);
    if (rc == SBX_NOT_FOUND) {
        sdb__projrec r = {.version = 0, .created_ms = now};
        sdb__buf b;
        sdb__buf_init(&b);
        sdb__projrec_encode(&b, &r);
        sdb__txn_put(t, SDB__CF_PROJECTS, &k, b.p, b.n);
        sdb__buf_free(&b);
        rc = SBX_OK;
    }
    sdb__buf_free(&k);
    return rc;
}

int sdb_proj_incarnation(sdb *db, sdb_slice tenant, sdb_slice project, int64_t *created_ms,
                         char *err, size_t errlen)
{
    int rc;
    *created_ms = 0;
    if ((rc = sdb__check_tenant(tenant, err, errlen)) ||
        (rc = sdb__check_project(project, err, errlen)))
        return rc;
    sdb__buf k;
    sdb__buf_init(&k);
    sdb__key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb__get(db, SDB__CF_PROJECTS, &k, &v, &vn, err, errlen);
    sdb__buf_free(&k);
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
