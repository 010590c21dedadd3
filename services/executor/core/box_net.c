/* box_net.c: a sandbox's network egress as the registry keeps it (see registry.h): the box's
 * egress record, and replacing the policy of a running sandbox (UpdateSandboxNetwork), which
 * opens its proxies inside its network namespace the first time a policy is not empty.
 *
 * Threads: any handler thread; the caller holds a use of the box. */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "registry_int.h"
#include "status.h"

sbx_egress_sb *sbx_box_egress(sbx_box *b)
{
    return b->net;
}

int sbx_box_set_network(sbx_box *b, sbx_egress_policy *p, char *err, size_t errlen)
{
    if (!b->net) {
        sbx__reg_seterr(err, errlen, "network egress is not available on this executor");
        return SBX_UNAVAILABLE;
    }
    pthread_mutex_lock(&b->mu);
    bool running = b->state == SBX_BOX_RUNNING && b->sb;
    int nfd = running ? sbx_sandbox_netns_fd(b->sb) : -1;
    pthread_mutex_unlock(&b->mu);
    if (!running) {
        sbx__reg_seterr(err, errlen, "sandbox %s is stopped", b->id);
        return SBX_FAILED_PRECONDITION;
    }
    int rc = sbx_egress_sb_set_policy(b->net, p, nfd);
    switch (rc) {
    case 0:
        SBX_LOG_INFO("registry", "egress policy replaced id=%s allow_out=%zu deny_out=%zu", b->id,
                     sbx_egress_policy_count(p, false), sbx_egress_policy_count(p, true));
        return SBX_OK;
    case -ESHUTDOWN:
        sbx__reg_seterr(err, errlen, "sandbox %s is stopped", b->id);
        return SBX_FAILED_PRECONDITION;
    case -EADDRINUSE:
        sbx__reg_seterr(err, errlen,
                        "network: a process in sandbox %s listens on 127.0.0.1:3128 or :1080, "
                        "where the egress proxies go; stop it and retry",
                        b->id);
        return SBX_FAILED_PRECONDITION;
    default:
        sbx__reg_seterr(err, errlen, "network: cannot open the egress proxies in sandbox %s: %s",
                        b->id, strerror(-rc));
        return SBX_UNAVAILABLE;
    }
}
