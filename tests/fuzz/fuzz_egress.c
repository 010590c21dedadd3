/* fuzz_egress.c: what a sandbox sends the egress proxies (services/executor/egress), which are
 * hostile input: an HTTP proxy request head (parsed; a forwarded one rewritten for the origin,
 * which must stay a well-formed head without proxy headers), a SOCKS5 greeting + request, and
 * an egress pattern (policy.c), whose parse must either fail with a reason or round-trip.
 *
 * Input: byte 0 selects (0 HTTP, 1 SOCKS, 2 pattern list), the rest is the data. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_int.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_egress: check failed: %s\n", #c);                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void http(const uint8_t *d, size_t n)
{
    eg_http_req r;
    int status = 0;
    char why[200];
    int rc = sbx__eg_http_parse((const char *)d, n, EG_HEAD_MAX, &r, &status, why, sizeof why);
    if (rc < 0) {
        CHECK(status == 400 || status == 431);
        return;
    }
    if (rc == 0)
        return;
    CHECK((size_t)rc <= n && r.port > 0 && r.host[0]);
    if (r.kind != EG_HTTP_FORWARD)
        return;
    char *out = NULL;
    size_t ol = 0;
    if (sbx__eg_http_rewrite((const char *)d, &r, &out, &ol) < 0)
        return;
    CHECK(ol >= 4 && memcmp(out + ol - 4, "\r\n\r\n", 4) == 0);
    CHECK(!memmem(out, ol, "\r\nProxy-Authorization:", 22));
    free(out);
}

static void socks(const uint8_t *d, size_t n)
{
    bool noauth;
    int g = sbx__eg_socks_greeting(d, n, &noauth);
    if (g <= 0)
        return;
    eg_http_req r;
    int rep;
    int rc = sbx__eg_socks_request(d + g, n - (size_t)g, &r, &rep);
    if (rc > 0)
        CHECK(r.port > 0 && r.host[0] && strlen(r.host) <= EG_NAME_MAX);
}

static void patterns(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = 0;
    sbx_egress_policy *p = NULL;
    char err[400];
    if (sbx_egress_policy_from_list(s, false, "--fuzz", &p, err, sizeof err) == 0) {
        for (size_t i = 0; i < sbx_egress_policy_count(p, false); i++)
            CHECK(strlen(sbx_egress_policy_text(p, false, i)) <= SBX_EGRESS_PATTERN_MAX);
        sbx_egress_policy_unref(p);
    } else {
        CHECK(err[0]);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        http(data + 1, size - 1);
        break;
    case 1:
        socks(data + 1, size - 1);
        break;
    default:
        patterns(data + 1, size - 1);
    }
    return 0;
}
