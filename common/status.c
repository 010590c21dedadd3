/* status.c: names and errno mapping for the status table in status.h. */
#include "status.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>

static const struct {
    const char *name, *desc;
} status_tab[SBX_STATUS_COUNT] = {
#define SBX_STATUS_ROW(e, n, name, desc) [n] = {name, desc},
    SBX_STATUS_MAP(SBX_STATUS_ROW)
#undef SBX_STATUS_ROW
};

const char *sbx_status_name(int code)
{
    if (code < 0 || code >= SBX_STATUS_COUNT)
        return "UNKNOWN";
    return status_tab[code].name;
}

const char *sbx_status_desc(int code)
{
    if (code < 0 || code >= SBX_STATUS_COUNT)
        return "unknown error";
    return status_tab[code].desc;
}

int sbx_status_parse(const char *s)
{
    if (!s || !*s)
        return -1;
    for (int i = 0; i < SBX_STATUS_COUNT; i++)
        if (strcasecmp(s, status_tab[i].name) == 0)
            return i;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end == '\0' && v >= 0 && v < SBX_STATUS_COUNT)
        return (int)v;
    return -1;
}

int sbx_status_from_errno(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return SBX_OK;
    case ENOENT:
    case ESRCH:
        return SBX_NOT_FOUND;
    case EEXIST:
    case ENOTEMPTY:
        return SBX_ALREADY_EXISTS;
    case EACCES:
    case EPERM:
    case EROFS:
    case EXDEV:
    case ELOOP:
        return SBX_PERMISSION_DENIED;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EFBIG:
    case E2BIG:
    case EAGAIN:
        return SBX_RESOURCE_EXHAUSTED;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
        return SBX_INVALID_ARGUMENT;
    case ETIMEDOUT:
        return SBX_DEADLINE_EXCEEDED;
    case ECANCELED:
        return SBX_CANCELLED;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EIO:
        return SBX_UNAVAILABLE;
    case EBADMSG:
        return SBX_DATA_LOSS;
    case ENOSYS:
    case EOPNOTSUPP:
        return SBX_UNIMPLEMENTED;
    default:
        return SBX_INTERNAL;
    }
}
