/* route.c: rendezvous (highest random weight) hashing of project ids onto service addresses.
 * Each (address, key) pair gets a 64-bit score; the address with the highest score owns the key.
 * Adding an address moves exactly the keys the new address wins (about 1/n of them), removing
 * one moves only its own keys, and every client computes the same owner without coordination. */
#include <string.h>

#include "sbx.h"

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

uint64_t sbx_rendezvous_score(const char *addr, const char *key)
{
    /* Hash key and address separately, then combine: length-prefixing is implicit, so
     * ("ab","c") and ("a","bc") cannot collide by construction. */
    uint64_t hk = fmix64(fnv1a(FNV_OFFSET, key, strlen(key)));
    uint64_t ha = fmix64(fnv1a(FNV_OFFSET ^ 0x9e3779b97f4a7c15ull, addr, strlen(addr)));
    return fmix64(hk ^ (ha * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
}

int sbx_rendezvous_pick(const char *const *addrs, size_t n, const char *key)
{
    if (n == 0)
        return -1;
    if (!key)
        key = "";
    int best = 0;
    uint64_t best_score = sbx_rendezvous_score(addrs[0], key);
    for (size_t i = 1; i < n; i++) {
        uint64_t s = sbx_rendezvous_score(addrs[i], key);
        /* ties (vanishingly rare) go to the bytewise-smaller address, independent of order */
        if (s > best_score || (s == best_score && strcmp(addrs[i], addrs[best]) < 0)) {
            best = (int)i;
            best_score = s;
        }
    }
    return best;
}
