/* ports.c: reaching servers inside a sandbox: ExposePort and StartDevServer (start, expose,
 * wait until HTTP answers). */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.SandboxExecutor/" m

void sbx_port_clear(sbx_port *p)
{
    if (!p)
        return;
    free(p->host);
    free(p->url);
    memset(p, 0, sizeof *p);
}

void sbx_dev_server_free(sbx_dev_server *d)
{
    if (!d)
        return;
    free(d->url);
    free(d->host);
    free(d->sandbox_id);
    free(d);
}

sbx_error *sbx_port_expose(sbx_client *c, const char *project_id, uint32_t port, sbx_port *out)
{
    memset(out, 0, sizeof *out);
    Sbx__V1__ExposePortRequest req = SBX__V1__EXPOSE_PORT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.port = port;
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_EXECUTOR, req.project_id, M("ExposePort"), &req.base,
                       &sbx__v1__expose_port_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__ExposePortResponse *r = (void *)resp;
    out->port = port;
    out->host_port = r->host_port;
    out->host = sbx__strdup(r->host);
    out->url = sbx__strdup(r->url);
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!out->host || !out->url) {
        sbx_port_clear(out);
        return sbx__error_oom();
    }
    return NULL;
}

/* The answer of StartDevServer as an sbx_dev_server (NULL when memory ran out). */
static sbx_dev_server *dev_server_new(const Sbx__V1__StartDevServerResponse *rr)
{
    sbx_dev_server *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->url = sbx__strdup(rr->url);
    d->pid = rr->pid;
    d->host = sbx__strdup(rr->host);
    d->host_port = rr->host_port;
    d->ready_after_ms = rr->ready_after_ms;
    d->sandbox_id = sbx__strdup(rr->sandbox_id);
    if (!d->url || !d->host || !d->sandbox_id) {
        sbx_dev_server_free(d);
        return NULL;
    }
    return d;
}

sbx_error *sbx_dev_server_start(sbx_client *c, const sbx_dev_server_req *r, sbx_dev_server **out)
{
    *out = NULL;
    if (!r->shell && r->argc == 0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "no command given");
    Sbx__V1__StartDevServerRequest req = SBX__V1__START_DEV_SERVER_REQUEST__INIT;
    Sbx__V1__Argv av = SBX__V1__ARGV__INIT;
    req.project_id = (char *)sbx__nz(r->project_id);
    if (r->shell) {
        req.command_case = SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_SHELL;
        req.shell = (char *)r->shell;
    } else {
        av.n_args = r->argc;
        av.args = (char **)r->argv;
        req.command_case = SBX__V1__START_DEV_SERVER_REQUEST__COMMAND_ARGV;
        req.argv = &av;
    }
    req.cwd = (char *)sbx__nz(r->cwd);
    void **env = NULL;
    if (sbx__env_entries(r->env, r->n_env,
                         &sbx__v1__start_dev_server_request__env_entry__descriptor, &env) != 0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT,
                             "env entries must be KEY=VALUE with a non-empty KEY");
    req.n_env = r->n_env;
    req.env = (Sbx__V1__StartDevServerRequest__EnvEntry **)env;
    req.port = r->port;
    req.ready_path = (char *)sbx__nz(r->ready_path);
    req.ready_timeout_ms = r->ready_timeout_ms;
    req.tag = (char *)sbx__nz(r->tag);
    req.keep_on_failure = r->keep_on_failure;
    /* the call lasts as long as the readiness wait: give it that plus the usual deadline */
    int64_t saved = c->deadline_ms;
    int64_t wait = r->ready_timeout_ms > 0 ? r->ready_timeout_ms : 30000;
    ProtobufCMessage *resp = NULL;
    size_t shard = sbx__shard_for(c, SBX_SERVICE_EXECUTOR, req.project_id);
    sbx__shard *sh = &c->shards[SBX_SERVICE_EXECUTOR][shard];
    sbx_rpc_result res = {0};
    int code = sbx_call_unary(
        sh->ch, M("StartDevServer"), &req.base, &sbx__v1__start_dev_server_response__descriptor,
        &resp, saved > 0 ? saved + wait : 0, r->tag && *r->tag ? &c->backoff : NULL, &res);
    sbx__env_free(env, r->n_env);
    if (code != SBX_CODE_OK) {
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        sbx_error *e = sbx__error_rpc(&res, code, sh->addr);
        sbx_rpc_result_clear(&res);
        return e ? e : sbx__error_oom();
    }
    sbx_rpc_result_clear(&res);
    sbx_dev_server *d = dev_server_new((void *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!d)
        return sbx__error_oom();
    *out = d;
    return NULL;
}
