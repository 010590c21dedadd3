/* ranges.c: the destinations no sandbox reaches unless the operator opens them: loopback,
 * private (RFC 1918), shared (RFC 6598), unique-local, link-local (cloud metadata at
 * 169.254.169.254 included), multicast, reserved (0/8, 240/4, IETF protocol assignments), this
 * host's own interface addresses, and the addresses the executor and its stores listen on.
 * Documentation and benchmarking ranges (192.0.2/24, 198.18/15, 198.51.100/24, 203.0.113/24,
 * 2001:db8::/32) are not in the list: nothing internal lives there by definition, and some
 * networks hand them out for real hosts (fake-IP DNS of proxies, intercepting gateways). Also
 * parses
 * --egress-allow-private (the operator's exceptions) and resolves the service addresses.
 *
 * Threads: sbx__eg_special is pure; the rules are built at start-up and the host's addresses
 * refreshed by the loop thread, which alone reads them. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_int.h"

typedef struct {
    uint8_t family;
    uint8_t b[16];
    uint8_t prefix;
    const char *why;
} range;

#define V4(a, b_, c, d)                                                                            \
    AF_INET,                                                                                       \
    {                                                                                              \
        a, b_, c, d                                                                                \
    }
static const range RANGES[] = {
    {V4(0, 0, 0, 0), 8, "unspecified (0.0.0.0/8, reaches this host)"},
    {V4(10, 0, 0, 0), 8, "private (RFC 1918)"},
    {V4(100, 64, 0, 0), 10, "shared address space (RFC 6598)"},
    {V4(127, 0, 0, 0), 8, "loopback"},
    {V4(169, 254, 0, 0), 16, "link-local (cloud metadata lives here)"},
    {V4(172, 16, 0, 0), 12, "private (RFC 1918)"},
    {V4(192, 0, 0, 0), 24, "reserved (IETF protocol assignments)"},
    {V4(192, 168, 0, 0), 16, "private (RFC 1918)"},
    {V4(224, 0, 0, 0), 4, "multicast"},
    {V4(240, 0, 0, 0), 4, "reserved (240.0.0.0/4, broadcast)"},
    {AF_INET6, {0}, 128, "unspecified (::)"},
    {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {AF_INET6, {0}, 96, "reserved (IPv4-compatible IPv6)"},
    {AF_INET6, {0x01, 0x00}, 64, "reserved (discard prefix)"},
    {AF_INET6, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "reserved (local-use NAT64)"},
    {AF_INET6, {0xfc}, 7, "unique-local (fc00::/7)"},
    {AF_INET6, {0xfe, 0x80}, 10, "link-local"},
    {AF_INET6, {0xfe, 0xc0}, 10, "site-local"},
    {AF_INET6, {0xff}, 8, "multicast"},
};

static const char *special_v(const eg_addr *a)
{
    for (size_t i = 0; i < sizeof RANGES / sizeof RANGES[0]; i++) {
        eg_addr net = {.family = RANGES[i].family};
        memcpy(net.b, RANGES[i].b, 16);
        if (sbx__eg_addr_in(a, &net, RANGES[i].prefix))
            return RANGES[i].why;
    }
    return NULL;
}

const char *sbx__eg_special(const eg_addr *a)
{
    const char *why = special_v(a);
    if (why || a->family != AF_INET6)
        return why;
    /* NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits */
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (memcmp(a->b, nat64, 12) == 0) {
        eg_addr v4 = {.family = AF_INET};
        memcpy(v4.b, a->b + 12, 4);
        return special_v(&v4);
    }
    return NULL;
}

/* ---- --egress-allow-private --------------------------------------------------------------- */

