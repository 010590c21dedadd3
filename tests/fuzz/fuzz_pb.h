/* fuzz_pb.h: protobuf-c helpers shared by the fuzz targets that decode messages. */
#ifndef SBX_FUZZ_PB_H
#define SBX_FUZZ_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

/* True when m or any message inside it kept an unknown field numbered 0. protobuf-c 1.4.1
 * rejects a one-byte tag of field 0 but accepts a longer encoding of it ("80 00"), keeps it as
 * an unknown field and packs it back as a one-byte 0 tag, which it then rejects: a round trip
 * through protobuf-c that fails with no bug in sbx. The round-trip checks allow exactly that. */
static inline bool fuzz_pb_has_field0(const ProtobufCMessage *m)
{
    if (!m)
        return false;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const uint8_t *base = (const uint8_t *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (fuzz_pb_has_field0(arr[k]))
                    return true;
        } else if (fuzz_pb_has_field0(*(ProtobufCMessage *const *)(base + f->offset))) {
            return true;
        }
    }
    return false;
}

#endif
