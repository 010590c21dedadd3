/* policy.c: egress patterns and policies: parsing "host", "*.host", addresses, CIDRs and "*",
 * each with an optional ":PORT", into immutable reference-counted policies, and matching a
 * requested name or a connected address against a list. Pure functions (no I/O).
 *
 * Threads: any; a policy is immutable once built (references are atomic). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_int.h"

static const char *const LIST_NAME[2] = {"allow_out", "deny_out"};

/* ---- addresses ---------------------------------------------------------------------------- */

bool sbx__eg_addr_parse(const char *s, eg_addr *a)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, a->b) == 1) {
        a->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, a->b) != 1)
        return false;
    a->family = AF_INET6;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a->b, mapped, 12) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = AF_INET;
    }
    return true;
}

bool sbx__eg_addr_from_sa(const struct sockaddr *sa, eg_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        a->family = AF_INET;
        memcpy(a->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
        a->family = AF_INET;
        memcpy(a->b, b + 12, 4);
    } else {
        a->family = AF_INET6;
        memcpy(a->b, b, 16);
    }
    return true;
}

bool sbx__eg_addr_in(const eg_addr *a, const eg_addr *net, unsigned prefix)
{
    if (a->family != net->family)
        return false;
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a->b, net->b, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a->b[full] & mask) == (net->b[full] & mask);
}

void sbx__eg_addr_str(const eg_addr *a, char *buf, size_t len)
{
    if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->b, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

/* ---- names -------------------------------------------------------------------------------- */

bool sbx__eg_name_normalize(char *name)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        name[--n] = 0;
    if (n == 0 || n > EG_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_'))
            return false;
        name[i] = (char)tolower(c);
        if (++label > 63)
            return false;
    }
    return label > 0;
}

/* A domain pattern's name: a valid DNS name whose last label is not all digits (so "10.1" or
 * "1.2.3" are not taken for names). */
static bool pattern_name_ok(char *name)
{
    if (!sbx__eg_name_normalize(name))
        return false;
    const char *last = strrchr(name, '.');
    last = last ? last + 1 : name;
    for (const char *s = last; *s; s++)
        if (!isdigit((unsigned char)*s))
            return true;
    return false;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int why_fmt(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_fmt(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int parse_port(const char *s, uint16_t *port, char *why, size_t len)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 5)
        return why_fmt(why, len, "port \"%s\" is not 1..65535", s);
    for (const char *c = s; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return why_fmt(why, len, "port \"%s\" is not 1..65535", s);
        v = v * 10 + (unsigned long)(*c - '0');
    }
    if (v == 0 || v > 65535)
        return why_fmt(why, len, "port \"%s\" is not 1..65535", s);
    *port = (uint16_t)v;
    return 0;
}

/* "ADDR" or "ADDR/LEN" (no port) into a PAT_NET. */
static int parse_net(char *s, eg_pat *p, char *why, size_t len)
{
    char *slash = strchr(s, '/');
    unsigned prefix = 0;
    bool has_len = slash != NULL;
    if (slash) {
        *slash = 0;
        const char *l = slash + 1;
        if (!*l || strlen(l) > 3)
            return why_fmt(why, len, "prefix length \"%s\" is not a number", l);
        for (const char *c = l; *c; c++) {
            if (!isdigit((unsigned char)*c))
                return why_fmt(why, len, "prefix length \"%s\" is not a number", l);
            prefix = prefix * 10 + (unsigned)(*c - '0');
        }
    }
    if (!sbx__eg_addr_parse(s, &p->net)) {
        if (slash)
            *slash = '/';
        return -ENOENT; /* not an address: maybe a name */
    }
    unsigned bits = p->net.family == AF_INET ? 32 : 128;
    if (!has_len)
        prefix = bits;
    if (prefix > bits)
        return why_fmt(why, len, "prefix length /%u is longer than %u bits", prefix, bits);
    /* clear the host bits: 10.1.2.3/8 means 10.0.0.0/8 */
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = prefix > i * 8 ? prefix - i * 8 : 0;
        if (keep < 8)
            p->net.b[i] &= (uint8_t)(keep ? 0xff << (8 - keep) : 0);
    }
    p->kind = PAT_NET;
    p->prefix = (uint8_t)prefix;
    return 0;
}

