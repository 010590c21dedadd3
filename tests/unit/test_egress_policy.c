/* test_egress_policy.c: the pure parts of services/executor/egress: pattern parsing and its
 * errors (policy.c), the always-blocked ranges (ranges.c), the two-stage verdicts with deny
 * winning, "*" covering public destinations only and --egress-allow-private openings
 * (verdict.c), and the HTTP and SOCKS5 request formats (http.c, socks.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_int.h"
#include "test_main.h"

static sbx_egress_policy *pol(const char *allow, const char *deny)
{
    const char *a[16], *d[16];
    size_t na = 0, nd = 0;
    char *ac = strdup(allow ? allow : ""), *dc = strdup(deny ? deny : ""), *save = NULL;
    for (char *t = strtok_r(ac, " ", &save); t; t = strtok_r(NULL, " ", &save))
        a[na++] = t;
    for (char *t = strtok_r(dc, " ", &save); t; t = strtok_r(NULL, " ", &save))
        d[nd++] = t;
    sbx_egress_policy *p = NULL;
    char err[256];
    int rc = sbx_egress_policy_new(a, na, d, nd, "network", &p, err, sizeof err);
    if (rc != 0)
        fail_msg("policy %s / %s: %s", allow, deny, err);
    free(ac);
    free(dc);
    return p;
}

static void test_patterns_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int kind;
        uint16_t port;
        unsigned prefix;
    } ok[] = {
        {"example.com", PAT_NAME, 0, 0},
        {"Example.COM.:443", PAT_NAME, 443, 0},
        {"*.npmjs.org", PAT_SUFFIX, 0, 0},
        {"*", PAT_ANY, 0, 0},
        {"*:443", PAT_ANY, 443, 0},
        {"10.0.0.0/8", PAT_NET, 0, 8},
        {"10.1.2.3/8:8080", PAT_NET, 8080, 8},
        {"127.0.0.2", PAT_NET, 0, 32},
        {"2001:db8::1", PAT_NET, 0, 128},
        {"2001:db8::/32", PAT_NET, 0, 32},
        {"[2001:db8::1]:443", PAT_NET, 443, 128},
        {"[2001:db8::/32]:443", PAT_NET, 443, 32},
        {"my_host-1.internal", PAT_NAME, 0, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        eg_pat p;
        char why[200] = "";
        int rc = sbx__eg_pat_parse(ok[i].text, &p, why, sizeof why);
        if (rc != 0)
            fail_msg("%s: %s", ok[i].text, why);
        assert_int_equal(p.kind, ok[i].kind);
        assert_int_equal(p.port, ok[i].port);
        if (p.kind == PAT_NET)
            assert_int_equal(p.prefix, ok[i].prefix);
        assert_string_equal(p.text, ok[i].text);
        sbx__eg_pat_clear(&p);
    }
    eg_pat p;
    char why[200];
    assert_int_equal(sbx__eg_pat_parse("10.1.2.3/8", &p, why, sizeof why), 0);
    char s[64];
    sbx__eg_addr_str(&p.net, s, sizeof s);
    assert_string_equal(s, "10.0.0.0"); /* host bits cleared */
    sbx__eg_pat_clear(&p);
    assert_int_equal(sbx__eg_pat_parse("example.com", &p, why, sizeof why), 0);
    assert_string_equal(p.name, "example.com");
    sbx__eg_pat_clear(&p);
}

static void test_patterns_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",         "*.",          "a.*.com", "ex ample.com", "host:0",        "host:65536",
        "host:x",   "10.0.0.0/33", "::1/129", "[::1",         "[10.0.0.1]:80", "1.2.3",
        "exa*mple", "-/8",         "a..b",    "host:443:1",   "[::1]x",        "é.com",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eg_pat p;
        char why[200] = "";
        if (sbx__eg_pat_parse(bad[i], &p, why, sizeof why) == 0)
            fail_msg("accepted bad pattern \"%s\"", bad[i]);
        assert_true(why[0]);
    }
    char longp[300];
    memset(longp, 'a', 260);
    longp[260] = 0;
    eg_pat p;
    char why[200];
    assert_int_equal(sbx__eg_pat_parse(longp, &p, why, sizeof why), -EINVAL);
}

