/* handlers_projects.c: the Projects RPCs of sbx.v1.StateStore (GetProject, UpdateProject,
 * ListProjects, DeleteProject) on the engine's sdb_proj_*: requests to patches, engine projects
 * to Project messages built in the call arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers_int.h"

static Sbx__V1__Project *to_project(sbx_ctx *ctx, const sdb_project *p)
{
    Sbx__V1__Project *r = (void *)sbx_ctx_new_msg(ctx, &sbx__v1__project__descriptor);
    r->project_id = sh_arena_str(ctx, p->id);
    r->n_fields = p->n_fields;
    r->fields = sbx_ctx_alloc(ctx, (p->n_fields ? p->n_fields : 1) * sizeof *r->fields);
    for (size_t i = 0; i < p->n_fields; i++) {
        Sbx__V1__Project__FieldsEntry *f =
            (void *)sbx_ctx_new_msg(ctx, &sbx__v1__project__fields_entry__descriptor);
        f->key = sh_arena_str(ctx, p->fields[i].key);
        f->value = sh_arena_str(ctx, p->fields[i].value);
        r->fields[i] = f;
    }
    r->version = p->version;
    r->created_at_unix_ms = p->created_ms;
    r->updated_at_unix_ms = p->updated_ms;
    r->execution_count = p->execution_count;
    r->last_execution_seq = p->last_seq;
    r->last_execution_at_unix_ms = p->last_execution_ms;
    r->last_exit_code = p->last_exit_code;
    Sbx__V1__RetentionPolicy *ret =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__retention_policy__descriptor);
    ret->max_records = p->retention_max_records;
    ret->max_age_s = p->retention_max_age_s;
    r->retention = ret;
    return r;
}

int sh_get_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__GetProjectRequest *q = (const void *)req;
    sdb_project *p = NULL;
    char err[SH_ERRLEN] = "";
    int rc = sdb_proj_get(db, sh_tenant(ctx), sh_str(q->project_id), &p, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    *resp = &to_project(ctx, p)->base;
    sdb_project_free(p);
    return SBX_OK;
}

int sh_update_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      void *data)
{
    sdb *db = data;
    const Sbx__V1__UpdateProjectRequest *q = (const void *)req;
    sdb_field *set = sbx_ctx_alloc(ctx, (q->n_set_fields ? q->n_set_fields : 1) * sizeof *set);
    for (size_t i = 0; i < q->n_set_fields; i++) {
        set[i].key = sh_str(q->set_fields[i]->key);
        set[i].value = sh_str(q->set_fields[i]->value);
    }
    sdb_slice *rm = sbx_ctx_alloc(ctx, (q->n_remove_fields ? q->n_remove_fields : 1) * sizeof *rm);
    for (size_t i = 0; i < q->n_remove_fields; i++)
        rm[i] = sh_str(q->remove_fields[i]);
    if (q->retention && q->retention->max_age_s < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                             "retention.max_age_s: %lld must not be negative",
                             (long long)q->retention->max_age_s);
    sdb_proj_patch u = {
        .project = sh_str(q->project_id),
        .set = set,
        .n_set = q->n_set_fields,
        .remove = rm,
        .n_remove = q->n_remove_fields,
        .has_expected_version = q->expected != NULL,
        .expected_version = q->expected ? q->expected->version : 0,
        .has_retention = q->retention != NULL,
        .retention_max_records = q->retention ? q->retention->max_records : 0,
        .retention_max_age_s = q->retention ? q->retention->max_age_s : 0,
    };
    sdb_project *p = NULL;
    char err[SH_ERRLEN] = "";
    int rc = sdb_proj_update(db, sh_tenant(ctx), &u, &p, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    *resp = &to_project(ctx, p)->base;
    sdb_project_free(p);
    return SBX_OK;
}

typedef struct {
    sbx_ctx *ctx;
    Sbx__V1__Project **items;
    size_t n, bytes;
} list_proj_state;

static int list_proj_cb(void *arg, const sdb_project *p)
{
    list_proj_state *s = arg;
    Sbx__V1__Project *m = to_project(s->ctx, p);
    size_t sz = protobuf_c_message_get_packed_size(&m->base) + 16;
    if (s->n > 0 && s->bytes + sz > SBX_STORE_RESPONSE_BUDGET)
        return SDB_PAGE_FULL;
    s->items[s->n++] = m;
    s->bytes += sz;
    return 0;
}

int sh_list_projects(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sdb *db = data;
    const Sbx__V1__ListProjectsRequest *q = (const void *)req;
    list_proj_state s = {ctx, sbx_ctx_alloc(ctx, SDB_LIST_MAX * sizeof(Sbx__V1__Project *)), 0, 0};
    sdb_page pg;
    char err[SH_ERRLEN] = "";
    int rc = sdb_proj_list(db, sh_tenant(ctx), sh_str(q->prefix), q->limit != 0, q->limit,
                           sh_str(q->page_token), list_proj_cb, &s, &pg, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__ListProjectsResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__list_projects_response__descriptor);
    r->n_projects = s.n;
    r->projects = s.items;
    r->next_page_token = sbx_ctx_strdup(ctx, pg.next_token);
    *resp = &r->base;
    return SBX_OK;
}

int sh_delete_project(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      void *data)
{
    sdb *db = data;
    const Sbx__V1__DeleteProjectRequest *q = (const void *)req;
    bool existed = false;
    char err[SH_ERRLEN] = "";
    int rc = sdb_proj_delete(db, sh_tenant(ctx), sh_str(q->project_id), &existed, err, sizeof err);
    if (rc)
        return sh_fail(ctx, rc, err);
    Sbx__V1__DeleteProjectResponse *r =
        (void *)sbx_ctx_new_msg(ctx, &sbx__v1__delete_project_response__descriptor);
    r->existed = existed;
    *resp = &r->base;
    return SBX_OK;
}
