/* pb_raw.c: packed bytes as the unknown fields of a message (see pb_raw.h). The scan reads each
 * field's key (a varint: number << 3 | wire type) and skips its payload by wire type; it never
 * decodes the payload. */
#include "pb_raw.h"

#include <errno.h>
#include <stdlib.h>

/* Reads a varint of at most max_bytes at p[*i]; -EBADMSG when truncated or too long. */
static int varint(const uint8_t *p, size_t len, size_t *i, int max_bytes, uint64_t *v)
{
    *v = 0;
    for (int k = 0; k < max_bytes && *i < len; k++) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80))
            return 0;
    }
    return -EBADMSG;
}

/* The payload length of a field starting at p[*i] (after its key); moves *i past it. */
static int skip_payload(const uint8_t *p, size_t len, size_t *i, unsigned wire)
{
    uint64_t v;
    size_t n;
    switch (wire) {
    case PROTOBUF_C_WIRE_TYPE_VARINT:
        return varint(p, len, i, 10, &v);
    case PROTOBUF_C_WIRE_TYPE_64BIT:
        n = 8;
        break;
    case PROTOBUF_C_WIRE_TYPE_32BIT:
        n = 4;
        break;
    case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
        if (varint(p, len, i, 10, &v) < 0 || v > len)
            return -EBADMSG;
        n = (size_t)v;
        break;
    default: /* groups are not used by proto3 */
        return -EBADMSG;
    }
    if (len - *i < n)
        return -EBADMSG;
    *i += n;
    return 0;
}

/* Scans one field at p[*i] into f (data: after the key, up to the field's end). */
static int scan_field(const uint8_t *p, size_t len, size_t *i, ProtobufCMessageUnknownField *f)
{
    uint64_t key;
    if (varint(p, len, i, 5, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return -EBADMSG;
    size_t start = *i;
    if (skip_payload(p, len, i, (unsigned)(key & 7)) < 0)
        return -EBADMSG;
    f->tag = (uint32_t)(key >> 3);
    f->wire_type = (ProtobufCWireType)(key & 7);
    f->data = (uint8_t *)p + start;
    f->len = *i - start;
    return 0;
}

int sbx_pb_raw_wrap(ProtobufCMessage *m, const uint8_t *bytes, size_t len)
{
    size_t nf = 0, cap = 0;
    ProtobufCMessageUnknownField *v = NULL;
    for (size_t i = 0; i < len;) {
        if (nf == cap) {
            cap = cap ? cap * 2 : 8;
            ProtobufCMessageUnknownField *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
        }
        if (scan_field(bytes, len, &i, &v[nf]) < 0) {
            free(v);
            return -EBADMSG;
        }
        nf++;
    }
    m->n_unknown_fields = (unsigned)nf;
    m->unknown_fields = v;
    return 0;
}

void sbx_pb_raw_clear(ProtobufCMessage *m)
{
    free(m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
}
