/* fuzz_proto.c: protobuf-c decoding of every request message of the public services
 * (sbx.v1.StateStore and sbx.v1.SandboxExecutor), the first thing a handler's bytes go
 * through. The first input byte picks the method (its input descriptor, from the generated
 * service descriptors), the rest is the request. A message that decodes must pass
 * protobuf_c_message_check, pack to exactly get_packed_size bytes, and decode again to a
 * message that packs to the same bytes (a stable round trip; see fuzz_pb.h for the one
 * protobuf-c quirk this allows). */
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/v1/executor.pb-c.h"
#include "sbx/v1/store.pb-c.h"
#include "fuzz_pb.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_proto: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const ProtobufCServiceDescriptor *const SERVICES[] = {
    &sbx__v1__state_store__descriptor,
    &sbx__v1__sandbox_executor__descriptor,
};

static const ProtobufCMessageDescriptor *pick(uint8_t b)
{
    unsigned total = 0;
    for (size_t s = 0; s < sizeof SERVICES / sizeof *SERVICES; s++)
        total += SERVICES[s]->n_methods;
    unsigned i = b % total;
    for (size_t s = 0; s < sizeof SERVICES / sizeof *SERVICES; s++) {
        if (i < SERVICES[s]->n_methods)
            return SERVICES[s]->methods[i].input;
        i -= SERVICES[s]->n_methods;
    }
    return NULL;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(buf);
    size_t w = protobuf_c_message_pack(m, buf);
    CHECK(w == n);
    *len = n;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = pick(data[0]);
    CHECK(d && d->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m)
        return 0;
    CHECK(m->descriptor == d);
    CHECK(protobuf_c_message_check(m));
    size_t n1, n2;
    uint8_t *b1 = pack(m, &n1);
    bool field0 = fuzz_pb_has_field0(m);
    protobuf_c_message_free_unpacked(m, NULL);

    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n1, b1);
    if (!m2 && field0) { /* protobuf-c's own asymmetry, see fuzz_pb.h */
        free(b1);
        return 0;
    }
    CHECK(m2); /* what we packed must decode */
    uint8_t *b2 = pack(m2, &n2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(b1);
    free(b2);
    return 0;
}
