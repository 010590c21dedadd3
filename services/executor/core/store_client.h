/* store_client.h: the executor's calls to sbx-store (a service principal acting for each
 * tenant). The tenant travels in `x-sbx-tenant` metadata, which the gRPC layer sets per channel,
 * so this keeps one channel per tenant (created on first use, at most STORECLI_MAX_TENANTS; the
 * least recently used one is closed beyond that). Records go out as the outbox stored them (no
 * re-packing); cache lookups read this executor's own writes: records still in the outbox are
 * given a moment to land first. Thread-safe. */
#ifndef SBX_EXEC_STORE_CLIENT_H
#define SBX_EXEC_STORE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"
#include "sbx/v1/store.pb-c.h"

#define STORECLI_MAX_TENANTS 256

typedef struct sbx_storecli sbx_storecli;

/* target "HOST:PORT"; api_key may be NULL (a store without --api-keys on loopback). Strings are
 * copied. Returns NULL on ENOMEM. */
sbx_storecli *sbx_storecli_new(const char *target, const char *api_key);
void sbx_storecli_free(sbx_storecli *sc); /* NULL is harmless */
/* The outbox whose records lookups must see (read-your-writes); NULL = none. Set it before the
 * first lookup (it is read without a lock). The outbox must outlive the lookups. */
void sbx_storecli_set_outbox(sbx_storecli *sc, sbx_outbox *ob);

/* RecordExecution for `tenant` of a packed RecordExecutionRequest, sent as it is. One attempt
 * (the outbox retries). Returns the gRPC status code (INVALID_ARGUMENT when req is not protobuf
 * wire format); the message (if any) goes to err. */
int sbx_storecli_record(sbx_storecli *sc, const char *tenant, const uint8_t *req, size_t len,
                        int64_t deadline_ms, char *err, size_t errlen);

/* GetCachedResult: returns the status code; on OK *out is the response (free with
 * protobuf_c_message_free_unpacked). One attempt, bounded by deadline_ms, after up to
 * min(deadline_ms / 2, 200) ms for the outbox to deliver what it holds (skipped while the store
 * is failing: the lookup would fail too). */
int sbx_storecli_cache_get(sbx_storecli *sc, const char *tenant, const char *project_id,
                           const char *command_key, int64_t deadline_ms,
                           Sbx__V1__GetCachedResultResponse **out, char *err, size_t errlen);

#endif
