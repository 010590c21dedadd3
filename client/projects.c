/* projects.c: project metadata on the store (GetProject, UpdateProject with compare-and-set,
 * ListProjects merged over every store instance, DeleteProject). */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/store.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.StateStore/" m

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const sbx_field *)a)->key, ((const sbx_field *)b)->key);
}

static void project_clear(sbx_project *p)
{
    free(p->project_id);
    for (size_t i = 0; i < p->n_fields; i++) {
        free(p->fields[i].key);
        free(p->fields[i].value);
    }
    free(p->fields);
    memset(p, 0, sizeof *p);
}

void sbx_project_free(sbx_project *p)
{
    if (!p)
        return;
    project_clear(p);
    free(p);
}

void sbx_project_list_free(sbx_project_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        project_clear(&l->projects[i]);
    free(l->projects);
    free(l);
}

static int project_fill(sbx_project *d, const Sbx__V1__Project *s)
{
    memset(d, 0, sizeof *d);
    d->project_id = sbx__strdup(s->project_id);
    d->version = s->version;
    d->created_at_ms = s->created_at_unix_ms;
    d->updated_at_ms = s->updated_at_unix_ms;
    d->execution_count = s->execution_count;
    d->last_execution_seq = s->last_execution_seq;
    d->last_execution_at_ms = s->last_execution_at_unix_ms;
    d->last_exit_code = s->last_exit_code;
    if (s->retention) {
        d->retention_max_records = s->retention->max_records;
        d->retention_max_age_s = s->retention->max_age_s;
    }
    if (!d->project_id)
        return -1;
    if (s->n_fields) {
        d->fields = calloc(s->n_fields, sizeof *d->fields);
        if (!d->fields)
            return -1;
        for (size_t i = 0; i < s->n_fields; i++) {
            d->fields[i].key = sbx__strdup(s->fields[i]->key);
            d->fields[i].value = sbx__strdup(s->fields[i]->value);
            d->n_fields++;
            if (!d->fields[i].key || !d->fields[i].value)
                return -1;
        }
        qsort(d->fields, d->n_fields, sizeof *d->fields, cmp_field);
    }
    return 0;
}

static sbx_error *project_out(ProtobufCMessage *resp, sbx_project **out)
{
    sbx_project *p = calloc(1, sizeof *p);
    if (!p || project_fill(p, (const Sbx__V1__Project *)resp) != 0) {
        sbx_project_free(p);
        protobuf_c_message_free_unpacked(resp, NULL);
        return sbx__error_oom();
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    *out = p;
    return NULL;
}

sbx_error *sbx_project_get(sbx_client *c, const char *project_id, sbx_project **out)
{
    *out = NULL;
    Sbx__V1__GetProjectRequest req = SBX__V1__GET_PROJECT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("GetProject"), &req.base,
                                  &sbx__v1__project__descriptor, &resp, true);
    return e ? e : project_out(resp, out);
}

sbx_error *sbx_project_update_fields(sbx_client *c, const char *project_id,
                                     const sbx_project_update *u, sbx_project **out)
{
    if (out)
        *out = NULL;
    Sbx__V1__UpdateProjectRequest req = SBX__V1__UPDATE_PROJECT_REQUEST__INIT;
    Sbx__V1__ExpectedVersion exp = SBX__V1__EXPECTED_VERSION__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    Sbx__V1__UpdateProjectRequest__SetFieldsEntry *ents = NULL, **ptrs = NULL;
    if (u->n_set) {
        ents = calloc(u->n_set, sizeof *ents);
        ptrs = calloc(u->n_set, sizeof *ptrs);
        if (!ents || !ptrs) {
            free(ents);
            free(ptrs);
            return sbx__error_oom();
        }
        for (size_t i = 0; i < u->n_set; i++) {
            sbx__v1__update_project_request__set_fields_entry__init(&ents[i]);
            ents[i].key = u->set[i].key;
            ents[i].value = u->set[i].value;
            ptrs[i] = &ents[i];
        }
    }
    req.n_set_fields = u->n_set;
    req.set_fields = ptrs;
    req.n_remove_fields = u->n_remove;
    req.remove_fields = (char **)u->remove;
    if (u->check_version) {
        exp.version = u->expected_version;
        req.expected = &exp;
    }
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("UpdateProject"), &req.base,
                       &sbx__v1__project__descriptor, &resp, !u->check_version);
    free(ents);
    free(ptrs);
    if (e)
        return e;
    if (!out) {
        protobuf_c_message_free_unpacked(resp, NULL);
        return NULL;
    }
    return project_out(resp, out);
}

