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

void sdb_projrec_encode(sdb_buf *b, const sdb_projrec *r)
{
    sdb_buf_u8(b, SDB_VALUE_V1);
    sdb_buf_be64(b, r->version);
    sdb_buf_be64(b, (uint64_t)r->created_ms);
    sdb_buf_be64(b, (uint64_t)r->updated_ms);
    sdb_buf_be64(b, r->ret_max_records);
    sdb_buf_be64(b, (uint64_t)r->ret_max_age_s);
    sdb_buf_be32(b, (uint32_t)r->n_fields);
    for (size_t i = 0; i < r->n_fields; i++) {
        sdb_buf_be32(b, (uint32_t)r->fields[i].key.n);
        sdb_buf_raw(b, r->fields[i].key.p, r->fields[i].key.n);
        sdb_buf_be32(b, (uint32_t)r->fields[i].value.n);
        sdb_buf_raw(b, r->fields[i].value.p, r->fields[i].value.n);
    }
}

/* r->fields is malloc'd (free it) and points into v. */
bool sdb_projrec_decode(const char *v, size_t n, sdb_projrec *r)
{
    sdb_rd d = sdb_rd_init(v, n);
    memset(r, 0, sizeof *r);
    if (sdb_rd_u8(&d) != SDB_VALUE_V1)
        return false;
    r->version = sdb_rd_be64(&d);
    r->created_ms = (int64_t)sdb_rd_be64(&d);
    r->updated_ms = (int64_t)sdb_rd_be64(&d);
    r->ret_max_records = sdb_rd_be64(&d);
    r->ret_max_age_s = (int64_t)sdb_rd_be64(&d);
    uint32_t nf = sdb_rd_be32(&d);
    if (d.bad || nf > SBX_FIELDS_MAX)
        return false;
    r->fields = nf ? calloc(nf, sizeof *r->fields) : NULL;
    if (nf && !r->fields)
        return false;
    for (uint32_t i = 0; i < nf; i++) {
        uint32_t kn = sdb_rd_be32(&d);
        r->fields[i].key = sdb_rd_bytes(&d, kn);
        uint32_t vn = sdb_rd_be32(&d);
        r->fields[i].value = sdb_rd_bytes(&d, vn);
    }
    r->n_fields = nf;
    if (d.bad) {
        free(r->fields);
        r->fields = NULL;
        return false;
    }
    return true;
}

/* ---- building sbx_project ---- */

typedef struct proj_priv {
    char *raw, *craw, *id;
} proj_priv;

void sbx_project_free(sbx_project *p)
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
static int fill_project(sbx_storedb *db, sbx_project *p, sbx_slice id, const char *raw, size_t rn,
                        const extras *x, char *err, size_t errlen)
{
    sdb_projrec r;
    memset(p, 0, sizeof *p);
    if (!sdb_projrec_decode(raw, rn, &r))
        return sdb_err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
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
        sdb_counter c;
        if (!sdb_counter_decode(x->craw, x->cn, &c)) {
            free(p->fields);
            p->fields = NULL;
            return sdb_err(err, errlen, SBX_DATA_LOSS, "history counter of project is corrupted");
        }
        p->execution_count = c.exec_count;
        p->last_seq = c.last_seq;
        p->last_execution_ms = c.last_time_ms;
        p->last_exit_code = c.last_exit_code;
    }
    return SBX_OK;
}

/* Reads counter and generation of a project through get (txn or committed state). */
typedef int (*getter_fn)(void *g, int cf, const sdb_buf *k, char **v, size_t *vn, char *err,
                         size_t errlen);

static int get_db(void *g, int cf, const sdb_buf *k, char **v, size_t *vn, char *err, size_t errlen)
{
    return sdb_get(g, cf, k, v, vn, err, errlen);
}

static int get_txn(void *g, int cf, const sdb_buf *k, char **v, size_t *vn, char *err,
                   size_t errlen)
{
    return sdb_txn_get(g, cf, k, v, vn, err, errlen);
}

static int read_extras(getter_fn get, void *g, sbx_slice tenant, sbx_slice project, extras *x,
                       char *err, size_t errlen)
{
    sdb_buf k;
    sdb_buf_init(&k);
    memset(x, 0, sizeof *x);
    sdb_key_meta(&k, tenant, project, 'c', sbx_slice_n("", 0));
    int rc = get(g, SDB_CF_META, &k, &x->craw, &x->cn, err, errlen);
    if (rc == SBX_NOT_FOUND)
        rc = SBX_OK;
    for (int i = 0; i < 2 && rc == SBX_OK; i++) {
        char *v = NULL;
        size_t vn = 0;
        sdb_key_meta(&k, tenant, project, i == 0 ? 'g' : 'n', sbx_slice_n("", 0));
        rc = get(g, SDB_CF_META, &k, &v, &vn, err, errlen);
        if (rc == SBX_OK && vn == 8)
            *(i == 0 ? &x->gen : &x->entries) = sdb_be64(v);
        if (rc == SBX_NOT_FOUND || rc == SBX_OK)
            rc = SBX_OK;
        free(v);
    }
    if (rc) {
        free(x->craw);
        x->craw = NULL;
    }
    sdb_buf_free(&k);
    return rc;
}

