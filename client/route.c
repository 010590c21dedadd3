/* route.c: the public face of project routing (sbx.h). The hashing and the address lists live
 * in common/route.c, which the executor uses too, so libsbx and sbx-executor pick the same
 * sbx-store for a project. */
#include "route.h"
#include "sbx.h"

uint64_t sbx_rendezvous_score(const char *addr, const char *key)
{
    return sbx_route_score(addr, key);
}

int sbx_rendezvous_pick(const char *const *addrs, size_t n, const char *key)
{
    return sbx_route_pick(addrs, n, key);
}
