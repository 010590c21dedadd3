/* socks.c: the SOCKS5 proxy's wire format (RFC 1928, no authentication, CONNECT only):
 * the greeting and its method reply, the request (IPv4, IPv6 or a domain name, which the
 * executor resolves: socks5h semantics) and the replies, "not allowed by ruleset" (0x02) for a
 * refusal among them.
 *
 * Threads: any (pure functions). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "egress_int.h"

int sbx__eg_socks_greeting(const uint8_t *b, size_t n, bool *noauth)
{
    *noauth = false;
    if (n < 2)
        return 0;
    if (b[0] != 5)
        return -EPROTO; /* SOCKS4 or not SOCKS at all */
    size_t need = 2 + (size_t)b[1];
    if (b[1] == 0)
        return -EPROTO;
    if (n < need)
        return 0;
    for (size_t i = 0; i < b[1]; i++)
        if (b[2 + i] == 0)
            *noauth = true;
    return (int)need;
}

int sbx__eg_socks_request(const uint8_t *b, size_t n, eg_http_req *r, int *rep)
{
    *rep = 0;
    memset(r, 0, sizeof *r);
    if (n < 5)
        return 0;
    if (b[0] != 5 || b[2] != 0)
        return -EPROTO;
    size_t need;
    switch (b[3]) {
    case 1:
        need = 4 + 4 + 2;
        break;
    case 3:
        need = 4 + 1 + (size_t)b[4] + 2;
        break;
    case 4:
        need = 4 + 16 + 2;
        break;
    default:
        *rep = 0x08; /* address type not supported */
        return -EPROTO;
    }
    if (n < need)
        return 0;
    if (b[1] != 1) {
        *rep = 0x07; /* command not supported: BIND, UDP ASSOCIATE */
        return -EPROTO;
    }
    r->kind = EG_SOCKS;
    r->port = (uint16_t)(b[need - 2] << 8 | b[need - 1]);
    if (b[3] == 1) {
        inet_ntop(AF_INET, b + 4, r->host, sizeof r->host);
        r->literal = true;
    } else if (b[3] == 4) {
        inet_ntop(AF_INET6, b + 4, r->host, sizeof r->host);
        r->literal = true;
    } else {
        size_t l = b[4];
        if (l == 0 || l > EG_NAME_MAX || memchr(b + 5, 0, l)) {
            *rep = 0x04; /* host unreachable: not a name */
            return -EPROTO;
        }
        memcpy(r->host, b + 5, l);
        r->host[l] = 0;
        eg_addr tmp;
        r->literal = sbx__eg_addr_parse(r->host, &tmp);
        if (!r->literal && !sbx__eg_name_normalize(r->host)) {
            *rep = 0x04;
            return -EPROTO;
        }
    }
    if (r->port == 0) {
        *rep = 0x04;
        return -EPROTO;
    }
    r->head_len = need;
    return (int)need;
}

size_t sbx__eg_socks_reply(uint8_t out[10], int rep)
{
    /* the bound address is not disclosed: 0.0.0.0:0 */
    const uint8_t r[10] = {5, (uint8_t)rep, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(out, r, sizeof r);
    return sizeof r;
}