int sbx__eg_pat_parse(const char *text, eg_pat *out, char *why, size_t len)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(text);
    if (n == 0)
        return why_fmt(why, len, "empty pattern");
    if (n > SBX_EGRESS_PATTERN_MAX)
        return why_fmt(why, len, "longer than %d bytes", SBX_EGRESS_PATTERN_MAX);
    char buf[SBX_EGRESS_PATTERN_MAX + 1];
    memcpy(buf, text, n + 1);
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return why_fmt(why, len, "contains a space, control or non-ASCII byte");
    char *host = buf, *port = NULL;
    int rc;
    if (buf[0] == '[') { /* [v6] or [v6/len], optionally :PORT */
        char *close = strchr(buf, ']');
        if (!close)
            return why_fmt(why, len, "'[' without ']'");
        *close = 0;
        host = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return why_fmt(why, len, "unexpected \"%s\" after ']'", close + 1);
        if ((rc = parse_net(host, out, why, len)) == -ENOENT ||
            (rc == 0 && out->net.family != AF_INET6))
            return why_fmt(why, len, "brackets hold an IPv6 address or CIDR");
        if (rc < 0)
            return rc;
    } else {
        char *c1 = strchr(buf, ':');
        if (c1 && strchr(c1 + 1, ':')) { /* bare IPv6: no port */
            rc = parse_net(buf, out, why, len);
            if (rc == -ENOENT)
                return why_fmt(why, len, "not an IPv6 address (write [ADDR]:PORT for a port)");
            if (rc < 0)
                return rc;
        } else {
            if (c1) {
                *c1 = 0;
                port = c1 + 1;
            }
            rc = parse_net(host, out, why, len);
            if (rc < 0 && rc != -ENOENT)
                return rc;
            if (rc == -ENOENT) {
                if (strchr(host, '/'))
                    return why_fmt(why, len, "\"%s\" is not an IP address or CIDR", host);
                if (strcmp(host, "*") == 0) {
                    out->kind = PAT_ANY;
                } else if (strncmp(host, "*.", 2) == 0) {
                    if (!host[2])
                        return why_fmt(why, len, "a host name must follow \"*.\"");
                    if (!pattern_name_ok(host + 2) || strchr(host + 2, '*'))
                        return why_fmt(why, len,
                                       "\"%s\" is not a host name (after \"*.\"; a '*' may only "
                                       "stand first)",
                                       host + 2);
                    out->kind = PAT_SUFFIX;
                    host += 1; /* keep the dot: ".host" */
                } else {
                    if (strchr(host, '*'))
                        return why_fmt(why, len, "'*' stands alone or as \"*.\" in front");
                    if (!pattern_name_ok(host))
                        return why_fmt(
                            why, len, "\"%s\" is not a host name, IP address, CIDR or \"*\"", host);
                    out->kind = PAT_NAME;
                }
                if (!(out->name = strdup(host)))
                    return -ENOMEM;
            }
        }
    }
    if (port && (rc = parse_port(port, &out->port, why, len)) < 0) {
        sbx__eg_pat_clear(out);
        return rc;
    }
    if (!(out->text = strdup(text))) {
        sbx__eg_pat_clear(out);
        return -ENOMEM;
    }
    return 0;
}

void sbx__eg_pat_clear(eg_pat *p)
{
    free(p->name);
    free(p->text);
    p->name = p->text = NULL;
}

/* ---- policies ----------------------------------------------------------------------------- */

static void policy_free(sbx_egress_policy *p)
{
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < p->n[l]; i++)
            sbx__eg_pat_clear(&p->pat[l][i]);
        free(p->pat[l]);
    }
    free(p);
}

static int add_list(sbx_egress_policy *p, int l, const char *const *v, size_t n, const char *field,
                    const char *lname, char *err, size_t errlen)
{
    const char *dot = field && *field ? "." : "";
    if (n > SBX_EGRESS_MAX_PATTERNS) {
        snprintf(err, errlen, "%s%s%s: %zu patterns is more than the limit of %d",
                 field ? field : "", dot, lname, n, SBX_EGRESS_MAX_PATTERNS);
        return -EINVAL;
    }
    if (n && !(p->pat[l] = calloc(n, sizeof *p->pat[l])))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char why[256];
        int rc = sbx__eg_pat_parse(v[i] ? v[i] : "", &p->pat[l][i], why, sizeof why);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0) {
            char shown[80];
            snprintf(shown, sizeof shown, "%s", v[i] ? v[i] : "");
            for (char *c = shown; *c; c++)
                if ((unsigned char)*c < ' ' || (unsigned char)*c >= 0x7f || *c == '"')
                    *c = '?';
            snprintf(err, errlen, "%s%s%s[%zu]: \"%s%s\" is not a pattern: %s", field ? field : "",
                     dot, lname, i, shown, strlen(v[i] ? v[i] : "") >= sizeof shown ? "..." : "",
                     why);
            return rc;
        }
        p->n[l]++;
    }
    return 0;
}

