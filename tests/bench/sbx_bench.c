/* sbx_bench.c: sbx-bench, a ghz-like load generator on sbx's gRPC layer.
 *   sbx-bench --target HOST:PORT (--scenario NAME | --method /pkg.Svc/M --data-file F)
 *             [-c N] [-n N | -z SECONDS] [--warmup S] [--threads N] [--metadata k=v]...
 *             [--api-key K] [--tenant T] [--deadline-ms N] [--json] [--name LABEL]
 *   sbx-bench --scenario mixed ...       (many projects through libsbx: bench_mixed.c)
 *   sbx-bench --serve-echo HOST:PORT     (the bare gRPC C core echo baseline)
 *   sbx-bench --list-scenarios
 * Prints rps, a status histogram and p50/p90/p99/p99.9/max latency, or one JSON object. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_load.h"
#include "status.h"
#include "bench_scenarios.h"
#include "bench_mixed.h"
#include "sbx.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: sbx-bench --target HOST:PORT (--scenario NAME | --method PATH --data-file FILE)\n"
        "                 [-c CONCURRENCY] [-n TOTAL | -z SECONDS] [--warmup SECONDS] [--threads N]\n"
        "                 [--metadata KEY=VALUE]... [--api-key KEY] [--tenant T] [--deadline-ms N]\n"
        "                 [--json] [--name LABEL]\n"
        "       sbx-bench --scenario mixed [--executor A,B] [--store A,B,C] [--projects N]\n"
        "                 [-c N] [-z SECONDS | -n LOOPS] [--prefix P] [--acked FILE] [--check] [--json]\n"
        "       sbx-bench --serve-echo HOST:PORT\n"
        "       sbx-bench --list-scenarios\n");
}

static int num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || d < lo || d > hi) {
        fprintf(stderr, "sbx-bench: %s: '%s' is not a number in %g..%g\n", flag, v ? v : "", lo,
                hi);
        exit(2);
    }
    *out = d;
    return 0;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "sbx-bench: --data-file: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + *len, 1, cap - *len, f);
        if (r == 0)
            break;
        *len += r;
    }
    fclose(f);
    return buf;
}

/* --scenario mixed drives both services through libsbx instead of one method on one target. */
static int is_mixed(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--scenario") && !strcmp(argv[i + 1], "mixed"))
            return 1;
    return 0;
}

