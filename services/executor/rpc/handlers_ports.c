/* handlers_ports.c: ExposePort, what StartDevServer shares with it (the port check, exposing a
 * port of a running sandbox, URLs), the exposed ports of a Sandbox message, and the registry's
 * stop callback that closes a stopped sandbox's forwards (its host ports are free once
 * KillSandbox returns).
 *
 * Threads: the handlers' worker threads; the stop callback on whichever thread stops a box. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "status.h"

/* The status and message of a failed sbx_portfwd_expose*. */
static int expose_error(sbx_ctx *ctx, int rc, uint32_t port, const char *sandbox_id)
{
    switch (rc) {
    case -ENOSPC:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                             "port: sandbox %s already exposes the "
                             "most ports allowed; %u not exposed",
                             sandbox_id, port);
    case -EADDRINUSE:
    case -EADDRNOTAVAIL:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED,
                             "port: no host port free to forward "
                             "port %u (%s)",
                             port, strerror(-rc));
    case -ESRCH:
    case -ESTALE:
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE,
                             "sandbox %s stopped while port %u was being "
                             "exposed; retry",
                             sandbox_id, port);
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return sbx_ctx_error(ctx, SBX_RESOURCE_EXHAUSTED, "expose port %u: %s", port,
                             strerror(-rc));
    default:
        return sbx_ctx_error(ctx, SBX_INTERNAL, "expose port %u: %s", port, strerror(-rc));
    }
}

int exh_check_port(sbx_ctx *ctx, sbx_exsvc *s, uint32_t port)
{
    if (port == 0 || port > 65535)
        return sbx_ctx_error(ctx, SBX_INVALID_ARGUMENT, "port: %u is not in 1..65535", port);
    if (!s->fwd)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE,
                             "port forwarding is not available on this "
                             "executor");
    return SBX_OK;
}

int exh_expose(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, uint32_t port, uint16_t *host_port)
{
    sbx_box_snap sn;
    sbx_box_snapshot(b, &sn);
    if (sn.state != SBX_BOX_RUNNING || sn.init_pid <= 0)
        return sbx_ctx_error(ctx, SBX_UNAVAILABLE, "sandbox %s stopped; retry", sbx_box_id(b));
    /* the caller holds a use, so the sandbox and its borrowed net namespace fd stay valid */
    sbx_sandbox *sb = sbx_box_sandbox(b);
    int nfd = sb ? sbx_sandbox_netns_fd(sb) : -1;
    int rc = nfd >= 0 ? sbx_portfwd_expose(s->fwd, sbx_box_id(b), nfd, (uint16_t)port, host_port)
                      : -ESRCH;
    if (rc < 0)
        return expose_error(ctx, rc, port, sbx_box_id(b));
    return SBX_OK;
}

char *exh_url(sbx_ctx *ctx, sbx_exsvc *s, uint16_t host_port)
{
    char url[128];
    if (sbx_portfwd_url(s->fwd, host_port, url, sizeof url) < 0)
        url[0] = 0;
    return sbx_ctx_strdup(ctx, url);
}

int exh_expose_port(sbx_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp, void *data)
{
    sbx_exsvc *s = data;
    const Sbx__V1__ExposePortRequest *r = (const Sbx__V1__ExposePortRequest *)req;
    int code = exh_check_port(ctx, s, r->port);
    if (code != SBX_OK)
        return code;
    sbx_box *b;
    if ((code = exh_box(ctx, s, r->sandbox_id, r->project_id, REG_CREATE, &b)) != SBX_OK)
        return code;
    uint16_t hp = 0;
    code = exh_expose(ctx, s, b, r->port, &hp);
    if (code == SBX_OK)
        SBX_LOG_DEBUG("ports", "exposed sandbox=%s port=%u host_port=%u", sbx_box_id(b),
                      (unsigned)r->port, (unsigned)hp);
    sbx_box_release(b);
    if (code != SBX_OK)
        return code;
    Sbx__V1__ExposePortResponse *out = (Sbx__V1__ExposePortResponse *)sbx_ctx_new_msg(
        ctx, &sbx__v1__expose_port_response__descriptor);
    out->host = sbx_ctx_strdup(ctx, sbx_portfwd_bind_host(s->fwd));
    out->host_port = hp;
    out->url = exh_url(ctx, s, hp);
    *resp = &out->base;
    return SBX_OK;
}

/* ---------------------------------------------------------------- Sandbox.exposed_ports */

static int cmp_port(const void *a, const void *b)
{
    const sbx_portfwd_port *x = a, *y = b;
    return (int)x->port - (int)y->port;
}

void exh_sandbox_ports(sbx_ctx *ctx, sbx_exsvc *s, sbx_box *b, Sbx__V1__Sandbox *m)
{
    if (!s->fwd || !m || m->state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING)
        return;
    sbx_portfwd_port v[128];
    int n = sbx_portfwd_list(s->fwd, sbx_box_id(b), v, sizeof v / sizeof v[0]);
    if (n <= 0)
        return;
    size_t k = (size_t)n < sizeof v / sizeof v[0] ? (size_t)n : sizeof v / sizeof v[0];
    qsort(v, k, sizeof v[0], cmp_port);
    m->exposed_ports = sbx_ctx_alloc(ctx, k * sizeof *m->exposed_ports);
    const char *host = sbx_portfwd_bind_host(s->fwd);
    for (size_t i = 0; i < k; i++) {
        Sbx__V1__ExposedPort *ep =
            (Sbx__V1__ExposedPort *)sbx_ctx_new_msg(ctx, &sbx__v1__exposed_port__descriptor);
        ep->port = v[i].port;
        ep->host = sbx_ctx_strdup(ctx, host);
        ep->host_port = v[i].host_port;
        ep->url = exh_url(ctx, s, v[i].host_port);
        m->exposed_ports[i] = ep;
    }
    m->n_exposed_ports = k;
}

void exh_ports_on_stop(void *arg, sbx_box *b)
{
    sbx_portfwd *f = arg;
    if (f)
        sbx_portfwd_close_sandbox(f, sbx_box_id(b)); /* logs what it closed */
}
