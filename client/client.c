/* client.c: the sbx_client handle: parses the executor and store address lists, opens one
 * channel per address (API key, TLS options), holds the deadline and retry policy, and routes
 * a project id to its address. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rpc_server.h"
#include "route.h"
#include "sbx_internal.h"

void sbx_global_init(void)
{
    sbx_rpc_init();
}

void sbx_global_cleanup(void)
{
    sbx_rpc_shutdown();
}

/* Checks one address of svc's list and opens its channel as the next shard. */
static sbx_error *add_shard(sbx_client *c, sbx_service svc, const char *a, const sbx_config *cfg)
{
    size_t n = c->n[svc];
    sbx_chan_opts o = {
        .target = a,
        .api_key = cfg->api_key,
        .tls_ca = cfg->tls_ca,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
        .tls_server_name = cfg->tls_server_name,
    };
    char why[512] = "";
    sbx_chan *ch = sbx_chan_new(&o, why, sizeof why);
    if (!ch)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "TLS setup for %s: %s", a,
                             why[0] ? why : "failed");
    char *addr = strdup(a);
    if (!addr) {
        sbx_chan_free(ch);
        return sbx__error_oom();
    }
    c->shards[svc][n] = (sbx__shard){.addr = addr, .ch = ch};
    c->addrs[svc][n] = addr;
    c->n[svc] = n + 1;
    return NULL;
}

/* "HOST:PORT[,HOST:PORT...]" (parsed by common/route.c, as the executor parses its --store):
 * one shard per address; an empty item, a bad or repeated address is an error naming the flag. */
static sbx_error *parse_addrs(sbx_client *c, sbx_service svc, const char *list,
                              const sbx_config *cfg)
{
    const char *what = svc == SBX_SERVICE_EXECUTOR ? "--executor" : "--store";
    sbx_addr_list l;
    char why[320] = "";
    int rc = sbx_addr_list_parse(list, &l, why, sizeof why);
    if (rc == -ENOMEM)
        return sbx__error_oom();
    if (rc < 0)
        return sbx_error_new(SBX_CODE_INVALID_ARGUMENT, "%s: %s", what, why);
    c->shards[svc] = calloc(l.n, sizeof *c->shards[svc]);
    c->addrs[svc] = calloc(l.n, sizeof *c->addrs[svc]);
    sbx_error *err = !c->shards[svc] || !c->addrs[svc] ? sbx__error_oom() : NULL;
    for (size_t i = 0; !err && i < l.n; i++)
        err = add_shard(c, svc, l.v[i], cfg);
    sbx_addr_list_free(&l);
    return err;
}

sbx_error *sbx_client_new(const sbx_config *cfg, sbx_client **out)
{
    *out = NULL;
    sbx_config zero = {0};
    if (!cfg)
        cfg = &zero;
    sbx_client *c = calloc(1, sizeof *c);
    if (!c)
        return sbx__error_oom();
    pthread_mutex_init(&c->mu, NULL);
    c->deadline_ms = cfg->deadline_ms == 0 ? 30000 : (cfg->deadline_ms < 0 ? 0 : cfg->deadline_ms);
    c->backoff = sbx_backoff_default;
    if (cfg->max_attempts > 0)
        c->backoff.max_attempts = cfg->max_attempts;
    if (cfg->backoff_initial_ms > 0)
        c->backoff.initial_ms = cfg->backoff_initial_ms;
    if (cfg->backoff_max_ms > 0)
        c->backoff.max_ms = cfg->backoff_max_ms;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)c;
    const char *ex = cfg->executor && *cfg->executor ? cfg->executor : SBX__DEFAULT_EXECUTOR;
    const char *st = cfg->store && *cfg->store ? cfg->store : SBX__DEFAULT_STORE;
    sbx_error *err = parse_addrs(c, SBX_SERVICE_EXECUTOR, ex, cfg);
    if (!err)
        err = parse_addrs(c, SBX_SERVICE_STORE, st, cfg);
    if (err) {
        sbx_client_free(c);
        return err;
    }
    *out = c;
    return NULL;
}

void sbx_client_free(sbx_client *c)
{
    if (!c)
        return;
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < c->n[s]; i++) {
            sbx_chan_free(c->shards[s][i].ch);
            free(c->shards[s][i].addr);
        }
        free(c->shards[s]);
        free(c->addrs[s]);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t sbx_client_addr_count(const sbx_client *c, sbx_service svc)
{
    return c->n[svc];
}

const char *sbx_client_addr(const sbx_client *c, sbx_service svc, size_t i)
{
    return i < c->n[svc] ? c->shards[svc][i].addr : NULL;
}

size_t sbx__shard_for(const sbx_client *c, sbx_service svc, const char *key)
{
    if (c->n[svc] <= 1)
        return 0;
    int i = sbx_rendezvous_pick(c->addrs[svc], c->n[svc], key ? key : "");
    return i < 0 ? 0 : (size_t)i;
}

const char *sbx_client_route(const sbx_client *c, sbx_service svc, const char *project_id)
{
    return c->shards[svc][sbx__shard_for(c, svc, project_id)].addr;
}
