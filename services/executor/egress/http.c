/* http.c: the HTTP proxy's wire format. Parses a request head from the sandbox: CONNECT
 * host:port (a tunnel), or an absolute-URI request "GET http://host[:port]/path HTTP/1.1" (one
 * request forwarded); rewrites the latter for the origin server (origin-form request line,
 * hop-by-hop and proxy headers dropped, "Connection: close" so the next request of a keep-alive
 * client opens a new, separately checked connection); builds the proxy's own replies (200
 * Connection established, and refusals whose one-line body says what was refused and why).
 *
 * Threads: any (pure functions). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress_int.h"

static int bad(int *status, int code, char *why, size_t wlen, const char *msg)
{
    *status = code;
    snprintf(why, wlen, "%s", msg);
    return -EINVAL;
}

/* Where the head ends (just past the blank line), or 0 when not yet. */
static size_t head_end(const char *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (b[i] != '\n')
            continue;
        if (b[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* host[:port] or [v6][:port] of an authority into r (def_port when none). */
static int parse_authority(const char *a, size_t n, uint16_t def_port, eg_http_req *r)
{
    char buf[EG_NAME_MAX + 16];
    if (n == 0 || n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, a, n);
    buf[n] = 0;
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *cl = strchr(buf, ']');
        if (!cl)
            return -EINVAL;
        *cl = 0;
        host = buf + 1;
        if (cl[1] == ':')
            port = cl + 2;
        else if (cl[1])
            return -EINVAL;
        struct in6_addr tmp;
        if (inet_pton(AF_INET6, host, &tmp) != 1)
            return -EINVAL;
    } else {
        char *c = strchr(buf, ':');
        if (c) {
            *c = 0;
            port = c + 1;
        }
    }
    r->port = def_port;
    if (port) {
        unsigned long v = 0;
        if (!*port || strlen(port) > 5)
            return -EINVAL;
        for (const char *s = port; *s; s++) {
            if (!isdigit((unsigned char)*s))
                return -EINVAL;
            v = v * 10 + (unsigned long)(*s - '0');
        }
        if (v == 0 || v > 65535)
            return -EINVAL;
        r->port = (uint16_t)v;
    }
    if (strlen(host) > EG_NAME_MAX)
        return -EINVAL;
    snprintf(r->host, sizeof r->host, "%s", host);
    eg_addr tmp;
    r->literal = sbx__eg_addr_parse(r->host, &tmp);
    if (!r->literal && !sbx__eg_name_normalize(r->host))
        return -EINVAL;
    return 0;
}

static bool is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int sbx__eg_http_parse(const char *buf, size_t len, size_t max, eg_http_req *r, int *status,
                       char *why, size_t wlen)
{
    memset(r, 0, sizeof *r);
    size_t end = head_end(buf, len);
    if (!end) {
        if (len >= max)
            return bad(status, 431, why, wlen, "request head larger than 16 KiB");
        return 0;
    }
    r->head_len = end;
    const char *nl = memchr(buf, '\n', end);
    size_t ll = (size_t)(nl - buf);
    if (ll > 0 && buf[ll - 1] == '\r')
        ll--;
    /* METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(buf, ' ', ll);
    if (!sp1 || sp1 == buf)
        return bad(status, 400, why, wlen, "malformed request line");
    for (const char *c = buf; c < sp1; c++)
        if (!is_tchar((unsigned char)*c))
            return bad(status, 400, why, wlen, "malformed method");
    const char *tgt = sp1 + 1;
    const char *sp2 = memchr(tgt, ' ', ll - (size_t)(tgt - buf));
    if (!sp2 || sp2 == tgt)
        return bad(status, 400, why, wlen, "malformed request line");
    const char *ver = sp2 + 1;
    size_t vl = ll - (size_t)(ver - buf);
    if (vl != 8 || strncmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return bad(status, 400, why, wlen, "not an HTTP/1.x request");
    size_t tl = (size_t)(sp2 - tgt);
    r->method_len = (size_t)(sp1 - buf);
    if (r->method_len == 7 && strncmp(buf, "CONNECT", 7) == 0) {
        r->kind = EG_HTTP_CONNECT;
        if (parse_authority(tgt, tl, 443, r) < 0)
            return bad(status, 400, why, wlen, "CONNECT needs host:port");
        return (int)end;
    }
    if (tl >= 8 && strncasecmp(tgt, "https://", 8) == 0)
        return bad(status, 400, why, wlen,
                   "https:// URLs go through the proxy with CONNECT (set HTTPS_PROXY)");
    if (tl < 7 || strncasecmp(tgt, "http://", 7) != 0)
        return bad(status, 400, why, wlen,
                   tgt[0] == '/' ? "not a proxy request (the target is not an absolute http:// URL)"
                                 : "only http:// URLs and CONNECT are proxied");
    const char *auth = tgt + 7, *tend = tgt + tl;
    const char *a_end = auth;
    while (a_end < tend && *a_end != '/' && *a_end != '?' && *a_end != '#')
        a_end++;
    if (memchr(auth, '@', (size_t)(a_end - auth)))
        return bad(status, 400, why, wlen, "user:password@ in the URL is not supported");
    if (parse_authority(auth, (size_t)(a_end - auth), 80, r) < 0)
        return bad(status, 400, why, wlen, "malformed host in the URL");
    r->kind = EG_HTTP_FORWARD;
    r->path_off = (size_t)(a_end - buf);
    r->path_len = (size_t)(tend - a_end);
    r->auth_off = (size_t)(auth - buf);
    r->auth_len = (size_t)(a_end - auth);
    r->ver_off = (size_t)(ver - buf);
    return (int)end;
}

/* Header name of line [s, e) equals name (case-insensitive). */
static bool header_is(const char *s, const char *e, const char *name)
{
    size_t n = strlen(name);
    return (size_t)(e - s) > n && s[n] == ':' && strncasecmp(s, name, n) == 0;
}

int sbx__eg_http_rewrite(const char *buf, const eg_http_req *r, char **out, size_t *outlen)
{
    /* bare "\n" line ends become "\r\n": at worst one byte more per byte of the head */
    size_t cap = 2 * r->head_len + r->auth_len + 64;
    char *o = malloc(cap);
    if (!o)
        return -ENOMEM;
    size_t n = 0;
    memcpy(o + n, buf, r->method_len + 1); /* "METHOD " */
    n += r->method_len + 1;
    if (r->path_len == 0 || buf[r->path_off] != '/')
        o[n++] = '/';
    memcpy(o + n, buf + r->path_off, r->path_len);
    n += r->path_len;
    o[n++] = ' ';
    memcpy(o + n, buf + r->ver_off, 8);
    n += 8;
    memcpy(o + n, "\r\n", 2);
    n += 2;
    /* headers */
    const char *s = memchr(buf, '\n', r->head_len) + 1, *end = buf + r->head_len;
    bool host = false, upgrade = false;
    for (const char *l = s; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        const char *le = nl > l && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == l)
            break;
        if (header_is(l, le, "Upgrade"))
            upgrade = true;
        l = nl + 1;
    }
    for (const char *l = s; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        const char *le = nl > l && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == l)
            break;
        bool drop = header_is(l, le, "Proxy-Connection") ||
                    header_is(l, le, "Proxy-Authorization") || header_is(l, le, "Keep-Alive") ||
                    (!upgrade && header_is(l, le, "Connection"));
        if (*l == ' ' || *l == '\t') {
            free(o);
            return -EINVAL; /* obsolete line folding */
        }
        if (header_is(l, le, "Host"))
            host = true;
        if (!drop) {
            memcpy(o + n, l, (size_t)(le - l));
            n += (size_t)(le - l);
            memcpy(o + n, "\r\n", 2);
            n += 2;
        }
        l = nl + 1;
    }
    if (!host)
        n +=
            (size_t)snprintf(o + n, cap - n, "Host: %.*s\r\n", (int)r->auth_len, buf + r->auth_off);
    if (!upgrade)
        n += (size_t)snprintf(o + n, cap - n, "Connection: close\r\n");
    memcpy(o + n, "\r\n", 2);
    n += 2;
    *out = o;
    *outlen = n;
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "Connection established";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

int sbx__eg_http_reply(int status, const char *line, char *out, size_t len)
{
    if (status == 200)
        return snprintf(out, len, "HTTP/1.1 200 Connection established\r\n\r\n");
    /* the reason phrase repeats the line: clients that show only the status line (npm: "403
       Forbidden - sbx egress: ... - GET http://...") still say what was refused and why */
    return snprintf(out, len,
                    "HTTP/1.1 %d %s - %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\nX-Sbx-Egress: %s\r\n\r\n%s\n",
                    status, reason(status), line, strlen(line) + 1,
                    status == 403 ? "denied" : "error", line);
}
