/* sandbox.c: sandbox lifecycle on the executor (Create, Get, List over every executor, Kill,
 * SetSandboxTimeout) and its egress policy (UpdateSandboxNetwork). */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m

static void sandbox_clear(sbx_sandbox *s)
{
    free(s->sandbox_id);
    free(s->project_id);
    free(s->template_name);
    for (size_t i = 0; i < s->n_enforced; i++)
        free(s->enforced[i]);
    free(s->enforced);
    for (size_t i = 0; i < s->n_metadata; i++) {
        free(s->metadata[i].key);
        free(s->metadata[i].value);
    }
    free(s->metadata);
    for (size_t i = 0; i < s->n_ports; i++)
        sbx_port_clear(&s->ports[i]);
    free(s->ports);
    for (size_t i = 0; i < s->n_allow_out; i++)
        free(s->allow_out[i]);
    free(s->allow_out);
    for (size_t i = 0; i < s->n_deny_out; i++)
        free(s->deny_out[i]);
    free(s->deny_out);
    free(s->http_proxy);
    free(s->disk_mechanism);
    memset(s, 0, sizeof *s);
}

void sbx_sandbox_free(sbx_sandbox *s)
{
    if (!s)
        return;
    sandbox_clear(s);
    free(s);
}

void sbx_sandbox_list_free(sbx_sandbox_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        sandbox_clear(&l->sandboxes[i]);
    free(l->sandboxes);
    free(l);
}

static int copy_strv(char *const *v, size_t n, char ***out, size_t *nout)
{
    if (n && !(*out = calloc(n, sizeof **out)))
        return -1;
    for (size_t i = 0; i < n; i++, (*nout)++)
        if (!((*out)[i] = sbx__strdup(v[i])))
            return -1;
    return 0;
}

static int network_fill(sbx_sandbox *d, const Sbx__V1__SandboxNetwork *n)
{
    if (!n)
        return 0;
    d->has_network = true;
    d->net_allowed = n->allowed;
    d->net_denied = n->denied;
    d->net_failed = n->failed;
    d->net_bytes_out = n->bytes_out;
    d->net_bytes_in = n->bytes_in;
    if (!(d->http_proxy = sbx__strdup(n->http_proxy)))
        return -1;
    if (copy_strv(n->allow_out, n->n_allow_out, &d->allow_out, &d->n_allow_out) != 0)
        return -1;
    return copy_strv(n->deny_out, n->n_deny_out, &d->deny_out, &d->n_deny_out);
}

