/* caps.c: capability handling. The init keeps only what it needs to start commands; each
 * command leaves with empty bounding, ambient, permitted, effective and inheritable sets. Raw
 * syscalls only, so the command side is safe between vfork and exec. */
#include "init_parts.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int capset_raw(uint64_t eff, uint64_t perm, uint64_t inh)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2] = {
        {.effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh},
        {.effective = (uint32_t)(eff >> 32),
         .permitted = (uint32_t)(perm >> 32),
         .inheritable = (uint32_t)(inh >> 32)},
    };
    return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* What sbx_caps_restrict_init left in the bounding set (all bits until it ran): a command
 * drops only these, a handful of prctl calls instead of 64 between vfork and exec. */
static uint64_t bounding_left = ~0ULL;

static int drop_bounding_except(uint64_t keep)
{
    for (int c = 0; c < 64; c++) {
        if ((keep & (1ULL << c)) || !(bounding_left & (1ULL << c)))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    return 0;
}

int sbx_caps_restrict_init(void)
{
    uint64_t keep =
        1ULL << CAP_SETUID | 1ULL << CAP_SETGID | 1ULL << CAP_SETPCAP | 1ULL << CAP_KILL;
    int rc = drop_bounding_except(keep);
    if (rc < 0)
        return rc;
    bounding_left = keep;
    return capset_raw(keep, keep, 0);
}

int sbx_caps_drop_bounding(void)
{
    return drop_bounding_except(0);
}

int sbx_caps_clear(void)
{
    return capset_raw(0, 0, 0);
}
