/* route.h: service address lists and the project -> instance routing that libsbx and the
 * executor share, so both pick the same sbx-store for a project. A list is
 * "HOST:PORT[,HOST:PORT...]" (items trimmed of spaces; an empty, malformed or repeated item is
 * an error). Routing is rendezvous (highest random weight) hashing: each (address, key) pair
 * gets a 64-bit score and the address with the highest score owns the key, so adding an
 * address moves only the keys it wins (about 1/n) and removing one moves only its own. */
#ifndef SBX_ROUTE_H
#define SBX_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sbx_addr_list {
    char **v; /* n trimmed addresses, in the order given */
    size_t n;
} sbx_addr_list;

/* One address: "HOST:PORT" (HOST non-empty, "[v6]" allowed; PORT 0..65535 when allow_port0,
 * else 1..65535) or "unix:PATH"; no spaces or commas. */
bool sbx_addr_ok(const char *a, bool allow_port0);
/* Parses a list into *out (free with sbx_addr_list_free). Returns 0, -ENOMEM, or -EINVAL with
 * err saying which item is wrong and why (the caller prefixes the flag name). */
int sbx_addr_list_parse(const char *list, sbx_addr_list *out, char *err, size_t errlen);
void sbx_addr_list_free(sbx_addr_list *l); /* harmless on a zeroed or freed list */

/* The rendezvous score of (addr, key); deterministic across processes and platforms. */
uint64_t sbx_route_score(const char *addr, const char *key);
/* The index in addrs[0..n) that owns key (NULL key = ""); -1 when n == 0. Ties (vanishingly
 * rare) go to the bytewise-smaller address, so the order of the list does not matter. */
int sbx_route_pick(const char *const *addrs, size_t n, const char *key);

#endif
