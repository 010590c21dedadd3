/* pb_raw.h: a protobuf-c message that packs to bytes already packed, so the outbox's stored
 * RecordExecutionRequest reaches the store as it was written (no unpack and re-pack): the bytes
 * are split at their top-level field boundaries into the message's unknown fields, which
 * protobuf-c packs verbatim after the (unset) known ones.
 *
 * Threads: none; the message points into the caller's bytes, which must outlive it. */
#ifndef SBX_EXEC_PB_RAW_H
#define SBX_EXEC_PB_RAW_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* m: a message initialised with its __INIT (no field set). Returns 0 (release with
 * sbx_pb_raw_clear), -EBADMSG when bytes are not protobuf wire format (a truncated field, a
 * group, field number 0), -ENOMEM. */
int sbx_pb_raw_wrap(ProtobufCMessage *m, const uint8_t *bytes, size_t len);
/* Frees what sbx_pb_raw_wrap allocated. */
void sbx_pb_raw_clear(ProtobufCMessage *m);

#endif