static void test_policy_errors_name_the_field(void **state)
{
    (void)state;
    const char *a[] = {"example.com", "*.", "ok.org"};
    sbx_egress_policy *p = NULL;
    char err[256];
    assert_int_equal(sbx_egress_policy_new(a, 3, NULL, 0, "network", &p, err, sizeof err), -EINVAL);
    assert_null(p);
    assert_non_null(strstr(err, "network.allow_out[1]"));
    assert_non_null(strstr(err, "\"*.\""));
    const char *d[] = {"10.0.0.0/99"};
    assert_int_equal(sbx_egress_policy_new(a, 1, d, 1, "network", &p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "network.deny_out[0]"));
    const char *many[SBX_EGRESS_MAX_PATTERNS + 1];
    for (size_t i = 0; i <= SBX_EGRESS_MAX_PATTERNS; i++)
        many[i] = "example.com";
    assert_int_equal(sbx_egress_policy_new(many, SBX_EGRESS_MAX_PATTERNS + 1, NULL, 0, "network",
                                           &p, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "limit of 256"));
    /* flag lists */
    assert_int_equal(sbx_egress_policy_from_list("example.com,,x.org", true, "--egress-deny", &p,
                                                 err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "--egress-deny: item 2"));
    assert_int_equal(sbx_egress_policy_from_list("a.com,*.b.org:443", false, "--egress-default", &p,
                                                 err, sizeof err),
                     0);
    assert_int_equal(sbx_egress_policy_count(p, false), 2);
    assert_string_equal(sbx_egress_policy_text(p, false, 1), "*.b.org:443");
    sbx_egress_policy_unref(p);
    assert_int_equal(
        sbx_egress_policy_from_list("", false, "--egress-default", &p, err, sizeof err), 0);
    assert_true(sbx_egress_policy_empty(p));
    sbx_egress_policy_unref(p);
}

static eg_addr A(const char *s)
{
    eg_addr a;
    assert_true(sbx__eg_addr_parse(s, &a));
    return a;
}

static void test_special_ranges(void **state)
{
    (void)state;
    static const char *const blocked[] = {
        "127.0.0.1",
        "127.1.2.3",
        "10.1.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fd00::1",
        "fc00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "240.1.2.3",
        "192.0.0.8",
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        eg_addr a = A(blocked[i]);
        if (!sbx__eg_special(&a))
            fail_msg("%s not blocked", blocked[i]);
    }
    static const char *const public_[] = {"1.1.1.1",         "8.8.8.8",          "172.32.0.1",
                                          "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8",
                                          "203.0.113.80",    "198.18.0.1",       "2001:db8::1"};
    for (size_t i = 0; i < sizeof public_ / sizeof public_[0]; i++) {
        eg_addr a = A(public_[i]);
        if (sbx__eg_special(&a))
            fail_msg("%s blocked: %s", public_[i], sbx__eg_special(&a));
    }
    eg_addr a = A("169.254.169.254");
    assert_non_null(strstr(sbx__eg_special(&a), "link-local"));
}

/* Rules with --egress-allow-private and services, no host addresses (deterministic). */
static eg_rules rules(const char *open, const char *deny, const char *svc)
{
    eg_rules r = {0};
    char err[256];
    assert_int_equal(
        sbx_egress_policy_from_list(deny, true, "--egress-deny", &r.deny, err, sizeof err), 0);
    assert_int_equal(sbx__eg_rules_open(&r, open, err, sizeof err), 0);
    const char *s[] = {svc};
    assert_int_equal(sbx__eg_rules_services(&r, s, svc ? 1 : 0, err, sizeof err), 0);
    return r;
}

static int vname(eg_rules *r, sbx_egress_policy *p, const char *name, uint16_t port, bool *bn,
                 char *rule)
{
    char n[300];
    snprintf(n, sizeof n, "%s", name ? name : "");
    if (name)
        assert_true(sbx__eg_name_normalize(n));
    return sbx__eg_verdict_name(r, p, name ? n : NULL, port, bn, rule, EG_RULE_MAX);
}

static int vaddr(eg_rules *r, sbx_egress_policy *p, const char *addr, uint16_t port, bool bn,
                 char *rule)
{
    eg_addr a = A(addr);
    return sbx__eg_verdict_addr(r, p, &a, port, bn, rule, EG_RULE_MAX);
}

