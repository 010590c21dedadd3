/* bench_mixed_check.c: the options of `sbx-bench --scenario mixed` and its --check pass: every
 * uncached command the load saw acknowledged ("project k" lines of --acked) must be in its
 * project's history exactly once, and no command may be there twice. Also prints how the
 * projects spread over the executors and stores, as libsbx routes them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_mixed.h"
#include "sbx.h"

#define MAX_LOOPS 1000000

static double num(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || d < lo || d > hi) {
        fprintf(stderr, "sbx-bench: %s: '%s' is not a number in %g..%g\n", flag, v ? v : "", lo,
                hi);
        exit(2);
    }
    return d;
}

void sbx_mixed_parse(int argc, char **argv, sbx_mixed_opts *o, int *check)
{
    *o = (sbx_mixed_opts){.prefix = "mixed", .projects = 64, .duration_s = 10};
    *check = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--scenario"))
            ; /* "mixed", already matched */
        else if (!strcmp(a, "--executor"))
            o->executor = v;
        else if (!strcmp(a, "--store"))
            o->store = v;
        else if (!strcmp(a, "--api-key"))
            o->api_key = v;
        else if (!strcmp(a, "--prefix"))
            o->prefix = v;
        else if (!strcmp(a, "--acked"))
            o->acked = v;
        else if (!strcmp(a, "--projects"))
            o->projects = (size_t)num(a, v, 1, 100000);
        else if (!strcmp(a, "-c"))
            o->concurrency = (size_t)num(a, v, 1, 1024);
        else if (!strcmp(a, "-z"))
            o->duration_s = num(a, v, 0.1, 86400);
        else if (!strcmp(a, "-n"))
            o->loops = (size_t)num(a, v, 1, MAX_LOOPS);
        else {
            takes = 0;
            if (!strcmp(a, "--json"))
                o->json = 1;
            else if (!strcmp(a, "--check"))
                *check = 1;
            else {
                fprintf(stderr, "sbx-bench: mixed: unknown flag '%s'\n", a);
                exit(2);
            }
        }
        if (takes && !v) {
            fprintf(stderr, "sbx-bench: %s needs a value\n", a);
            exit(2);
        }
        i += takes;
    }
    if (!o->executor)
        o->executor = getenv("SBX_EXECUTOR");
    if (!o->store)
        o->store = getenv("SBX_STORE");
    if (!o->api_key)
        o->api_key = getenv("SBX_API_KEY");
    if (!o->prefix || !*o->prefix || strlen(o->prefix) > 64) {
        fprintf(stderr, "sbx-bench: --prefix: 1..64 characters\n");
        exit(2);
    }
    if (*check && !o->acked) {
        fprintf(stderr, "sbx-bench: --check needs --acked FILE\n");
        exit(2);
    }
    if (!o->concurrency)
        o->concurrency = o->projects < 16 ? o->projects : 16;
    if (o->concurrency > o->projects)
        o->concurrency = o->projects;
}

/* counts[p][k]: how often "echo mixed-run k" is in project p's history (and acked flags). */
typedef struct proj {
    unsigned char *seen;  /* times recorded, saturating at 255 */
    unsigned char *acked; /* 1 = the load saw it acknowledged */
    size_t cap;
} proj;

static void grow(proj *p, size_t k)
{
    if (k < p->cap)
        return;
    size_t n = (k + 1) * 2;
    p->seen = realloc(p->seen, n);
    p->acked = realloc(p->acked, n);
    if (!p->seen || !p->acked) {
        fprintf(stderr, "sbx-bench: out of memory\n");
        exit(1);
    }
    memset(p->seen + p->cap, 0, n - p->cap);
    memset(p->acked + p->cap, 0, n - p->cap);
    p->cap = n;
}

static int read_acked(const sbx_mixed_opts *o, proj *ps, size_t *n_acked)
{
    FILE *f = fopen(o->acked, "r");
    if (!f) {
        fprintf(stderr, "sbx-bench: --acked: %s: %s\n", o->acked, strerror(errno));
        return -1;
    }
    char line[256];
    size_t pl = strlen(o->prefix);
    while (fgets(line, sizeof line, f)) {
        size_t p, k;
        if (strncmp(line, o->prefix, pl) || sscanf(line + pl, "-%zu %zu", &p, &k) != 2 ||
            p >= o->projects || k >= MAX_LOOPS) {
            fprintf(stderr, "sbx-bench: --acked: bad line '%s'\n", line);
            fclose(f);
            return -1;
        }
        grow(&ps[p], k);
        ps[p].acked[k] = 1;
        (*n_acked)++;
    }
    fclose(f);
    return 0;
}