int sbx__eg_rules_open(eg_rules *r, const char *csv, char *err, size_t errlen)
{
    sbx_egress_policy *p = NULL;
    int rc = sbx_egress_policy_from_list(csv, false, "--egress-allow-private", &p, err, errlen);
    if (rc < 0)
        return rc;
    size_t n = p->n[EG_ALLOW_LIST];
    for (size_t i = 0; i < n; i++) {
        if (p->pat[EG_ALLOW_LIST][i].kind != PAT_NET) {
            snprintf(err, errlen,
                     "--egress-allow-private: item %zu: \"%s\" is not an IP address or CIDR "
                     "(with an optional :PORT)",
                     i + 1, p->pat[EG_ALLOW_LIST][i].text);
            sbx_egress_policy_unref(p);
            return -EINVAL;
        }
    }
    /* steal the patterns */
    r->open = p->pat[EG_ALLOW_LIST];
    r->n_open = n;
    p->pat[EG_ALLOW_LIST] = NULL;
    p->n[EG_ALLOW_LIST] = 0;
    sbx_egress_policy_unref(p);
    return 0;
}

/* ---- the services' own addresses ---------------------------------------------------------- */

static int add_svc(eg_rules *r, const eg_svc *s)
{
    eg_svc *nv = realloc(r->svc, (r->n_svc + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    r->svc = nv;
    r->svc[r->n_svc++] = *s;
    return 0;
}

/* "HOST:PORT" / "[V6]:PORT" / "dns:///HOST:PORT" -> every address it resolves to. */
static int add_service(eg_rules *r, const char *spec, char *err, size_t errlen)
{
    char buf[300];
    if (strncmp(spec, "dns:///", 7) == 0)
        spec += 7;
    snprintf(buf, sizeof buf, "%s", spec);
    char *host = buf, *colon = strrchr(buf, ':');
    if (!colon || colon == buf) {
        snprintf(err, errlen, "service address \"%s\" is not HOST:PORT", spec);
        return -EINVAL;
    }
    *colon = 0;
    long port = strtol(colon + 1, NULL, 10);
    if (port == 0)
        return 0; /* an ephemeral listen: unknown here (loopback is blocked anyway) */
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "service address \"%s\": bad port", spec);
        return -EINVAL;
    }
    if (host[0] == '[') {
        host++;
        char *cl = strchr(host, ']');
        if (cl)
            *cl = 0;
    }
    eg_svc s = {.port = (uint16_t)port};
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        s.wild = true;
        return add_svc(r, &s);
    }
    if (sbx__eg_addr_parse(host, &s.a))
        return add_svc(r, &s);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return 0; /* a store we cannot resolve now cannot be reached through us either */
    int rc = 0;
    for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next)
        if (sbx__eg_addr_from_sa(ai->ai_addr, &s.a))
            rc = add_svc(r, &s);
    freeaddrinfo(res);
    return rc;
}

int sbx__eg_rules_services(eg_rules *r, const char *const *addrs, size_t n, char *err,
                           size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (!addrs[i] || !addrs[i][0])
            continue;
        /* a list "A,B,C" (several stores) */
        char *copy = strdup(addrs[i]), *save = NULL;
        if (!copy)
            return -ENOMEM;
        int rc = 0;
        for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
            rc = add_service(r, t, err, errlen);
        free(copy);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- this host's addresses ---------------------------------------------------------------- */

void sbx__eg_rules_self(eg_rules *r)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0)
        return; /* keep the last list */
    size_t n = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        n += i->ifa_addr &&
             (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6);
    eg_addr *v = n ? calloc(n, sizeof *v) : NULL;
    if (n && !v) {
        freeifaddrs(ifs);
        return;
    }
    size_t k = 0;
    for (struct ifaddrs *i = ifs; i && k < n; i = i->ifa_next)
        if (i->ifa_addr && sbx__eg_addr_from_sa(i->ifa_addr, &v[k]))
            k++;
    freeifaddrs(ifs);
    free(r->self);
    r->self = v;
    r->n_self = k;
}

void sbx__eg_rules_free(eg_rules *r)
{
    sbx_egress_policy_unref(r->deny);
    for (size_t i = 0; i < r->n_open; i++)
        sbx__eg_pat_clear(&r->open[i]);
    free(r->open);
    free(r->svc);
    free(r->self);
    memset(r, 0, sizeof *r);
}
