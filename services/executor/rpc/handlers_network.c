/* handlers_network.c: network egress in the SandboxExecutor API: UpdateSandboxNetwork (replace
 * a running sandbox's policy), the policies of requests (CreateSandbox.network too), the
 * Sandbox.network message (policy in force, counters, proxy addresses), and whether commands
 * get the proxy environment.
 *
 * Threads: the handlers' worker threads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "handlers.h"
#include "status.h"

int exh_network_policy(sbx_ctx *ctx, const Sbx__V1__NetworkPolicy *np, const char *field,
                       sbx_egress_policy **out)
{
    char err[512];
    int rc = sbx_egress_policy_new(np ? (const char *const *)np->allow_out : NULL,
                                   np ? np->n_allow_out : 0,
                                   np ? (const char *const *)np->deny_out : NULL,
                                   np ? np->n_deny_out : 0, field, out, err, sizeof err);
    if (rc == 0)
        return SBX_OK;
    return rc == -EINVAL ? sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "%s", err)
                         : sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "out of memory");
}

bool exh_proxied(sbx_box *b)
{
    return sbx_egress_sb_proxied(sbx_box_egress(b));
}

static char **texts(sbx_ctx *ctx, const sbx_egress_policy *p, bool deny, size_t *n)
{
    *n = sbx_egress_policy_count(p, deny);
    if (!*n)
        return NULL;
    char **v = sbx_ctx_alloc(ctx, *n * sizeof *v);
    for (size_t i = 0; i < *n; i++)
        v[i] = sbx_ctx_strdup(ctx, sbx_egress_policy_text(p, deny, i));
    return v;
}

Sbx__V1__SandboxNetwork *exh_network_msg(sbx_ctx *ctx, sbx_box *b)
{
    sbx_egress_sb *net = sbx_box_egress(b);
    if (!net)
        return NULL;
    Sbx__V1__SandboxNetwork *m =
        (Sbx__V1__SandboxNetwork *)sbx_ctx_new_msg(ctx, &sbx__v1__sandbox_network__descriptor);
    sbx_egress_policy *p = sbx_egress_sb_policy(net);
    m->allow_out = texts(ctx, p, false, &m->n_allow_out);
    m->deny_out = texts(ctx, p, true, &m->n_deny_out);
    sbx_egress_policy_unref(p);
    sbx_egress_counters c;
    sbx_egress_sb_counters(net, &c);
    m->allowed = c.allowed;
    m->denied = c.denied;
    m->failed = c.failed;
    m->bytes_out = c.bytes_out;
    m->bytes_in = c.bytes_in;
    bool on = sbx_egress_sb_proxied(net);
    m->http_proxy = sbx_ctx_strdup(ctx, on ? SBX_EGRESS_HTTP_PROXY : "");
    m->socks_proxy = sbx_ctx_strdup(ctx, on ? SBX_EGRESS_SOCKS_PROXY : "");
    return m;
}

int exh_update_sandbox_network(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                               void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__UpdateSandboxNetworkRequest *r =
        (const Sbx__V1__UpdateSandboxNetworkRequest *)req;
    sbx_egress_policy *p = NULL;
    int code = exh_network_policy(ctx, r->network, "network", &p);
    if (code != SBX_OK)
        return code;
    if (!s->egress) {
        sbx_egress_policy_unref(p);
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE,
                             "network egress is not available on this executor");
    }
    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_USE, &b)) != SBX_OK) {
        sbx_egress_policy_unref(p);
        return code;
    }
    char err[512];
    code = sbx_box_set_network(b, p, err, sizeof err);
    sbx_egress_policy_unref(p);
    if (code == SBX_OK)
        *resp = &exh_sandbox_msg(ctx, s, b)->base;
    sbx_box_release(b);
    return code == SBX_OK ? SBX_OK : sbx_ctx_error(ctx, code, "%s", err);
}
