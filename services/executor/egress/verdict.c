/* verdict.c: whether a sandbox may connect, in two stages. The name stage runs before any
 * lookup: deny patterns on the name (the sandbox's deny_out and the operator's --egress-deny)
 * refuse, and a name that no allow_out pattern could allow is refused without being resolved
 * (no lookups leak what a sandbox wanted). The address stage runs for each address the name
 * resolved to, i.e. the address the proxy would connect to: the always-blocked ranges (unless
 * --egress-allow-private opens them), then address deny patterns, then allow_out. Deny wins.
 * "*" in allow_out covers public destinations only: an internal one opened by the operator must
 * be allowed by name, address or CIDR.
 *
 * Threads: any (pure functions over immutable rules and policies). */
#include <stdio.h>
#include <string.h>

#include "egress_int.h"

int sbx__eg_verdict_name(const eg_rules *r, const sbx_egress_policy *p, const char *name,
                         uint16_t port, bool *by_name, char *rule, size_t len)
{
    *by_name = false;
    const eg_pat *t;
    if ((t = sbx__eg_match_name(r->deny, EG_DENY_LIST, name, port, true))) {
        snprintf(rule, len, "--egress-deny %s", t->text);
        return EG_DENY;
    }
    if ((t = sbx__eg_match_name(p, EG_DENY_LIST, name, port, true))) {
        snprintf(rule, len, "deny_out %s", t->text);
        return EG_DENY;
    }
    if (sbx_egress_policy_empty(p)) {
        snprintf(rule, len, "allow_out is empty");
        return EG_DENY;
    }
    if (name && (t = sbx__eg_match_name(p, EG_ALLOW_LIST, name, port, false))) {
        *by_name = true;
        snprintf(rule, len, "allow_out %s", t->text);
        return EG_RESOLVE;
    }
    if (!sbx__eg_has_addr_pattern(p, EG_ALLOW_LIST, port)) {
        snprintf(rule, len, "not in allow_out");
        return EG_DENY;
    }
    rule[0] = 0;
    return EG_RESOLVE;
}

/* The service address a is (with port), or NULL. */
static const eg_svc *service_of(const eg_rules *r, const eg_addr *a, uint16_t port, bool local)
{
    for (size_t i = 0; i < r->n_svc; i++) {
        const eg_svc *s = &r->svc[i];
        if (s->port != port)
            continue;
        if (s->wild ? local : memcmp(&s->a, a, sizeof *a) == 0)
            return s;
    }
    return NULL;
}

static bool is_self(const eg_rules *r, const eg_addr *a)
{
    for (size_t i = 0; i < r->n_self; i++)
        if (memcmp(&r->self[i], a, sizeof *a) == 0)
            return true;
    return false;
}

/* The --egress-allow-private entry opening a:port (explicit_port: only one naming the port). */
static const eg_pat *opened(const eg_rules *r, const eg_addr *a, uint16_t port, bool explicit_port)
{
    for (size_t i = 0; i < r->n_open; i++) {
        const eg_pat *t = &r->open[i];
        if ((t->port == port || (!explicit_port && t->port == 0)) &&
            sbx__eg_addr_in(a, &t->net, t->prefix))
            return t;
    }
    return NULL;
}

int sbx__eg_verdict_addr(const eg_rules *r, const sbx_egress_policy *p, const eg_addr *a,
                         uint16_t port, bool by_name, char *rule, size_t len)
{
    char as[INET6_ADDRSTRLEN + 2];
    sbx__eg_addr_str(a, as, sizeof as);
    const char *special = sbx__eg_special(a);
    bool self = is_self(r, a);
    bool local = self || (special && strcmp(special, "loopback") == 0) ||
                 (special && strncmp(special, "unspecified", 11) == 0);
    /* the services' gRPC ports open only to an entry that names their port */
    if (service_of(r, a, port, local) && !opened(r, a, port, true)) {
        snprintf(rule, len, "%s:%u is an sbx service address", as, (unsigned)port);
        return EG_DENY;
    }
    bool internal = false;
    if (special || self) {
        if (!opened(r, a, port, false)) {
            snprintf(rule, len, "%s is %s", as, special ? special : "this host's address");
            return EG_DENY;
        }
        internal = true;
    }
    const eg_pat *t;
    if ((t = sbx__eg_match_addr(r->deny, EG_DENY_LIST, a, port, true))) {
        snprintf(rule, len, "--egress-deny %s", t->text);
        return EG_DENY;
    }
    if ((t = sbx__eg_match_addr(p, EG_DENY_LIST, a, port, true))) {
        snprintf(rule, len, "deny_out %s", t->text);
        return EG_DENY;
    }
    if (by_name)
        return EG_ALLOW; /* rule untouched: the name stage's */
    if ((t = sbx__eg_match_addr(p, EG_ALLOW_LIST, a, port, false))) {
        snprintf(rule, len, "allow_out %s", t->text);
        return EG_ALLOW;
    }
    if ((t = sbx__eg_match_addr(p, EG_ALLOW_LIST, a, port, true))) {
        if (!internal) {
            snprintf(rule, len, "allow_out %s", t->text);
            return EG_ALLOW;
        }
        snprintf(rule, len, "%s is internal (allow_out * covers public destinations only)", as);
        return EG_DENY;
    }
    snprintf(rule, len, "not in allow_out");
    return EG_DENY;
}