static void test_verdict_names(void **state)
{
    (void)state;
    eg_rules r = rules(NULL, "*.evil.test", NULL);
    sbx_egress_policy *p =
        pol("registry.example.org *.pkg.example.net:443 203.0.114.0/24", "bad.pkg.example.net");
    char rule[EG_RULE_MAX];
    bool bn;
    assert_int_equal(vname(&r, p, "Registry.Example.org.", 443, &bn, rule), EG_RESOLVE);
    assert_true(bn);
    assert_string_equal(rule, "allow_out registry.example.org");
    assert_int_equal(vname(&r, p, "a.pkg.example.net", 443, &bn, rule), EG_RESOLVE);
    assert_true(bn);
    /* "*.host" is not host itself, and the port must match */
    assert_int_equal(vname(&r, p, "pkg.example.net", 443, &bn, rule), EG_RESOLVE);
    assert_false(bn); /* only the CIDR could still allow it */
    assert_int_equal(vname(&r, p, "a.pkg.example.net", 80, &bn, rule), EG_RESOLVE);
    assert_false(bn);
    /* deny wins, the global deny first */
    assert_int_equal(vname(&r, p, "bad.pkg.example.net", 443, &bn, rule), EG_DENY);
    assert_string_equal(rule, "deny_out bad.pkg.example.net");
    assert_int_equal(vname(&r, p, "x.evil.test", 443, &bn, rule), EG_DENY);
    assert_string_equal(rule, "--egress-deny *.evil.test");
    sbx_egress_policy_unref(p);
    /* a name nothing can allow is refused before any lookup */
    p = pol("registry.example.org", NULL);
    assert_int_equal(vname(&r, p, "other.example.org", 443, &bn, rule), EG_DENY);
    assert_string_equal(rule, "not in allow_out");
    assert_int_equal(vname(&r, p, NULL, 443, &bn, rule), EG_DENY); /* a literal */
    sbx_egress_policy_unref(p);
    p = pol(NULL, NULL);
    assert_int_equal(vname(&r, p, "registry.example.org", 443, &bn, rule), EG_DENY);
    assert_string_equal(rule, "allow_out is empty");
    sbx_egress_policy_unref(p);
    p = pol("*", "*");
    assert_int_equal(vname(&r, p, "a.b", 443, &bn, rule), EG_DENY);
    sbx_egress_policy_unref(p);
    sbx__eg_rules_free(&r);
}