/* Takes ownership of raw and x->craw. */
static int make_project(sbx_storedb *db, sbx_slice id, char *raw, size_t rn, const extras *x,
                        sbx_project **out, char *err, size_t errlen)
{
    sbx_project *p = calloc(1, sizeof *p);
    proj_priv *pv = calloc(1, sizeof *pv);
    char *idc = malloc(id.n + 1);
    if (!p || !pv || !idc) {
        free(p);
        free(pv);
        free(idc);
        free(raw);
        free(x->craw);
        return sdb_err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
    }
    memcpy(idc, id.p, id.n);
    idc[id.n] = '\0';
    int rc = fill_project(db, p, sbx_slice_n(idc, id.n), raw, rn, x, err, errlen);
    pv->raw = raw;
    pv->craw = x->craw;
    pv->id = idc;
    p->priv_ = pv;
    if (rc) {
        sbx_project_free(p);
        return rc;
    }
    *out = p;
    return SBX_OK;
}

static int not_found(sbx_slice project, char *err, size_t errlen)
{
    return sdb_err(err, errlen, SBX_NOT_FOUND, "project_id: '%.*s' not found",
                   (int)(project.n > 200 ? 200 : project.n), project.p);
}

int sbx_proj_get(sbx_storedb *db, sbx_slice tenant, sbx_slice project, sbx_project **out, char *err,
                 size_t errlen)
{
    int rc;
    *out = NULL;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_project(project, err, errlen)))
        return rc;
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_project(&k, tenant, project);
    char *raw = NULL;
    size_t rn = 0;
    extras x;
    rc = sdb_get(db, SDB_CF_PROJECTS, &k, &raw, &rn, err, errlen);
    sdb_buf_free(&k);
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
    sbx_slice key, value;
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

