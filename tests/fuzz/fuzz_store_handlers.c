/* fuzz_store_handlers.c: the sbx.v1.StateStore handlers (services/store/handlers*.c) fed with
 * hostile requests, the way common/rpc_server.c would call them but through a test context
 * (sbx_ctx_new_test) over a scratch RocksDB that lives for the whole run (so later inputs see
 * what earlier ones wrote). Checkpoint (service-only, writes a directory named by the request)
 * is left out. Byte 0 picks the method, byte 1 the caller (tenant, service principal), the rest
 * is the request. A handler must return a known status; an OK unary call must leave a response
 * of the method's output type that passes protobuf_c_message_check and packs; an error must
 * carry a message. WatchExecutions runs with the call already cancelled (it would wait). */
#include <ftw.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers.h"
#include "rpc_server.h"
#include "status.h"
#include "storedb.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_store_handlers: %s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u * 1024u)

static char dir[256];
static sdb *db;
static const sbx_service_def *svc;

static int64_t fixed_clock(void *arg)
{
    (void)arg;
    return 1767225600000; /* 2026-01-01: deterministic replays */
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D)
        rmdir(p);
    else
        unlink(p);
    return 0;
}

static void cleanup(void)
{
    sdb_close(db);
    db = NULL;
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    if (db)
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sbx-fuzz-store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/db", dir);
    sdb_opts o;
    sdb_opts_default(&o);
    o.path = path;
    o.sync = false;
    o.commit_mode = SDB_COMMIT_DIRECT;
    o.sweep_interval_ms = 0;
    o.block_cache_bytes = 4u << 20;
    o.clock = fixed_clock;
    char err[256];
    int rc = sdb_open(&o, &db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "fuzz_store_handlers: open %s: %s\n", path, err);
        abort();
    }
    svc = sbx_store_service(db);
    CHECK(svc && svc->desc && svc->n_methods > 0);
    atexit(cleanup);
}

static const char *const TENANTS[] = {"default", "t1", "tenant-2", "@service"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > FUZZ_MAX_INPUT)
        return 0;
    setup();
    const sbx_method *m = &svc->methods[data[0] % svc->n_methods];
    if (!m->handler || (m->flags & SBX_SERVICE_ONLY) || m->kind == SBX_CLIENT_STREAM)
        return 0;
    const ProtobufCMethodDescriptor *md =
        protobuf_c_service_descriptor_get_method_by_name(svc->desc, m->name);
    CHECK(md);
    ProtobufCMessage *req = protobuf_c_message_unpack(md->input, NULL, size - 2, data + 2);
    if (!req)
        return 0;
    sbx_ctx *ctx = sbx_ctx_new_test(TENANTS[data[1] & 3], (data[1] & 4) != 0);
    if (m->kind == SBX_SERVER_STREAM)
        sbx_ctx_test_cancel(ctx);
    ProtobufCMessage *resp = NULL;
    int rc = m->handler(ctx, req, &resp, svc->data);
    if (rc == SBX_PENDING) /* a write the committer completes */
        rc = sbx_ctx_test_wait(ctx, &resp);
    CHECK(rc >= SBX_OK && rc <= SBX_UNAUTHENTICATED);
    if (rc == SBX_OK && m->kind == SBX_UNARY) {
        CHECK(resp);
        CHECK(resp->descriptor == md->output);
        CHECK(protobuf_c_message_check(resp));
        size_t n = protobuf_c_message_get_packed_size(resp);
        uint8_t *buf = malloc(n ? n : 1);
        CHECK(buf);
        CHECK(protobuf_c_message_pack(resp, buf) == n);
        ProtobufCMessage *back = protobuf_c_message_unpack(md->output, NULL, n, buf);
        CHECK(back);
        protobuf_c_message_free_unpacked(back, NULL);
        free(buf);
    } else if (rc != SBX_OK) {
        const char *msg = sbx_ctx_error_message(ctx);
        CHECK(msg && msg[0]);
    }
    if (m->kind == SBX_SERVER_STREAM) {
        ProtobufCMessage **sent = NULL;
        size_t ns = sbx_ctx_test_sent(ctx, &sent, md->output);
        for (size_t i = 0; i < ns; i++)
            CHECK(sent[i]);
    }
    sbx_ctx_free_test(ctx);
    protobuf_c_message_free_unpacked(req, NULL);
    return 0;
}