static int sandbox_fill(sbx_sandbox *d, const Sbx__V1__Sandbox *s)
{
    memset(d, 0, sizeof *d);
    d->state = (int)s->state;
    d->init_pid = s->init_pid;
    d->created_at_ms = s->created_at_unix_ms;
    d->last_used_at_ms = s->last_used_at_unix_ms;
    d->expires_at_ms = s->expires_at_unix_ms;
    d->idle_timeout_ms = s->idle_timeout_ms;
    d->running_processes = s->running_processes;
    d->from_pool = s->from_pool;
    if (s->limits) {
        d->memory_bytes = s->limits->memory_bytes;
        d->pids = s->limits->pids;
        d->cpu_millis = s->limits->cpu_millis;
        d->command_timeout_ms = s->limits->command_timeout_ms;
        d->max_output_bytes = s->limits->max_output_bytes;
        d->open_files = s->limits->open_files;
        d->disk_bytes = s->limits->disk_bytes;
        d->disk_inodes = s->limits->disk_inodes;
    }
    if (s->disk) {
        d->has_disk = true;
        d->disk_used_bytes = s->disk->used_bytes;
        d->disk_used_inodes = s->disk->used_inodes;
        d->disk_limit_bytes = s->disk->limit_bytes;
        d->disk_limit_inodes = s->disk->limit_inodes;
        if (!(d->disk_mechanism = sbx__strdup(s->disk->mechanism)))
            return -1;
    }
    d->sandbox_id = sbx__strdup(s->sandbox_id);
    d->project_id = sbx__strdup(s->project_id);
    d->template_name = sbx__strdup(s->template_);
    if (!d->sandbox_id || !d->project_id || !d->template_name)
        return -1;
    if (s->n_enforced && !(d->enforced = calloc(s->n_enforced, sizeof *d->enforced)))
        return -1;
    for (size_t i = 0; i < s->n_enforced; i++, d->n_enforced++)
        if (!(d->enforced[i] = sbx__strdup(s->enforced[i])))
            return -1;
    if (s->n_metadata && !(d->metadata = calloc(s->n_metadata, sizeof *d->metadata)))
        return -1;
    for (size_t i = 0; i < s->n_metadata; i++, d->n_metadata++) {
        d->metadata[i].key = sbx__strdup(s->metadata[i]->key);
        d->metadata[i].value = sbx__strdup(s->metadata[i]->value);
        if (!d->metadata[i].key || !d->metadata[i].value) {
            d->n_metadata++;
            return -1;
        }
    }
    if (s->n_exposed_ports && !(d->ports = calloc(s->n_exposed_ports, sizeof *d->ports)))
        return -1;
    for (size_t i = 0; i < s->n_exposed_ports; i++, d->n_ports++) {
        const Sbx__V1__ExposedPort *p = s->exposed_ports[i];
        d->ports[i].port = p->port;
        d->ports[i].host_port = p->host_port;
        d->ports[i].host = sbx__strdup(p->host);
        d->ports[i].url = sbx__strdup(p->url);
        if (!d->ports[i].host || !d->ports[i].url) {
            d->n_ports++;
            return -1;
        }
    }
    return network_fill(d, s->network);
}

static sbx_error *sandbox_out(ProtobufCMessage *resp, sbx_sandbox **out)
{
    sbx_sandbox *d = calloc(1, sizeof *d);
    int rc = d ? sandbox_fill(d, (const Sbx__V1__Sandbox *)resp) : -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (rc != 0) {
        sbx_sandbox_free(d);
        return sbx__error_oom();
    }
    *out = d;
    return NULL;
}

sbx_error *sbx_sandbox_new(sbx_client *c, const char *project_id, const sbx_sandbox_create *o,
                           sbx_sandbox **out)
{
    *out = NULL;
    sbx_sandbox_create zero = {0};
    if (!o)
        o = &zero;
    Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
    Sbx__V1__SandboxLimits lim = SBX__V1__SANDBOX_LIMITS__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.template_ = (char *)sbx__nz(o->template_name);
    req.idle_timeout_ms = o->idle_timeout_ms;
    lim.memory_bytes = o->memory_bytes;
    lim.pids = o->pids;
    lim.cpu_millis = o->cpu_millis;
    lim.command_timeout_ms = o->command_timeout_ms;
    lim.disk_bytes = o->disk_bytes;
    req.limits = &lim;
    void **env = NULL;
    if (sbx__env_entries(o->env, o->n_env, &sbx__v1__create_sandbox_request__env_entry__descriptor,
                         &env) != 0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "env entries must be KEY=VALUE with a non-empty KEY");
    req.n_env = o->n_env;
    req.env = (Sbx__V1__CreateSandboxRequest__EnvEntry **)env;
    Sbx__V1__NetworkPolicy net = SBX__V1__NETWORK_POLICY__INIT;
    if (o->set_network) {
        net.allow_out = (char **)o->allow_out;
        net.n_allow_out = o->n_allow_out;
        net.deny_out = (char **)o->deny_out;
        net.n_deny_out = o->n_deny_out;
        req.network = &net;
    }
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("CreateSandbox"),
                                  &req.base, &sbx__v1__sandbox__descriptor, &resp, true);
    sbx__env_free(env, o->n_env);
    return e ? e : sandbox_out(resp, out);
}

sbx_error *sbx_sandbox_get(sbx_client *c, const char *project_id, sbx_sandbox **out)
{
    *out = NULL;
    Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("GetSandbox"),
                                  &req.base, &sbx__v1__sandbox__descriptor, &resp, true);
    return e ? e : sandbox_out(resp, out);
}