static bool slice_eq(sbx_slice a, sbx_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

typedef struct {
    sbx_slice tenant;
    const sbx_proj_patch *u;
    sbx_project **out;
} update_arg;

static int update_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    update_arg *x = arg;
    const sbx_proj_patch *u = x->u;
    sbx_storedb *db = sdb_txn_db(t);
    sdb_buf k, b;
    sdb_buf_init(&k);
    sdb_buf_init(&b);
    char *raw = NULL;
    size_t rn = 0;
    sdb_projrec cur = {0};
    mfield *mf = NULL;
    sbx_field *nf = NULL;
    bool exists = false;

    sdb_key_project(&k, x->tenant, u->project);
    int rc = sdb_txn_get(t, SDB_CF_PROJECTS, &k, &raw, &rn, err, errlen);
    if (rc == SBX_OK) {
        if (!sdb_projrec_decode(raw, rn, &cur)) {
            rc = sdb_err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
            goto out;
        }
        exists = true;
    } else if (rc != SBX_NOT_FOUND) {
        goto out;
    }
    if (u->has_expected_version) {
        uint64_t have = exists ? cur.version : 0;
        if (u->expected_version != have) {
            rc = sdb_err(err, errlen, SBX_FAILED_PRECONDITION,
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
        rc = sdb_err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
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
    if (m > SBX_FIELDS_MAX) {
        rc = sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                     "fields: %zu exceeds the limit of %d fields per project", m, SBX_FIELDS_MAX);
        goto out;
    }
    if (total_bytes > SBX_FIELDS_TOTAL_MAX) {
        rc = sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                     "fields: %zu bytes in total exceeds the limit of %u bytes", total_bytes,
                     SBX_FIELDS_TOTAL_MAX);
        goto out;
    }
    int64_t now = sdb_now(db);
    sdb_projrec nr = {
        .version = (exists ? cur.version : 0) + 1,
        .created_ms = exists ? cur.created_ms : now,
        .updated_ms = now,
        .ret_max_records = u->has_retention ? u->retention_max_records : cur.ret_max_records,
        .ret_max_age_s = u->has_retention ? u->retention_max_age_s : cur.ret_max_age_s,
        .n_fields = m,
        .fields = nf,
    };
    sdb_projrec_encode(&b, &nr);
    sdb_txn_put(t, SDB_CF_PROJECTS, &k, b.p, b.n);
    rc = SBX_OK;

    if (x->out) {
        char *copy = malloc(b.n);
        extras ex;
        if (!copy) {
            rc = sdb_err(err, errlen, SBX_RESOURCE_EXHAUSTED, "out of memory");
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
    sdb_buf_free(&k);
    sdb_buf_free(&b);
    return rc;
}

int sbx_proj_update(sbx_storedb *db, sbx_slice tenant, const sbx_proj_patch *u, sbx_project **out,
                    char *err, size_t errlen)
{
    int rc;
    if (out)
        *out = NULL;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_project(u->project, err, errlen)))
        return rc;
    if (u->n_set > SBX_FIELDS_MAX)
        return sdb_err(err, errlen, SBX_INVALID_ARGUMENT, "set: %zu fields exceeds the limit of %d",
                       u->n_set, SBX_FIELDS_MAX);
    if (u->n_remove > SBX_FIELDS_MAX)
        return sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                       "remove: %zu fields exceeds the limit of %d", u->n_remove, SBX_FIELDS_MAX);
    for (size_t i = 0; i < u->n_set; i++) {
        char f[64];
        snprintf(f, sizeof f, "set[%zu].key", i);
        if ((rc = sdb_check_bytes(f, u->set[i].key, SBX_FIELD_KEY_MAX, false, err, errlen)))
            return rc;
        snprintf(f, sizeof f, "set[%zu].value", i);
        if ((rc = sdb_check_bytes(f, u->set[i].value, SBX_FIELD_VALUE_MAX, true, err, errlen)))
            return rc;
        for (size_t j = 0; j < u->n_remove; j++)
            if (slice_eq(u->set[i].key, u->remove[j]))
                return sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                               "remove[%zu]: field '%.*s' is also in set", j, (int)u->remove[j].n,
                               u->remove[j].p);
    }
    for (size_t i = 0; i < u->n_remove; i++) {
        char f[64];
        snprintf(f, sizeof f, "remove[%zu]", i);
        if ((rc = sdb_check_bytes(f, u->remove[i], SBX_FIELD_KEY_MAX, false, err, errlen)))
            return rc;
    }
    if (u->has_retention && u->retention_max_age_s < 0)
        return sdb_err(err, errlen, SBX_INVALID_ARGUMENT,
                       "retention_max_age_s: %lld must not be negative",
                       (long long)u->retention_max_age_s);
    update_arg x = {tenant, u, out};
    rc = sdb_commit(db, update_apply, &x, sdb_hash(tenant, u->project), false, err, errlen);
    if (rc && out && *out) {
        sbx_project_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- list ---- */

int sbx_proj_list(sbx_storedb *db, sbx_slice tenant, sbx_slice prefix, bool has_limit,
                  int64_t limit, sbx_slice page_token, sbx_proj_cb cb, void *arg, sbx_page *page,
                  char *err, size_t errlen)
{
    int rc;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_bytes("prefix", prefix, SBX_PROJECT_ID_MAX, true, err, errlen)) ||
        (rc = sdb_check_limit(has_limit, limit, SBX_LIST_DEFAULT, page, err, errlen)))
        return rc;
    char cur[SBX_TOKEN_MAX];
    size_t cn = 0;
    if (page_token.n && (rc = sdb_token_decode("page_token", SDB_TOK_PROJ, tenant, prefix,
                                               page_token, cur, &cn, err, errlen)))
        return rc;

    sdb_buf lo, hi, seek;
    sdb_buf_init(&lo);
    sdb_buf_init(&hi);
    sdb_buf_init(&seek);
    sdb_key_project(&lo, tenant, prefix);
    sdb_buf_copy(&hi, &lo);
    bool has_hi = sdb_buf_successor(&hi);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lo.p, lo.n);
    if (has_hi)
        rocksdb_readoptions_set_iterate_upper_bound(ro, hi.p, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->rdb, ro, db->cf[SDB_CF_PROJECTS]);
    if (cn)
        sdb_key_project(&seek, tenant, sbx_slice_n(cur, cn));
    else
        sdb_buf_copy(&seek, &lo);
    rocksdb_iter_seek(it, seek.p, seek.n);
    if (cn && rocksdb_iter_valid(it)) {
        size_t kn;
        const char *k = rocksdb_iter_key(it, &kn);
        if (kn == seek.n && memcmp(k, seek.p, kn) == 0)
            rocksdb_iter_next(it); /* the cursor is the last id returned */
    }
    int stop = 0;
    sbx_slice last = {NULL, 0};
    char *lastbuf = NULL;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        sbx_slice t, id;
        if (!sdb_key_split(k, kn, &t, &id))
            continue;
        if (page->count == page->applied_limit) {
            sdb_token_encode(SDB_TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
            break;
        }
        extras ex;
        sbx_project p;
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
        if (stop == SBX_PAGE_FULL) {
            stop = 0;
            sdb_token_encode(SDB_TOK_PROJ, tenant, prefix, last.p, last.n, page->next_token);
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
        last = sbx_slice_n(lastbuf, id.n);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    sdb_buf_free(&lo);
    sdb_buf_free(&hi);
    sdb_buf_free(&seek);
    free(lastbuf);
    if (stop) {
        free(rerr);
        return stop;
    }
    return rerr ? sdb_rocks_err("read", rerr, err, errlen) : SBX_OK;
}

/* ---- implicit creation, incarnation ---- */

int sdb_ensure_project(sdb_txn *t, sbx_slice tenant, sbx_slice project, int64_t now, char *err,
                       size_t errlen)
{
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    int rc = sdb_txn_get(t, SDB_CF_PROJECTS, &k, &v, &vn, err, errlen);
    free(v);
    if (rc == SBX_NOT_FOUND) {
        sdb_projrec r = {.version = 0, .created_ms = now};
        sdb_buf b;
        sdb_buf_init(&b);
        sdb_projrec_encode(&b, &r);
        sdb_txn_put(t, SDB_CF_PROJECTS, &k, b.p, b.n);
        sdb_buf_free(&b);
        rc = SBX_OK;
    }
    sdb_buf_free(&k);
    return rc;
}

int sbx_proj_incarnation(sbx_storedb *db, sbx_slice tenant, sbx_slice project, int64_t *created_ms,
                         char *err, size_t errlen)
{
    int rc;
    *created_ms = 0;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_project(project, err, errlen)))
        return rc;
    sdb_buf k;
    sdb_buf_init(&k);
    sdb_key_project(&k, tenant, project);
    char *v = NULL;
    size_t vn = 0;
    rc = sdb_get(db, SDB_CF_PROJECTS, &k, &v, &vn, err, errlen);
    sdb_buf_free(&k);
    if (rc == SBX_NOT_FOUND)
        return SBX_OK;
    if (rc)
        return rc;
    sdb_projrec r;
    bool ok = sdb_projrec_decode(v, vn, &r);
    free(v);
    if (!ok)
        return sdb_err(err, errlen, SBX_DATA_LOSS, "project record is corrupted");
    free(r.fields);
    /* never 0 for an existing project, even with a clock at the epoch */
    *created_ms = r.created_ms ? r.created_ms : 1;
    return SBX_OK;
}

