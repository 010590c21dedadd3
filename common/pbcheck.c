/* pbcheck.c: a minimal protobuf wire walker for sbx_pb_find_nul. */
#include "pbcheck.h"

#include <stdio.h>
#include <string.h>

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                char *path, size_t pathlen, size_t used, int depth)
{
    if (depth > 32)
        return 0;
    while (p < end) {
        uint64_t key;
        if (varint(&p, end, &key) != 0)
            return 0;
        unsigned wt = (unsigned)(key & 7);
        uint32_t num = (uint32_t)(key >> 3);
        uint64_t v;
        switch (wt) {
        case 0:
            if (varint(&p, end, &v) != 0)
                return 0;
            break;
        case 1:
            if (end - p < 8)
                return 0;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return 0;
            p += 4;
            break;
        case 2: {
            if (varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return 0;
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
            if (f && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
                int n = snprintf(path + used, pathlen > used ? pathlen - used : 0, "%s%s",
                                 used ? "." : "", f->name);
                size_t u2 = used + (n > 0 ? (size_t)n : 0);
                if (u2 >= pathlen)
                    u2 = pathlen ? pathlen - 1 : 0;
                if (f->type == PROTOBUF_C_TYPE_STRING) {
                    if (memchr(p, 0, (size_t)v))
                        return 1;
                } else if (walk(f->descriptor, p, p + v, path, pathlen, u2, depth + 1)) {
                    return 1;
                }
                if (pathlen)
                    path[used] = '\0';
            }
            p += v;
            break;
        }
        default:
            return 0; /* groups or garbage: leave it to the decoder */
        }
    }
    return 0;
}

int sbx_pb_find_nul(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                    char *path, size_t pathlen)
{
    if (pathlen)
        path[0] = '\0';
    return walk(d, data, data + len, path, pathlen, 0, 0);
}
