/* rpc_util.h: small pieces both halves of the gRPC layer use (internal to common/): packing a
 * protobuf-c message into a byte buffer, and reading a PEM file into memory. */
#ifndef SBX_RPC_UTIL_H
#define SBX_RPC_UTIL_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* A new byte buffer holding m packed (the caller destroys it). */
grpc_byte_buffer *sbx_rpc_pack(const ProtobufCMessage *m);
/* The whole file, NUL-terminated, malloc'd (caller frees); NULL with "PATH: reason" in err. */
char *sbx_read_file(const char *path, char *err, size_t errlen);

#endif