/* ---- delete ---- */

typedef struct {
    sbx_slice tenant, project;
    bool *existed;
} delete_arg;

static int delete_apply(sdb_txn *t, void *arg, char *err, size_t errlen)
{
    delete_arg *x = arg;
    sdb_buf k, lo, hi;
    sdb_buf_init(&k);
    sdb_buf_init(&lo);
    sdb_buf_init(&hi);
    char *v = NULL;
    size_t vn = 0;
    sdb_key_project(&k, x->tenant, x->project);
    int rc = sdb_txn_get(t, SDB_CF_PROJECTS, &k, &v, &vn, err, errlen);
    bool existed = rc == SBX_OK;
    free(v);
    v = NULL;
    if (rc == SBX_NOT_FOUND) {
        sdb_key_meta(&lo, x->tenant, x->project, 'c', sbx_slice_n("", 0));
        rc = sdb_txn_get(t, SDB_CF_META, &lo, &v, &vn, err, errlen);
        existed = rc == SBX_OK;
        free(v);
    }
    if (rc != SBX_OK && rc != SBX_NOT_FOUND)
        goto out;
    rc = SBX_OK;
    *x->existed = existed;
    sdb_txn_del(t, SDB_CF_PROJECTS, &k);
    sdb_key_scope(&lo, x->tenant, x->project);
    sdb_buf_copy(&hi, &lo);
    sdb_buf_successor(&hi);
    sdb_txn_del_range(t, SDB_CF_HISTORY, &lo, &hi);
    sdb_txn_del_range(t, SDB_CF_CACHE, &lo, &hi);
    sdb_txn_del_range(t, SDB_CF_META, &lo, &hi);
    sdb_txn_notify(t, sdb_watch_stripe(x->tenant, x->project));
out:
    sdb_buf_free(&k);
    sdb_buf_free(&lo);
    sdb_buf_free(&hi);
    return rc;
}

int sbx_proj_delete(sbx_storedb *db, sbx_slice tenant, sbx_slice project, bool *existed, char *err,
                    size_t errlen)
{
    int rc;
    bool tmp;
    if (!existed)
        existed = &tmp;
    *existed = false;
    if ((rc = sdb_check_tenant(tenant, err, errlen)) ||
        (rc = sdb_check_project(project, err, errlen)))
        return rc;
    delete_arg x = {tenant, project, existed};
    rc = sdb_commit(db, delete_apply, &x, sdb_hash(tenant, project), true, err, errlen);
    if (rc)
        *existed = false;
    return rc;
}
