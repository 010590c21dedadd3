/* route.c: address lists and rendezvous routing (see route.h). */
#include "route.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* MurmurHash3's 64-bit finaliser: full avalanche, so nearby inputs give unrelated scores. */
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

uint64_t sbx_route_score(const char *addr, const char *key)
{
    /* key and address hashed apart, then combined: ("ab","c") and ("a","bc") cannot collide
     * by construction */
    uint64_t hk = fmix64(fnv1a(FNV_OFFSET, key, strlen(key)));
    uint64_t ha = fmix64(fnv1a(FNV_OFFSET ^ 0x9e3779b97f4a7c15ull, addr, strlen(addr)));
    return fmix64(hk ^ (ha * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
}

int sbx_route_pick(const char *const *addrs, size_t n, const char *key)
{
    if (n == 0)
        return -1;
    if (!key)
        key = "";
    int best = 0;
    uint64_t best_score = sbx_route_score(addrs[0], key);
    for (size_t i = 1; i < n; i++) {
        uint64_t s = sbx_route_score(addrs[i], key);
        if (s > best_score || (s == best_score && strcmp(addrs[i], addrs[best]) < 0)) {
            best = (int)i;
            best_score = s;
        }
    }
    return best;
}

bool sbx_addr_ok(const char *a, bool allow_port0)
{
    if (!a || !*a || strpbrk(a, " \t\r\n,"))
        return false;
    if (!strncmp(a, "unix:", 5))
        return a[5] != 0;
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return false;
    if (a[0] == '[' && colon[-1] != ']') /* "[v6]:port" */
        return false;
    const char *p = colon + 1;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || digits > 5 || p[digits])
        return false;
    long port = strtol(p, NULL, 10);
    return port <= 65535 && (port > 0 || allow_port0);
}

void sbx_addr_list_free(sbx_addr_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Appends item (already trimmed) after checking it; 0, -EINVAL or -ENOMEM. */
static int add_item(sbx_addr_list *l, const char *item, char *err, size_t errlen)
{
    if (!*item) {
        snprintf(err, errlen, "empty item in the address list (want HOST:PORT[,HOST:PORT...])");
        return -EINVAL;
    }
    if (!sbx_addr_ok(item, false)) {
        snprintf(err, errlen, "bad address \"%.200s\" (want HOST:PORT[,HOST:PORT...])", item);
        return -EINVAL;
    }
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], item)) {
            snprintf(err, errlen, "address %.200s listed twice", item);
            return -EINVAL;
        }
    if (!(l->v[l->n] = strdup(item)))
        return -ENOMEM;
    l->n++;
    return 0;
}

int sbx_addr_list_parse(const char *list, sbx_addr_list *out, char *err, size_t errlen)
{
    *out = (sbx_addr_list){0};
    if (!list)
        list = "";
    char *copy = strdup(list);
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    out->v = calloc(cap, sizeof *out->v);
    if (!copy || !out->v) {
        free(copy);
        sbx_addr_list_free(out);
        return -ENOMEM;
    }
    int rc = 0;
    /* by hand, not strtok_r, which would skip empty items silently */
    for (char *p = copy; rc == 0;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = 0;
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len && p[len - 1] == ' ')
            p[--len] = 0;
        rc = add_item(out, p, err, errlen);
        if (!comma)
            break;
        p = comma + 1;
    }
    free(copy);
    if (rc < 0)
        sbx_addr_list_free(out);
    return rc;
}
