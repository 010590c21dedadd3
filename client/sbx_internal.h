/* sbx_internal.h: what the files of libsbx share and nobody else sees (sbx__ prefix): the client
 * handle's layout, routing, the unary/stream call helpers with retry, error construction and
 * small string/byte helpers. Protobuf and the common/ RPC layer appear only below this line. */
#ifndef SBX_INTERNAL_H
#define SBX_INTERNAL_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>

#include "backoff.h"
#include "rpc_client.h"
#include "sbx.h"

#define SBX__DEFAULT_EXECUTOR "127.0.0.1:50051"
#define SBX__DEFAULT_STORE "127.0.0.1:50052"
#define SBX__KV_ROUTE_KEY "kv"

typedef struct sbx__shard {
    char *addr;
    sbx_chan *ch;
} sbx__shard;

struct sbx_client {
    sbx__shard *shards[2]; /* indexed by sbx_service */
    const char **addrs[2]; /* the same addresses as a plain array, for sbx_rendezvous_pick */
    size_t n[2];
    int64_t deadline_ms; /* unary default; 0 = none */
    sbx_backoff backoff;
    pthread_mutex_t mu; /* guards seed */
    uint64_t seed;
};

/* ---- errors (error.c) */
sbx_error *sbx__error_rpc(const sbx_rpc_result *res, int code, const char *target);
/* errno (positive) to a status, message "<what>: strerror". */
sbx_error *sbx__error_errno(int err, const char *what);
sbx_error *sbx__error_oom(void);

/* ---- routing (client.c) */
size_t sbx__shard_for(const sbx_client *c, sbx_service svc, const char *key);

/* ---- calls (call.c) */
/* Unary call to one shard. idempotent: retry UNAVAILABLE with backoff within the deadline.
 * On success *resp is set (free with protobuf_c_message_free_unpacked). */
sbx_error *sbx__unary(sbx_client *c, sbx_service svc, size_t shard, const char *method,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                      ProtobufCMessage **resp, bool idempotent);
/* Same, routed by key (project id, or SBX__KV_ROUTE_KEY). */
sbx_error *sbx__unary_key(sbx_client *c, sbx_service svc, const char *key, const char *method,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                          ProtobufCMessage **resp, bool idempotent);
/* Sleeps before retry attempt + 1; returns false when attempts are used up or the absolute
 * monotonic deadline (ms, 0 = none) would pass. */
bool sbx__backoff_wait(sbx_client *c, int attempt, int64_t deadline_abs_ms);
/* After a failed attempt of a stream call (code != OK): true when it should be made again
 * (UNAVAILABLE, retryable, and a backoff was slept within the deadline); false with *e set to
 * the call's error, its attempts recorded. Clears res either way. */
bool sbx__stream_retry(sbx_client *c, sbx_rpc_result *res, int code, const char *addr,
                       bool retryable, int attempt, int64_t deadline_abs_ms, sbx_error **e);
int64_t sbx__mono_ms(void);
int64_t sbx__now_ms(void);

/* ---- helpers (util.c) */
char *sbx__strdup(const char *s);              /* NULL -> "" copy */
uint8_t *sbx__memdup(const void *p, size_t n); /* always NUL-terminated; NULL on OOM */
/* Shell-quoted join of argv ("echo 'a b'"). Caller frees. */
char *sbx__join_argv(const char *const *argv, size_t argc);
/* Fills buf with random bytes from the kernel; 0 or -1. */
int sbx__random(void *buf, size_t n);
/* Splits "K=V" into a map entry; -1 when there is no '=' or the key is empty. */
int sbx__split_env(const char *kv, char **key, char **value);
/* Builds protobuf-c map entries from "K=V" strings (entries allocated with malloc, keys and
 * values point into a malloc'd copy). Free with sbx__env_free. Returns -1 on a bad entry. */
typedef struct sbx__kvpair {
    ProtobufCMessage base; /* unused: layout prefix of generated map-entry structs */
    char *key;
    char *value;
} sbx__kvpair;
int sbx__env_entries(const char *const *env, size_t n, const ProtobufCMessageDescriptor *d,
                     void ***out);
void sbx__env_free(void **entries, size_t n);
const char *sbx__nz(const char *s); /* NULL -> "" */

#endif
