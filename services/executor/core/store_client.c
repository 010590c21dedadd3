/* store_client.c: per-tenant channels to sbx-store and the two calls the executor makes
 * (RecordExecution from the outbox, its bytes passed through by pb_raw; GetCachedResult for
 * cache_ttl_s lookups, after the outbox had a chance to deliver). */
#include "store_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pb_raw.h"
#include "rpc_client.h"

typedef struct tchan {
    char tenant[72];
    sbx_chan *ch;
    uint64_t used; /* LRU clock */
    int refs;      /* calls in flight */
} tchan;

struct sbx_storecli {
    char *target, *api_key;
    sbx_outbox *ob; /* read-your-writes; set once before lookups */
    pthread_mutex_t mu;
    tchan chans[STORECLI_MAX_TENANTS];
    size_t n;
    uint64_t clock;
};

sbx_storecli *sbx_storecli_new(const char *target, const char *api_key)
{
    sbx_storecli *sc = calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    sc->target = strdup(target ? target : "127.0.0.1:50052");
    sc->api_key = api_key ? strdup(api_key) : NULL;
    if (!sc->target || (api_key && !sc->api_key)) {
        free(sc->target);
        free(sc->api_key);
        free(sc);
        return NULL;
    }
    pthread_mutex_init(&sc->mu, NULL);
    return sc;
}

void sbx_storecli_free(sbx_storecli *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->n; i++)
        sbx_chan_free(sc->chans[i].ch);
    pthread_mutex_destroy(&sc->mu);
    free(sc->target);
    free(sc->api_key);
    free(sc);
}

void sbx_storecli_set_outbox(sbx_storecli *sc, sbx_outbox *ob)
{
    sc->ob = ob;
}

/* Returns the tenant's channel with a reference taken (release with put_chan). */
static tchan *get_chan(sbx_storecli *sc, const char *tenant, char *err, size_t errlen)
{
    pthread_mutex_lock(&sc->mu);
    tchan *t = NULL;
    for (size_t i = 0; i < sc->n; i++)
        if (strcmp(sc->chans[i].tenant, tenant) == 0) {
            t = &sc->chans[i];
            break;
        }
    if (!t) {
        if (sc->n < STORECLI_MAX_TENANTS) {
            t = &sc->chans[sc->n++];
        } else { /* evict the least recently used idle channel */
            for (size_t i = 0; i < sc->n; i++)
                if (sc->chans[i].refs == 0 && (!t || sc->chans[i].used < t->used))
                    t = &sc->chans[i];
            if (!t) {
                pthread_mutex_unlock(&sc->mu);
                snprintf(err, errlen, "too many concurrent tenants for the store client");
                return NULL;
            }
            sbx_chan_free(t->ch);
        }
        memset(t, 0, sizeof *t);
        snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
        sbx_chan_opts o = {.target = sc->target, .api_key = sc->api_key, .tenant = t->tenant};
        t->ch = sbx_chan_new(&o, err, errlen);
        if (!t->ch) {
            /* leave an empty slot (never matches a tenant, evicted first); other threads may
               hold pointers to other slots, so nothing moves */
            t->tenant[0] = 0;
            t->used = 0;
            if (t == &sc->chans[sc->n - 1])
                sc->n--;
            pthread_mutex_unlock(&sc->mu);
            return NULL;
        }
    }
    t->refs++;
    t->used = ++sc->clock;
    pthread_mutex_unlock(&sc->mu);
    return t;
}

static void put_chan(sbx_storecli *sc, tchan *t)
{
    pthread_mutex_lock(&sc->mu);
    t->refs--;
    pthread_mutex_unlock(&sc->mu);
}

int sbx_storecli_record(sbx_storecli *sc, const char *tenant, const uint8_t *req, size_t len,
                        int64_t deadline_ms, char *err, size_t errlen)
{
    Sbx__V1__RecordExecutionRequest m = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
    int rc = sbx_pb_raw_wrap(&m.base, req, len);
    if (rc < 0) {
        snprintf(err, errlen, "outbox entry is not a RecordExecutionRequest (%s)",
                 rc == -ENOMEM ? "out of memory" : "not protobuf wire format");
        return rc == -ENOMEM ? SBX_RESOURCE_EXHAUSTED : SBX_INVALID_ARGUMENT;
    }
    tchan *t = get_chan(sc, tenant, err, errlen);
    if (!t) {
        sbx_pb_raw_clear(&m.base);
        return SBX_UNAVAILABLE;
    }
    ProtobufCMessage *resp = NULL;
    sbx_rpc_result res = {0};
    int code = sbx_call_unary(t->ch, "/sbx.v1.StateStore/RecordExecution", &m.base,
                              &sbx__v1__record_execution_response__descriptor, &resp, deadline_ms,
                              NULL, &res);
    put_chan(sc, t);
    if (code != SBX_OK)
        snprintf(err, errlen, "%s", res.message ? res.message : "");
    sbx_rpc_result_clear(&res);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    sbx_pb_raw_clear(&m.base);
    return code;
}

/* Read-your-writes: a result this executor just produced may still be on its way to the store;
 * let it land first (bounded; skipped while the store is failing). */
static void let_own_writes_land(sbx_storecli *sc, int64_t deadline_ms)
{
    if (!sc->ob)
        return;
    sbx_outbox_stats os;
    sbx_outbox_get_stats(sc->ob, &os);
    if (os.pending && (os.last_code == SBX_OK || os.delivered == 0))
        sbx_outbox_flush(sc->ob, (int)(deadline_ms < 400 ? deadline_ms / 2 : 200));
}

int sbx_storecli_cache_get(sbx_storecli *sc, const char *tenant, const char *project_id,
                           const char *command_key, int64_t deadline_ms,
                           Sbx__V1__GetCachedResultResponse **out, char *err, size_t errlen)
{
    *out = NULL;
    let_own_writes_land(sc, deadline_ms);
    tchan *t = get_chan(sc, tenant, err, errlen);
    if (!t)
        return SBX_UNAVAILABLE;
    Sbx__V1__GetCachedResultRequest req = SBX__V1__GET_CACHED_RESULT_REQUEST__INIT;
    req.project_id = (char *)project_id;
    req.command_key = (char *)command_key;
    ProtobufCMessage *resp = NULL;
    sbx_rpc_result res = {0};
    int code = sbx_call_unary(t->ch, "/sbx.v1.StateStore/GetCachedResult", &req.base,
                              &sbx__v1__get_cached_result_response__descriptor, &resp, deadline_ms,
                              NULL, &res);
    put_chan(sc, t);
    if (code != SBX_OK) {
        snprintf(err, errlen, "%s", res.message ? res.message : "");
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        *out = (Sbx__V1__GetCachedResultResponse *)resp;
    }
    sbx_rpc_result_clear(&res);
    return code;
}
