/* handlers_sandbox.c: CreateSandbox, GetSandbox, ListSandboxes (paged by a token bound to its
 * filters), KillSandbox, SetSandboxTimeout: validation, then the registry.
 *
 * Threads: the handlers' worker threads (ListSandboxes inline on the completion queue). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"
#include "status.h"

int exh_create_sandbox(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__CreateSandboxRequest *r = (const Sbx__V1__CreateSandboxRequest *)req;
    char err[512];
    int code;
    if ((code = exv_project_id("project_id", r->project_id, err, sizeof err)) != SBX_OK ||
        (code = exv_template(r->template_, err, sizeof err)) != SBX_OK ||
        (code = exv_duration_ms("idle_timeout_ms", r->idle_timeout_ms, EXV_IDLE_MAX_MS, err,
                                sizeof err)) != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    exv_kv *env = exv_kv_collect((void *const *)r->env, r->n_env);
    exv_kv *meta = exv_kv_collect((void *const *)r->metadata, r->n_metadata);
    if ((r->n_env && !env) || (r->n_metadata && !meta)) {
        free(env);
        free(meta);
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
    }
    if ((code = exv_env("env", env, r->n_env, err, sizeof err)) != SBX_OK ||
        (code = exv_metadata("metadata", meta, r->n_metadata, err, sizeof err)) != SBX_OK) {
        free(env);
        free(meta);
        return sbx_ctx_error(ctx, code, "%s", err);
    }
    sbx_egress_policy *net = NULL;
    if (r->network && (code = exh_network_policy(ctx, r->network, "network", &net)) != SBX_OK) {
        free(env);
        free(meta);
        return code;
    }
    sbx_box_params p = {.project_id = r->project_id,
                        .template_name = r->template_,
                        .limits = r->limits,
                        .idle_timeout_ms = r->idle_timeout_ms,
                        .env = env,
                        .n_env = r->n_env,
                        .metadata = meta,
                        .n_metadata = r->n_metadata,
                        .network = net};
    sbx_box *b = NULL;
    bool created = false;
    code = sbx_reg_create(s->reg, sbx_ctx_tenant(ctx), &p, &b, &created, err, sizeof err);
    free(env);
    free(meta);
    sbx_egress_policy_unref(net);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    *resp = &exh_sandbox_msg(ctx, s, b)->base;
    sbx_box_release(b);
    return SBX_OK;
}

int exh_get_sandbox(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    const Sbx__V1__GetSandboxRequest *r = (const Sbx__V1__GetSandboxRequest *)req;
    sbx_box *b;
    int code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_ANY, &b);
    if (code != SBX_OK)
        return code;
    *resp = &exh_sandbox_msg(ctx, data, b)->base;
    sbx_box_unref(b);
    return SBX_OK;
}

/* Page tokens: "<filter hash>.<last sandbox_id>", the hash binding a token to its filters. */
static void filter_hash(const Sbx__V1__ListSandboxesRequest *r, char out[17])
{
    char buf[256], hex[65];
    int n = snprintf(buf, sizeof buf, "%s|%d", r->project_id, r->include_stopped ? 1 : 0);
    sbx_sha256_hex(buf, (size_t)n, hex);
    memcpy(out, hex, 16);
    out[16] = 0;
}

int exh_list_sandboxes(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__ListSandboxesRequest *r = (const Sbx__V1__ListSandboxesRequest *)req;
    char err[256];
    int code;
    if (r->project_id[0] &&
        (code = exv_project_id("project_id", r->project_id, err, sizeof err)) != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    if (r->page_size < 0)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "page_size: %d is negative", r->page_size);
    size_t page = r->page_size == 0 ? 100 : r->page_size > 1000 ? 1000 : (size_t)r->page_size;
    char fh[17];
    filter_hash(r, fh);
    const char *after = NULL;
    if (r->page_token[0]) {
        if (strlen(r->page_token) < 18 || strncmp(r->page_token, fh, 16) != 0 ||
            r->page_token[16] != '.' ||
            exv_sandbox_id("page_token", r->page_token + 17, err, sizeof err) != SBX_OK)
            return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT,
                                 "page_token: not a token of this "
                                 "listing (pass next_page_token back with the same filters)");
        after = r->page_token + 17;
    }
    sbx_box **v;
    size_t n = sbx_reg_list(s->reg, sbx_ctx_tenant(ctx), r->project_id, r->include_stopped, &v);
    Sbx__V1__ListSandboxesResponse *out = (Sbx__V1__ListSandboxesResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__list_sandboxes_response__descriptor);
    out->sandboxes =
        n ? sbx_ctx_alloc(ctx, (n < page ? n : page) * sizeof(Sbx__V1__Sandbox *)) : NULL;
    size_t i = 0;
    if (after)
        while (i < n && strcmp(sbx_box_id(v[i]), after) <= 0)
            i++;
    for (; i < n && out->n_sandboxes < page; i++) {
        out->sandboxes[out->n_sandboxes++] = exh_sandbox_msg(ctx, s, v[i]);
    }
    if (i < n && out->n_sandboxes > 0) {
        const char *last = out->sandboxes[out->n_sandboxes - 1]->sandbox_id;
        size_t tl = 18 + strlen(last);
        out->next_page_token = sbx_ctx_alloc(ctx, tl);
        snprintf(out->next_page_token, tl, "%s.%s", fh, last);
    }
    sbx_reg_list_free(v, n);
    *resp = &out->base;
    return SBX_OK;
}

int exh_kill_sandbox(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__KillSandboxRequest *r = (const Sbx__V1__KillSandboxRequest *)req;
    sbx_box *b;
    int code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_ANY, &b);
    if (code != SBX_OK)
        return code;
    char err[256];
    bool killed = false;
    code = sbx_reg_kill(s->reg, b, r->wipe_home, &killed, err, sizeof err);
    sbx_box_unref(b);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    Sbx__V1__KillSandboxResponse *out = (Sbx__V1__KillSandboxResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__kill_sandbox_response__descriptor);
    out->killed = killed;
    *resp = &out->base;
    return SBX_OK;
}

int exh_set_sandbox_timeout(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                            void *data)
{
    const Sbx__V1__SetSandboxTimeoutRequest *r = (const Sbx__V1__SetSandboxTimeoutRequest *)req;
    char err[256];
    int code =
        exv_duration_ms("idle_timeout_ms", r->idle_timeout_ms, EXV_IDLE_MAX_MS, err, sizeof err);
    if (code != SBX_OK)
        return sbx_ctx_error(ctx, code, "%s", err);
    sbx_box *b;
    if ((code = exh_box(ctx, data, r->sandbox_id, r->project_id, REG_ANY, &b)) != SBX_OK)
        return code;
    code = sbx_box_set_idle_timeout(b, r->idle_timeout_ms, err, sizeof err);
    if (code == SBX_OK) {
        *resp = &exh_sandbox_msg(ctx, data, b)->base;
    }
    sbx_box_unref(b);
    return code == SBX_OK ? SBX_OK : sbx_ctx_error(ctx, code, "%s", err);
}
