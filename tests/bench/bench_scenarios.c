/* bench_scenarios.c: the request sets behind --scenario. etcd's PutRequest (key = 1, value = 2)
 * and RangeRequest (key = 1) share the wire layout of our KvSetRequest / KvGetRequest, so the
 * same bytes drive both servers. */
#include "bench_scenarios.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "sbx/v1/store.pb-c.h"

#define DISTINCT 4096

void sbx_bench_reqs_add(sbx_bench_reqs *r, const uint8_t *buf, size_t len)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->bufs = realloc(r->bufs, r->cap * sizeof *r->bufs);
        r->lens = realloc(r->lens, r->cap * sizeof *r->lens);
        if (!r->bufs || !r->lens)
            abort();
    }
    r->bufs[r->n] = malloc(len ? len : 1);
    if (len)
        memcpy(r->bufs[r->n], buf, len);
    r->lens[r->n++] = len;
}

static void add_msg(sbx_bench_reqs *r, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    protobuf_c_message_pack(m, b);
    sbx_bench_reqs_add(r, b, n);
    free(b);
}

void sbx_bench_reqs_free(sbx_bench_reqs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->bufs[i]);
    free(r->bufs);
    free(r->lens);
    memset(r, 0, sizeof *r);
}

static const struct {
    const char *name, *method, *help;
} scen[] = {
    {"health", "/grpc.health.v1.Health/Check", "health Check of service \"\""},
    {"echo", "/sbx.bench.Echo/Echo", "64 bytes to the bare echo server (sbx-bench --serve-echo)"},
    {"kv-set", "/sbx.v1.StateStore/Set", "KV Set of 100-byte values over 4096 keys"},
    {"kv-get", "/sbx.v1.StateStore/Get",
     "KV Get over keys bench-0..1023 (load them with kv-set first)"},
    {"etcd-put", "/etcdserverpb.KV/Put", "etcd Put, same bytes as kv-set"},
    {"etcd-range", "/etcdserverpb.KV/Range", "etcd Range, same bytes as kv-get"},
    {"append", "/sbx.v1.StateStore/AppendExecution", "AppendExecution to project bench"},
    {"record", "/sbx.v1.StateStore/RecordExecution",
     "RecordExecution (history + cache) to project bench"},
    {"get-project", "/sbx.v1.StateStore/GetProject", "GetProject of project bench"},
    {"get-cached", "/sbx.v1.StateStore/GetCachedResult",
     "GetCachedResult over bench-cmd-0..1023 of project bench"},
};

void sbx_bench_list_scenarios(FILE *out)
{
    for (size_t i = 0; i < sizeof scen / sizeof scen[0]; i++)
        fprintf(out, "%-12s %-40s %s\n", scen[i].name, scen[i].method, scen[i].help);
}

static void fill_record(Sbx__V1__ExecutionRecord *rec, int i, char *cmd, size_t cmdlen)
{
    snprintf(cmd, cmdlen, "bench-cmd-%d", i % 1024);
    rec->command = cmd;
    rec->command_key = cmd;
    rec->exit_code = 0;
    rec->stdout.data = (uint8_t *)"ok\n";
    rec->stdout.len = 3;
    rec->started_at_unix_ms = 1700000000000LL + i;
    rec->duration_us = 1500;
}

int sbx_bench_build(const char *name, sbx_bench_reqs *r)
{
    size_t k = 0;
    for (; k < sizeof scen / sizeof scen[0]; k++)
        if (!strcmp(scen[k].name, name))
            break;
    if (k == sizeof scen / sizeof scen[0])
        return -1;
    r->method = scen[k].method;
    char key[64], cmd[64];
    static uint8_t value[100];
    memset(value, 'v', sizeof value);
    if (!strcmp(name, "health")) {
        Grpc__Health__V1__HealthCheckRequest m = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        add_msg(r, &m.base);
    } else if (!strcmp(name, "echo")) {
        uint8_t b[64];
        memset(b, 'e', sizeof b);
        sbx_bench_reqs_add(r, b, sizeof b);
    } else if (!strcmp(name, "kv-set") || !strcmp(name, "etcd-put")) {
        for (int i = 0; i < DISTINCT; i++) {
            Sbx__V1__KvSetRequest m = SBX__V1__KV_SET_REQUEST__INIT;
            snprintf(key, sizeof key, "bench-%d", i);
            m.key = key;
            m.value.data = value;
            m.value.len = sizeof value;
            add_msg(r, &m.base);
        }
    } else if (!strcmp(name, "kv-get") || !strcmp(name, "etcd-range")) {
        for (int i = 0; i < 1024; i++) {
            Sbx__V1__KvGetRequest m = SBX__V1__KV_GET_REQUEST__INIT;
            snprintf(key, sizeof key, "bench-%d", i);
            m.key = key;
            add_msg(r, &m.base);
        }
    } else if (!strcmp(name, "append")) {
        for (int i = 0; i < DISTINCT; i++) {
            Sbx__V1__ExecutionRecord rec = SBX__V1__EXECUTION_RECORD__INIT;
            fill_record(&rec, i, cmd, sizeof cmd);
            Sbx__V1__AppendExecutionRequest m = SBX__V1__APPEND_EXECUTION_REQUEST__INIT;
            m.project_id = "bench";
            m.record = &rec;
            add_msg(r, &m.base);
        }
    } else if (!strcmp(name, "record")) {
        for (int i = 0; i < DISTINCT; i++) {
            Sbx__V1__ExecutionRecord rec = SBX__V1__EXECUTION_RECORD__INIT;
            fill_record(&rec, i, cmd, sizeof cmd);
            Sbx__V1__RecordExecutionRequest m = SBX__V1__RECORD_EXECUTION_REQUEST__INIT;
            m.project_id = "bench";
            m.record = &rec;
            m.cache_ttl_s = 3600;
            add_msg(r, &m.base);
        }
    } else if (!strcmp(name, "get-project")) {
        Sbx__V1__GetProjectRequest m = SBX__V1__GET_PROJECT_REQUEST__INIT;
        m.project_id = "bench";
        add_msg(r, &m.base);
    } else if (!strcmp(name, "get-cached")) {
        for (int i = 0; i < 1024; i++) {
            Sbx__V1__GetCachedResultRequest m = SBX__V1__GET_CACHED_RESULT_REQUEST__INIT;
            m.project_id = "bench";
            snprintf(cmd, sizeof cmd, "bench-cmd-%d", i);
            m.command_key = cmd;
            add_msg(r, &m.base);
        }
    }
    return 0;
}