sbx_error *sbx_project_delete(sbx_client *c, const char *project_id, bool *existed)
{
    if (existed)
        *existed = false;
    Sbx__V1__DeleteProjectRequest req = SBX__V1__DELETE_PROJECT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("DeleteProject"), &req.base,
                       &sbx__v1__delete_project_response__descriptor, &resp, true);
    if (e)
        return e;
    if (existed)
        *existed = ((Sbx__V1__DeleteProjectResponse *)resp)->existed;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

static int cmp_project(const void *a, const void *b)
{
    return strcmp(((const sbx_project *)a)->project_id, ((const sbx_project *)b)->project_id);
}

/* Appends the projects of one store shard to l (at most about limit of them: the caller sorts
 * and cuts). */
static sbx_error *list_shard(sbx_client *c, size_t shard, const char *prefix, size_t limit,
                             sbx_project_list *l, size_t *cap)
{
    char *token = strdup("");
    size_t from_shard = 0;
    sbx_error *e = NULL;
    while (token && !e) {
        Sbx__V1__ListProjectsRequest req = SBX__V1__LIST_PROJECTS_REQUEST__INIT;
        req.prefix = (char *)sbx__nz(prefix);
        req.page_token = token;
        req.limit = 1000;
        ProtobufCMessage *resp = NULL;
        e = sbx__unary(c, SBX_SERVICE_STORE, shard, M("ListProjects"), &req.base,
                       &sbx__v1__list_projects_response__descriptor, &resp, true);
        if (e)
            break;
        Sbx__V1__ListProjectsResponse *r = (void *)resp;
        for (size_t i = 0; i < r->n_projects && !e; i++) {
            if (l->count == *cap) {
                size_t nc = *cap ? *cap * 2 : 64;
                sbx_project *np = realloc(l->projects, nc * sizeof *np);
                if (!np) {
                    e = sbx__error_oom();
                    break;
                }
                l->projects = np;
                *cap = nc;
            }
            l->count++;
            if (project_fill(&l->projects[l->count - 1], r->projects[i]) != 0)
                e = sbx__error_oom();
            from_shard++;
        }
        free(token);
        bool more = !e && *r->next_page_token && (!limit || from_shard <= limit);
        token = more ? strdup(r->next_page_token) : NULL;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    free(token);
    return e;
}

sbx_error *sbx_project_list_all(sbx_client *c, const char *prefix, size_t limit,
                                sbx_project_list **out)
{
    *out = NULL;
    sbx_project_list *l = calloc(1, sizeof *l);
    if (!l)
        return sbx__error_oom();
    size_t cap = 0;
    sbx_error *e = NULL;
    for (size_t shard = 0; shard < c->n[SBX_SERVICE_STORE] && !e; shard++)
        e = list_shard(c, shard, prefix, limit, l, &cap);
    if (e) {
        sbx_project_list_free(l);
        return e;
    }
    if (l->count > 1)
        qsort(l->projects, l->count, sizeof *l->projects, cmp_project);
    if (limit && l->count > limit) {
        for (size_t i = limit; i < l->count; i++)
            project_clear(&l->projects[i]);
        l->count = limit;
        l->truncated = true;
    }
    *out = l;
    return NULL;
}