static int mixed_main(int argc, char **argv)
{
    sbx_mixed_opts mo;
    int check;
    sbx_mixed_parse(argc - 1, argv + 1, &mo, &check);
    sbx_global_init();
    int rc = check ? sbx_mixed_check(&mo) : sbx_mixed_run(&mo);
    sbx_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    if (is_mixed(argc, argv))
        return mixed_main(argc, argv);
    sbx_load_opts o = {.concurrency = 1, .threads = 1, .total = 0, .duration_s = 0};
    const char *scenario = NULL, *data_file = NULL, *name = NULL, *api_key = NULL, *tenant = NULL;
    int json = 0;
    sbx_load_md md[32];
    size_t nmd = 0;
    char authz[512];
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE() (i++, v)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--serve-echo")) {
            if (!v) {
                usage(stderr);
                return 2;
            }
            return sbx_echo_serve(v);
        } else if (!strcmp(a, "--list-scenarios")) {
            sbx_bench_list_scenarios(stdout);
            return 0;
        } else if (!strcmp(a, "--target")) {
            o.target = TAKE();
        } else if (!strcmp(a, "--method")) {
            o.method = TAKE();
        } else if (!strcmp(a, "--scenario")) {
            scenario = TAKE();
        } else if (!strcmp(a, "--data-file")) {
            data_file = TAKE();
        } else if (!strcmp(a, "-c") || !strcmp(a, "--concurrency")) {
            num(a, TAKE(), 1, 100000, &d);
            o.concurrency = (int)d;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--total")) {
            num(a, TAKE(), 1, 1e12, &d);
            o.total = (int64_t)d;
        } else if (!strcmp(a, "-z") || !strcmp(a, "--duration")) {
            num(a, TAKE(), 0.01, 86400, &o.duration_s);
        } else if (!strcmp(a, "--warmup")) {
            num(a, TAKE(), 0, 3600, &o.warmup_s);
        } else if (!strcmp(a, "--threads")) {
            num(a, TAKE(), 1, 64, &d);
            o.threads = (int)d;
        } else if (!strcmp(a, "--deadline-ms")) {
            num(a, TAKE(), 0, 1e9, &d);
            o.deadline_ms = (int64_t)d;
        } else if (!strcmp(a, "--metadata")) {
            const char *kv = TAKE();
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || nmd >= 30) {
                fprintf(stderr, "sbx-bench: --metadata: expected KEY=VALUE\n");
                return 2;
            }
            md[nmd].key = strndup(kv, (size_t)(eq - kv));
            md[nmd].value = eq + 1;
            nmd++;
        } else if (!strcmp(a, "--api-key")) {
            api_key = TAKE();
        } else if (!strcmp(a, "--tenant")) {
            tenant = TAKE();
        } else if (!strcmp(a, "--tls-ca")) {
            o.tls_ca = TAKE();
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--name")) {
            name = TAKE();
        } else {
            fprintf(stderr, "sbx-bench: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (i >= argc) {
            fprintf(stderr, "sbx-bench: %s needs a value\n", a);
            return 2;
        }
    }
    if (!o.target || (!scenario && (!o.method || !data_file)) || (!o.total && o.duration_s <= 0)) {
        fprintf(
            stderr,
            "sbx-bench: need --target, a request (--scenario or --method + --data-file), and -n or -z\n");
        usage(stderr);
        return 2;
    }
    if (api_key) {
        snprintf(authz, sizeof authz, "Bearer %s", api_key);
        md[nmd].key = "authorization";
        md[nmd++].value = authz;
    }
    if (tenant) {
        md[nmd].key = "x-sbx-tenant";
        md[nmd++].value = tenant;
    }
    o.md = md;
    o.n_md = nmd;
    sbx_bench_reqs reqs = {0};
    if (scenario) {
        if (sbx_bench_build(scenario, &reqs) != 0) {
            fprintf(stderr, "sbx-bench: --scenario: unknown scenario '%s' (see --list-scenarios)\n",
                    scenario);
            return 2;
        }
        if (!o.method)
            o.method = reqs.method;
    } else {
        size_t len;
        unsigned char *b = read_file(data_file, &len);
        sbx_bench_reqs_add(&reqs, b, len);
        free(b);
    }
    o.reqs = (const uint8_t *const *)reqs.bufs;
    o.req_lens = reqs.lens;
    o.n_reqs = reqs.n;
    sbx_load_result r;
    if (sbx_load_run(&o, &r) != 0) {
        fprintf(stderr, "sbx-bench: %s\n", r.first_error);
        return 1;
    }
    uint64_t ok = r.codes[0];
    if (json) {
        printf(
            "{\"name\":\"%s\",\"target\":\"%s\",\"method\":\"%s\",\"concurrency\":%d,\"threads\":%d,"
            "\"count\":%llu,\"ok\":%llu,\"elapsed_s\":%.3f,\"rps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
            "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,\"codes\":{",
            name ? name : "", o.target, o.method, o.concurrency, o.threads,
            (unsigned long long)r.count, (unsigned long long)ok, r.elapsed_s, r.rps, r.p50_us,
            r.p90_us, r.p99_us, r.p999_us, r.max_us, r.mean_us);
        int first = 1;
        for (int c = 0; c < 17; c++)
            if (r.codes[c]) {
                printf("%s\"%s\":%llu", first ? "" : ",", sbx_status_name(c),
                       (unsigned long long)r.codes[c]);
                first = 0;
            }
        printf("}}\n");
    } else {
        printf("%s%s%s %s c=%d threads=%d\n", name ? "[" : "", name ? name : "", name ? "]" : "",
               o.method, o.concurrency, o.threads);
        printf("  calls %llu in %.2fs  rps %.0f\n", (unsigned long long)r.count, r.elapsed_s,
               r.rps);
        printf("  latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  mean %.0f\n",
               r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us, r.mean_us);
        printf("  status:");
        for (int c = 0; c < 17; c++)
            if (r.codes[c])
                printf(" %s=%llu", sbx_status_name(c), (unsigned long long)r.codes[c]);
        printf("\n");
        if (r.first_error[0])
            printf("  first error: %s\n", r.first_error);
    }
    sbx_bench_reqs_free(&reqs);
    for (size_t i = 0; i < nmd; i++)
        if (md[i].key != (const char *)"authorization" && md[i].key != (const char *)"x-sbx-tenant")
            free((char *)md[i].key);
    return ok == r.count && r.count > 0 ? 0 : 1;
}
