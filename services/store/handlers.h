/* handlers.h: sbx.v1.StateStore on the storage engine: one handler per RPC of
 * proto/sbx/v1/store.proto, registered through the method table of common/rpc_server.h. */
#ifndef SBX_STORE_HANDLERS_H
#define SBX_STORE_HANDLERS_H

#include "rpc_server.h"
#include "storedb.h"

/* The StateStore service bound to db: every RPC with its streaming kind, flags (SBX_RUN_INLINE
 * for the fast reads, and for the writes the committer completes when db commits in GROUP
 * mode or is NULL; SBX_SERVICE_ONLY for Checkpoint) and handler. The returned definition is
 * static storage: one store per process (a later call rebinds it to another db). */
const sbx_service_def *sbx_store_service(sdb *db);

/* Largest response a list handler builds (bytes); pages end early, with a token, beyond it. */
#define SBX_STORE_RESPONSE_BUDGET (3u << 20)
/* How often a WatchExecutions stream re-checks cancellation and project deletion (ms). */
#define SBX_STORE_WATCH_POLL_MS 200

#endif
