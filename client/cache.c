/* cache.c: a project's result cache on the store (GetCachedResult, ClearCache). */
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/store.pb-c.h"
#include "sbx_internal.h"

#define M(m) "/sbx.v1.StateStore/" m

void sbx_cached_free(sbx_cached *r)
{
    if (!r)
        return;
    free(r->command_key);
    free(r->out);
    free(r->err);
    free(r);
}

sbx_error *sbx_cache_get(sbx_client *c, const char *project_id, const char *command_key,
                         bool *found, bool *expired, sbx_cached **out)
{
    *found = false;
    if (expired)
        *expired = false;
    *out = NULL;
    Sbx__V1__GetCachedResultRequest req = SBX__V1__GET_CACHED_RESULT_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.command_key = (char *)sbx__nz(command_key);
    ProtobufCMessage *resp = NULL;
    sbx_error *e =
        sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("GetCachedResult"), &req.base,
                       &sbx__v1__get_cached_result_response__descriptor, &resp, true);
    if (e)
        return e;
    Sbx__V1__GetCachedResultResponse *r = (void *)resp;
    if (expired)
        *expired = r->expired;
    if (r->found && r->result) {
        const Sbx__V1__CachedResult *s = r->result;
        sbx_cached *d = calloc(1, sizeof *d);
        if (d) {
            d->command_key = sbx__strdup(*s->command_key ? s->command_key : command_key);
            d->exit_code = s->exit_code;
            d->signal = s->signal;
            d->timed_out = s->timed_out;
            d->output_truncated = s->output_truncated;
            d->out = sbx__memdup(s->stdout.data, s->stdout.len);
            d->out_len = s->stdout.len;
            d->err = sbx__memdup(s->stderr.data, s->stderr.len);
            d->err_len = s->stderr.len;
            d->duration_us = s->duration_us;
            d->created_at_ms = s->created_at_unix_ms;
            d->expires_at_ms = s->expires_at_unix_ms;
            d->seq = s->seq;
        }
        if (!d || !d->command_key || !d->out || !d->err) {
            sbx_cached_free(d);
            protobuf_c_message_free_unpacked(resp, NULL);
            return sbx__error_oom();
        }
        *found = true;
        *out = d;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

sbx_error *sbx_cache_clear(sbx_client *c, const char *project_id, const char *command_key,
                           uint64_t *cleared)
{
    if (cleared)
        *cleared = 0;
    Sbx__V1__ClearCacheRequest req = SBX__V1__CLEAR_CACHE_REQUEST__INIT;
    req.project_id = (char *)sbx__nz(project_id);
    req.command_key = (char *)sbx__nz(command_key);
    ProtobufCMessage *resp = NULL;
    sbx_error *e = sbx__unary_key(c, SBX_SERVICE_STORE, req.project_id, M("ClearCache"), &req.base,
                                  &sbx__v1__clear_cache_response__descriptor, &resp, true);
    if (e)
        return e;
    if (cleared)
        *cleared = ((Sbx__V1__ClearCacheResponse *)resp)->cleared;
    protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}