/* Counts the project's "echo mixed-run K" records over every history page. */
static sbx_error *scan_history(sbx_client *c, const char *project, proj *p)
{
    char *token = NULL;
    for (;;) {
        sbx_history_query q = {.limit = 1000, .page_token = token};
        sbx_history_page *pg = NULL;
        sbx_error *e = sbx_history_list(c, project, &q, &pg);
        free(token);
        token = NULL;
        if (e)
            return e;
        for (size_t i = 0; i < pg->count; i++) {
            size_t k;
            char tail;
            const char *cmd = pg->records[i].command;
            if (cmd && sscanf(cmd, "echo mixed-run %zu%c", &k, &tail) == 1 && k < MAX_LOOPS) {
                grow(p, k);
                if (p->seen[k] < 255)
                    p->seen[k]++;
            }
        }
        if (pg->next_page_token && *pg->next_page_token)
            token = strdup(pg->next_page_token);
        sbx_history_page_free(pg);
        if (!token)
            return NULL;
    }
}

static void print_spread(sbx_client *c, const sbx_mixed_opts *o, sbx_service svc, const char *what)
{
    size_t n = sbx_client_addr_count(c, svc);
    printf("projects per %s:", what);
    for (size_t i = 0; i < n; i++) {
        const char *addr = sbx_client_addr(c, svc, i);
        size_t cnt = 0;
        for (size_t p = 0; p < o->projects; p++) {
            char project[128];
            snprintf(project, sizeof project, "%s-%03zu", o->prefix, p);
            cnt += !strcmp(sbx_client_route(c, svc, project), addr);
        }
        printf(" %s=%zu", addr, cnt);
    }
    printf("\n");
}

int sbx_mixed_check(const sbx_mixed_opts *o)
{
    sbx_config cfg = {.executor = o->executor, .store = o->store, .api_key = o->api_key};
    sbx_client *c = NULL;
    sbx_error *e = sbx_client_new(&cfg, &c);
    if (e) {
        fprintf(stderr, "sbx-bench: %s\n", e->message);
        sbx_error_free(e);
        return 2;
    }
    proj *ps = calloc(o->projects, sizeof *ps);
    size_t n_acked = 0, found = 0, missing = 0, dups = 0, extra = 0;
    int rc = !ps || read_acked(o, ps, &n_acked) ? 1 : 0;
    for (size_t p = 0; rc == 0 && p < o->projects; p++) {
        char project[128];
        snprintf(project, sizeof project, "%s-%03zu", o->prefix, p);
        if ((e = scan_history(c, project, &ps[p]))) {
            fprintf(stderr, "sbx-bench: history of %s: %s: %s\n", project, e->name, e->message);
            sbx_error_free(e);
            rc = 1;
            break;
        }
        for (size_t k = 0; k < ps[p].cap; k++) {
            if (ps[p].seen[k] > 1) {
                dups++;
                fprintf(stderr, "duplicate: %s 'echo mixed-run %zu' recorded %d times\n", project,
                        k, ps[p].seen[k]);
            }
            if (ps[p].acked[k] && !ps[p].seen[k]) {
                missing++;
                fprintf(stderr, "lost: %s 'echo mixed-run %zu' was acknowledged, not in history\n",
                        project, k);
            }
            found += ps[p].acked[k] && ps[p].seen[k];
            extra += !ps[p].acked[k] && ps[p].seen[k];
        }
    }
    print_spread(c, o, SBX_SERVICE_EXECUTOR, "executor");
    print_spread(c, o, SBX_SERVICE_STORE, "store");
    printf("check: %zu acknowledged, %zu in history once, %zu lost, %zu duplicated, %zu recorded "
           "without an acknowledgement (the client saw the call fail)\n",
           n_acked, found, missing, dups, extra);
    for (size_t p = 0; ps && p < o->projects; p++) {
        free(ps[p].seen);
        free(ps[p].acked);
    }
    free(ps);
    sbx_client_free(c);
    return rc || missing || dups ? 1 : 0;
}