static void test_verdict_addresses(void **state)
{
    (void)state;
    eg_rules r = rules("127.0.0.2/32,10.9.0.0/16:443", "198.51.99.0/24", "127.0.0.1:50052");
    sbx_egress_policy *p = pol("*", "203.0.114.7");
    char rule[EG_RULE_MAX];
    /* "*": public yes, every blocked range no */
    assert_int_equal(vaddr(&r, p, "93.184.216.34", 443, false, rule), EG_ALLOW);
    assert_string_equal(rule, "allow_out *");
    assert_int_equal(vaddr(&r, p, "127.0.0.1", 80, false, rule), EG_DENY);
    assert_string_equal(rule, "127.0.0.1 is loopback");
    assert_int_equal(vaddr(&r, p, "169.254.169.254", 80, false, rule), EG_DENY);
    assert_int_equal(vaddr(&r, p, "::ffff:10.0.0.1", 80, false, rule), EG_DENY);
    assert_int_equal(vaddr(&r, p, "127.0.0.1", 50052, false, rule), EG_DENY);
    assert_non_null(strstr(rule, "sbx service address"));
    /* address deny patterns, sandbox and global */
    assert_int_equal(vaddr(&r, p, "203.0.114.7", 443, false, rule), EG_DENY);
    assert_string_equal(rule, "deny_out 203.0.114.7");
    assert_int_equal(vaddr(&r, p, "198.51.99.3", 443, false, rule), EG_DENY);
    assert_string_equal(rule, "--egress-deny 198.51.99.0/24");
    /* opened internal destinations need an explicit pattern, "*" is not enough */
    assert_int_equal(vaddr(&r, p, "127.0.0.2", 8080, false, rule), EG_DENY);
    assert_non_null(strstr(rule, "internal"));
    sbx_egress_policy_unref(p);
    p = pol("127.0.0.2:8080 10.9.0.0/16", NULL);
    assert_int_equal(vaddr(&r, p, "127.0.0.2", 8080, false, rule), EG_ALLOW);
    assert_string_equal(rule, "allow_out 127.0.0.2:8080");
    assert_int_equal(vaddr(&r, p, "127.0.0.2", 8081, false, rule), EG_DENY);
    assert_int_equal(vaddr(&r, p, "10.9.1.1", 443, false, rule), EG_ALLOW);
    assert_int_equal(vaddr(&r, p, "10.9.1.1", 80, false, rule), EG_DENY); /* opened on 443 only */
    assert_string_equal(rule, "10.9.1.1 is private (RFC 1918)");
    /* allowed by name: the address still passes the blocked ranges */
    assert_int_equal(vaddr(&r, p, "127.0.0.3", 80, true, rule), EG_DENY);
    assert_int_equal(vaddr(&r, p, "127.0.0.2", 80, true, rule), EG_ALLOW);
    sbx_egress_policy_unref(p);
    /* an opened range does not open a service port unless the entry names it */
    sbx__eg_rules_free(&r);
    r = rules("127.0.0.0/8", NULL, "127.0.0.1:50051");
    p = pol("127.0.0.0/8", NULL);
    assert_int_equal(vaddr(&r, p, "127.0.0.1", 50051, false, rule), EG_DENY);
    assert_int_equal(vaddr(&r, p, "127.0.0.1", 50050, false, rule), EG_ALLOW);
    sbx_egress_policy_unref(p);
    sbx__eg_rules_free(&r);
    /* a wildcard service listen: this host's addresses on that port */
    r = rules(NULL, NULL, "0.0.0.0:50051");
    p = pol("*", NULL);
    assert_int_equal(vaddr(&r, p, "127.0.0.1", 50051, false, rule), EG_DENY);
    assert_non_null(strstr(rule, "service"));
    sbx_egress_policy_unref(p);
    sbx__eg_rules_free(&r);
}