int sbx_egress_policy_new(const char *const *allow, size_t n_allow, const char *const *deny,
                          size_t n_deny, const char *field, sbx_egress_policy **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    sbx_egress_policy *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->refs = 1;
    int rc = add_list(p, EG_ALLOW_LIST, allow, n_allow, field, LIST_NAME[0], err, errlen);
    if (rc == 0)
        rc = add_list(p, EG_DENY_LIST, deny, n_deny, field, LIST_NAME[1], err, errlen);
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sbx_egress_policy_from_list(const char *csv, bool as_deny, const char *flag,
                                sbx_egress_policy **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t cap = 1;
    for (const char *s = csv ? csv : ""; *s; s++)
        cap += *s == ',';
    char *copy = strdup(csv ? csv : "");
    const char **v = calloc(cap, sizeof *v);
    if (!copy || !v) {
        free(copy);
        free(v);
        return -ENOMEM;
    }
    size_t n = 0;
    if (copy[0]) {
        char *s = copy;
        for (;;) {
            char *comma = strchr(s, ',');
            if (comma)
                *comma = 0;
            v[n++] = s;
            if (!comma)
                break;
            s = comma + 1;
        }
    }
    char e2[400];
    int rc = as_deny ? sbx_egress_policy_new(NULL, 0, v, n, "", out, e2, sizeof e2)
                     : sbx_egress_policy_new(v, n, NULL, 0, "", out, e2, sizeof e2);
    if (rc < 0) {
        /* "deny_out[2]: ..." -> "--egress-deny: item 3: ..." */
        const char *rest = strstr(e2, "]: ");
        const char *lb = strchr(e2, '[');
        if (rest && lb)
            snprintf(err, errlen, "%s: item %ld: %s", flag, strtol(lb + 1, NULL, 10) + 1, rest + 3);
        else
            snprintf(err, errlen, "%s: %s", flag, strchr(e2, ':') ? strchr(e2, ':') + 2 : e2);
    }
    free(copy);
    free(v);
    return rc;
}

sbx_egress_policy *sbx_egress_policy_ref(sbx_egress_policy *p)
{
    if (p)
        __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void sbx_egress_policy_unref(sbx_egress_policy *p)
{
    if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
        policy_free(p);
}

bool sbx_egress_policy_empty(const sbx_egress_policy *p)
{
    return !p || p->n[EG_ALLOW_LIST] == 0;
}

size_t sbx_egress_policy_count(const sbx_egress_policy *p, bool deny)
{
    return p ? p->n[deny ? EG_DENY_LIST : EG_ALLOW_LIST] : 0;
}

const char *sbx_egress_policy_text(const sbx_egress_policy *p, bool deny, size_t i)
{
    int l = deny ? EG_DENY_LIST : EG_ALLOW_LIST;
    return p && i < p->n[l] ? p->pat[l][i].text : NULL;
}

bool sbx_egress_policy_equal(const sbx_egress_policy *a, const sbx_egress_policy *b)
{
    for (int l = 0; l < 2; l++) {
        size_t na = a ? a->n[l] : 0, nb = b ? b->n[l] : 0;
        if (na != nb)
            return false;
        for (size_t i = 0; i < na; i++)
            if (strcmp(a->pat[l][i].text, b->pat[l][i].text) != 0)
                return false;
    }
    return true;
}

/* ---- matching ----------------------------------------------------------------------------- */

static bool port_ok(const eg_pat *p, uint16_t port)
{
    return p->port == 0 || p->port == port;
}

static bool name_ok(const eg_pat *p, const char *name)
{
    if (p->kind == PAT_NAME)
        return strcmp(name, p->name) == 0;
    size_t n = strlen(name), s = strlen(p->name); /* ".host" */
    return n > s && strcmp(name + n - s, p->name) == 0;
}

const eg_pat *sbx__eg_match_name(const sbx_egress_policy *p, int list, const char *name,
                                 uint16_t port, bool with_any)
{
    for (size_t i = 0; p && i < p->n[list]; i++) {
        const eg_pat *t = &p->pat[list][i];
        if (!port_ok(t, port))
            continue;
        if (t->kind == PAT_ANY
                ? with_any
                : (t->kind == PAT_NAME || t->kind == PAT_SUFFIX) && name && name_ok(t, name))
            return t;
    }
    return NULL;
}

const eg_pat *sbx__eg_match_addr(const sbx_egress_policy *p, int list, const eg_addr *a,
                                 uint16_t port, bool with_any)
{
    for (size_t i = 0; p && i < p->n[list]; i++) {
        const eg_pat *t = &p->pat[list][i];
        if (!port_ok(t, port))
            continue;
        if (t->kind == PAT_ANY ? with_any
                               : t->kind == PAT_NET && sbx__eg_addr_in(a, &t->net, t->prefix))
            return t;
    }
    return NULL;
}

bool sbx__eg_has_addr_pattern(const sbx_egress_policy *p, int list, uint16_t port)
{
    for (size_t i = 0; p && i < p->n[list]; i++) {
        const eg_pat *t = &p->pat[list][i];
        if ((t->kind == PAT_NET || t->kind == PAT_ANY) && port_ok(t, port))
            return true;
    }
    return false;
}
