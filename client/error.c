/* error.c: sbx_error, the one failure report of libsbx: a gRPC status code, its canonical name,
 * a message and the address that answered. Local failures (bad config, local files) reuse the
 * same codes so callers handle every failure alike. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_internal.h"
#include "status.h"

const char *sbx_code_name(int code)
{
    return sbx_status_name(code);
}

void sbx_error_free(sbx_error *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->target);
    free(e);
}

static sbx_error oom_error = {SBX_CODE_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED",
                              (char *)"out of memory", NULL, 1};

sbx_error *sbx__error_oom(void)
{
    /* A static error would be freed by the caller: allocate a tiny one, or give up. */
    sbx_error *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    *e = oom_error;
    e->message = strdup("out of memory");
    if (!e->message) {
        free(e);
        return NULL;
    }
    return e;
}

static sbx_error *error_alloc(int code, char *msg)
{
    sbx_error *e = calloc(1, sizeof *e);
    if (!e) {
        free(msg);
        return NULL;
    }
    e->code = code;
    e->name = sbx_status_name(code);
    e->message = msg ? msg : strdup("");
    e->attempts = 1;
    return e;
}

sbx_error *sbx_error_new(int code, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    return error_alloc(code, msg);
}

sbx_error *sbx__error_rpc(const sbx_rpc_result *res, int code, const char *target)
{
    const char *m = res && res->message ? res->message : "";
    if (!*m)
        m = sbx_status_desc(code);
    sbx_error *e = error_alloc(code, strdup(m));
    if (!e)
        return NULL;
    e->target = target ? strdup(target) : NULL;
    e->attempts = res && res->attempts > 0 ? res->attempts : 1;
    return e;
}

sbx_error *sbx__error_errno(int err, const char *what)
{
    if (err < 0)
        err = -err;
    return sbx_error_new(sbx_status_from_errno(err), "%s: %s", what, strerror(err));
}
