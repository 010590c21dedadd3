/* status.h: the one status table. Codes are gRPC's own numbers (the wire contract), so a
 * handler's return value is what the client sees. SBX_STATUS_MAP is an X-macro:
 * (enum name, number, canonical name, short description). */
#ifndef SBX_STATUS_H
#define SBX_STATUS_H

#define SBX_STATUS_MAP(X)                                                                          \
    X(OK, 0, "OK", "success")                                                                      \
    X(CANCELLED, 1, "CANCELLED", "the call was cancelled")                                         \
    X(UNKNOWN, 2, "UNKNOWN", "unknown error")                                                      \
    X(INVALID_ARGUMENT, 3, "INVALID_ARGUMENT", "a request field is invalid")                       \
    X(DEADLINE_EXCEEDED, 4, "DEADLINE_EXCEEDED", "the deadline passed")                            \
    X(NOT_FOUND, 5, "NOT_FOUND", "no such entity")                                                 \
    X(ALREADY_EXISTS, 6, "ALREADY_EXISTS", "the entity exists already")                            \
    X(PERMISSION_DENIED, 7, "PERMISSION_DENIED", "not allowed")                                    \
    X(RESOURCE_EXHAUSTED, 8, "RESOURCE_EXHAUSTED", "a limit or quota was hit")                     \
    X(FAILED_PRECONDITION, 9, "FAILED_PRECONDITION", "the state does not allow this")              \
    X(ABORTED, 10, "ABORTED", "aborted by a conflict")                                             \
    X(OUT_OF_RANGE, 11, "OUT_OF_RANGE", "value out of range")                                      \
    X(UNIMPLEMENTED, 12, "UNIMPLEMENTED", "not implemented")                                       \
    X(INTERNAL, 13, "INTERNAL", "internal error")                                                  \
    X(UNAVAILABLE, 14, "UNAVAILABLE", "service unavailable")                                       \
    X(DATA_LOSS, 15, "DATA_LOSS", "data loss or corruption")                                       \
    X(UNAUTHENTICATED, 16, "UNAUTHENTICATED", "missing or unknown credentials")

typedef enum {
#define SBX_STATUS_ENUM(e, n, name, desc) SBX_##e = n,
    SBX_STATUS_MAP(SBX_STATUS_ENUM)
#undef SBX_STATUS_ENUM
} sbx_status;

#define SBX_STATUS_COUNT 17

/* "NOT_FOUND" for 5; "UNKNOWN" for numbers outside the table. Static strings. */
const char *sbx_status_name(int code);
/* Short description; static string. */
const char *sbx_status_desc(int code);
/* Parses a canonical name ("NOT_FOUND", case-insensitive) or a number; -1 if neither. */
int sbx_status_parse(const char *s);
/* Maps a negative or positive errno from a system call to the gRPC status a caller should see
 * (ENOENT -> NOT_FOUND, EACCES/EPERM/EROFS -> PERMISSION_DENIED, ENOSPC/EDQUOT/EMFILE ->
 * RESOURCE_EXHAUSTED, EEXIST -> ALREADY_EXISTS, EINVAL/ENAMETOOLONG -> INVALID_ARGUMENT ...). */
int sbx_status_from_errno(int err);

#endif