static void test_bad_flags(void **state)
{
    (void)state;
    eg_rules r = {0};
    char err[256];
    assert_int_equal(sbx__eg_rules_open(&r, "example.com", err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--egress-allow-private: item 1"));
    assert_int_equal(sbx__eg_rules_open(&r, "10.0.0.0/8,300.1.1.1", err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "item 2"));
    sbx__eg_rules_free(&r);
}

static int http(const char *req, eg_http_req *r, int *status)
{
    char why[200];
    *status = 0;
    return sbx__eg_http_parse(req, strlen(req), EG_HEAD_MAX, r, status, why, sizeof why);
}

static void test_http_requests(void **state)
{
    (void)state;
    eg_http_req r;
    int st;
    const char *c = "CONNECT Registry.Example.org:443 HTTP/1.1\r\nHost: x\r\n\r\nTLS";
    assert_int_equal(http(c, &r, &st), (int)strlen(c) - 3);
    assert_int_equal(r.kind, EG_HTTP_CONNECT);
    assert_string_equal(r.host, "registry.example.org");
    assert_int_equal(r.port, 443);
    assert_false(r.literal);
    assert_true(http("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n", &r, &st) > 0);
    assert_true(r.literal);
    assert_string_equal(r.host, "2001:db8::1");
    assert_int_equal(http("CONNECT host:443 HTTP/1.1\r\nHost: x\r\n", &r, &st), 0); /* more */
    const char *g = "GET http://127.0.0.2:4873/thepkg?x=1 HTTP/1.1\r\nHost: 127.0.0.2:4873\r\n"
                    "Proxy-Connection: keep-alive\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
    assert_true(http(g, &r, &st) > 0);
    assert_int_equal(r.kind, EG_HTTP_FORWARD);
    assert_string_equal(r.host, "127.0.0.2");
    assert_int_equal(r.port, 4873);
    char *out;
    size_t ol;
    assert_int_equal(sbx__eg_http_rewrite(g, &r, &out, &ol), 0);
    char *s = strndup(out, ol);
    assert_string_equal(s, "GET /thepkg?x=1 HTTP/1.1\r\nHost: 127.0.0.2:4873\r\nAccept: */*\r\n"
                           "Connection: close\r\n\r\n");
    free(s);
    free(out);
    const char *h = "POST http://example.org HTTP/1.0\n\n";
    assert_true(http(h, &r, &st) > 0);
    assert_int_equal(r.port, 80);
    assert_int_equal(sbx__eg_http_rewrite(h, &r, &out, &ol), 0);
    s = strndup(out, ol);
    assert_string_equal(s, "POST / HTTP/1.0\r\nHost: example.org\r\nConnection: close\r\n\r\n");
    free(s);
    free(out);
    /* refused */
    assert_true(http("GET /index.html HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_int_equal(st, 400);
    assert_true(http("GET https://example.org/ HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_true(http("GET http://user:pw@example.org/ HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_true(http("GET http://exa mple.org/ HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_true(http("CONNECT host:0 HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_true(http("CONNECT bad_host!:443 HTTP/1.1\r\n\r\n", &r, &st) < 0);
    assert_true(http("CONNECT host:443 SPDY/3\r\n\r\n", &r, &st) < 0);
    char *big = malloc(EG_HEAD_MAX);
    memset(big, 'a', EG_HEAD_MAX);
    char why[100];
    assert_true(sbx__eg_http_parse(big, EG_HEAD_MAX, EG_HEAD_MAX, &r, &st, why, sizeof why) < 0);
    assert_int_equal(st, 431);
    free(big);
    char reply[512];
    int n =
        sbx__eg_http_reply(403, "sbx egress: x:443 denied (not in allow_out)", reply, sizeof reply);
    assert_true(n > 0);
    assert_non_null(
        strstr(reply, "HTTP/1.1 403 Forbidden - sbx egress: x:443 denied (not in allow_out)\r\n"));
    assert_non_null(strstr(reply, "\r\n\r\nsbx egress: x:443 denied (not in allow_out)\n"));
}

static void test_socks_requests(void **state)
{
    (void)state;
    bool noauth;
    const uint8_t g[] = {5, 2, 2, 0};
    assert_int_equal(sbx__eg_socks_greeting(g, 1, &noauth), 0);
    assert_int_equal(sbx__eg_socks_greeting(g, 4, &noauth), 4);
    assert_true(noauth);
    const uint8_t g2[] = {5, 1, 2};
    assert_int_equal(sbx__eg_socks_greeting(g2, 3, &noauth), 3);
    assert_false(noauth);
    const uint8_t g4[] = {4, 1, 0, 80};
    assert_true(sbx__eg_socks_greeting(g4, 4, &noauth) < 0);
    eg_http_req r;
    int rep;
    const uint8_t d[] = {5,   1,   0,   3,   11,  'E', 'x', 'a', 'm',
                         'p', 'l', 'e', '.', 'o', 'r', 'g', 1,   187};
    assert_int_equal(sbx__eg_socks_request(d, sizeof d - 1, &r, &rep), 0);
    assert_int_equal(sbx__eg_socks_request(d, sizeof d, &r, &rep), (int)sizeof d);
    assert_string_equal(r.host, "example.org");
    assert_int_equal(r.port, 443);
    assert_false(r.literal);
    const uint8_t v4[] = {5, 1, 0, 1, 127, 0, 0, 1, 0, 80};
    assert_int_equal(sbx__eg_socks_request(v4, sizeof v4, &r, &rep), (int)sizeof v4);
    assert_true(r.literal);
    assert_string_equal(r.host, "127.0.0.1");
    const uint8_t bind[] = {5, 2, 0, 1, 1, 2, 3, 4, 0, 80};
    assert_true(sbx__eg_socks_request(bind, sizeof bind, &r, &rep) < 0);
    assert_int_equal(rep, 7);
    const uint8_t atyp[] = {5, 1, 0, 9, 0, 0};
    assert_true(sbx__eg_socks_request(atyp, sizeof atyp, &r, &rep) < 0);
    assert_int_equal(rep, 8);
    uint8_t out[10];
    assert_int_equal(sbx__eg_socks_reply(out, 2), 10);
    assert_int_equal(out[1], 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_parse),
        cmocka_unit_test(test_patterns_rejected),
        cmocka_unit_test(test_policy_errors_name_the_field),
        cmocka_unit_test(test_special_ranges),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_verdict_addresses),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_http_requests),
        cmocka_unit_test(test_socks_requests),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