sbx_error *sbx_sandbox_set_timeout(sbx_client *c, const char *project_id, int64_t idle_timeout_ms,
                                   sbx_sandbox **out)
{
    *out = NULL;
    Sbx__V1__SetSandboxTimeoutRequest req = SBX__V1__SET_SANDBOX_TIMEOUT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.idle_timeout_ms = idle_timeout_ms;
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("SetSandboxTimeout"),
                                  &req.base, &sbx__v1__sandbox__descriptor, &resp, true);
    return e ? e : sandbox_out(resp, out);
}

sbx_error *sbx_sandbox_kill(sbx_client *c, const char *project_id, bool wipe_home, bool *killed)
{
    if (killed)
        *killed = false;
    Sbx__V1__KillSandboxRequest req = SBX__V1__KILL_SANDBOX_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.wipe_home = wipe_home;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("KillSandbox"), &req.base,
                       &sbx__v1__kill_sandbox_response__descriptor, &resp, true);
    if (e)
        return e;
    if (killed)
        *killed = ((Sbx__V1__KillSandboxResponse *)resp)->killed;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_sandbox_list_all(sbx_client *c, const char *project_id, bool include_stopped,
                                sbx_sandbox_list **out)
{
    *out = NULL;
    sbx_sandbox_list *l = calloc(1, sizeof *l);
    if (!l)
        return sbx__error_oom();
    size_t cap = 0;
    sbx_error *e = NULL;
    size_t first = 0, last = c->n[SBX_SERVICE_EXECUTOR];
    if (project_id && *project_id) {
        first = sbx__shard_for(c, SBX_SERVICE_EXECUTOR, project_id);
        last = first + 1;
    }
    for (size_t shard = first; shard < last && !e; shard++) {
        char *token = strdup("");
        while (token && !e) {
            Sbx__V1__ListSandboxesRequest req = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
            req.project_id = (char *)sbx__nz(project_id);
            req.page_size = 1000;
            req.page_token = token;
            req.include_stopped = include_stopped;
            ProtobufCMessage *resp = NULL;
            e = sbx__unary(c, SBX_SERVICE_EXECUTOR, shard, M("ListSandboxes"), &req.base,
                           &sbx__v1__list_sandboxes_response__descriptor, &resp, true);
            free(token);
            token = NULL;
            if (e)
                break;
            Sbx__V1__ListSandboxesResponse *r = (void *)resp;
            for (size_t i = 0; i < r->n_sandboxes && !e; i++) {
                if (l->count == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    sbx_sandbox *np = realloc(l->sandboxes, nc * sizeof *np);
                    if (!np) {
                        e = sbx__error_oom();
                        break;
                    }
                    l->sandboxes = np;
                    cap = nc;
                }
                l->count++;
                if (sandbox_fill(&l->sandboxes[l->count - 1], r->sandboxes[i]) != 0)
                    e = sbx__error_oom();
            }
            if (!e && *r->next_page_token)
                token = strdup(r->next_page_token);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    if (e) {
        sbx_sandbox_list_free(l);
        return e;
    }
    *out = l;
    return NULL;
}

sbx_error *sbx_sandbox_set_network(sbx_client *c, const char *project_id,
                                   const char *const *allow_out, size_t n_allow_out,
                                   const char *const *deny_out, size_t n_deny_out,
                                   sbx_sandbox **out)
{
    *out = NULL;
    Sbx__V1__UpdateSandboxNetworkRequest req = SBX__V1__UPDATE_SANDBOX_NETWORK_REQUEST__INIT;
    Sbx__V1__NetworkPolicy net = SBX__V1__NETWORK_POLICY__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    net.allow_out = (char **)allow_out;
    net.n_allow_out = n_allow_out;
    net.deny_out = (char **)deny_out;
    net.n_deny_out = n_deny_out;
    req.network = &net;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("UpdateSandboxNetwork"),
                       &req.base, &sbx__v1__sandbox__descriptor, &resp, true);
    return e ? e : sandbox_out(resp, out);
}
