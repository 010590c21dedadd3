/* pbcheck.h: checks a serialized protobuf message against its descriptor for NUL bytes inside
 * `string` fields, at any depth. protobuf-c unpacks strings into NUL-terminated char *, so an
 * embedded NUL would silently cut a key or path short; the layer rejects such requests with
 * INVALID_ARGUMENT naming the field before any handler runs. */
#ifndef SBX_PBCHECK_H
#define SBX_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Returns 0 when no string field holds a NUL byte (or the bytes do not parse: decoding reports
 * that), 1 when one does, writing its dotted field path ("record.argv") into path. */
int sbx_pb_find_nul(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                    char *path, size_t pathlen);

#endif
