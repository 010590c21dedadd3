/* procmask.c: lifts a container runtime's /proc masks for the executor alone.
 *
 * Docker, containerd and Kubernetes mask parts of /proc in a container (bind mounts over kcore,
 * keys, timer_list, sysrq-trigger, read-only binds of sys, irq, bus, fs, tmpfs over acpi, scsi).
 * The kernel then refuses every sandbox a fresh proc mount (EPERM): a new proc instance may not
 * reveal what an over-mount hides from a user namespace. An executor that holds CAP_SYS_ADMIN
 * in its container can move itself into a private mount namespace and detach those masks
 * there; the container's own view keeps them, and sandboxes (which get a fresh /proc in their
 * own pid namespace) see nothing of the host's processes either way.
 *
 * Must run before the process starts any thread (unshare(CLONE_NEWNS) fails with EINVAL once
 * the fs struct is shared). Mounts of binfmt_misc (systemd's automount on hosts) are not masks
 * and do not trigger it. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#include "log.h"
#include "sandbox.h"

#define MAX_MASKS 64

/* The mount points under /proc/ other than binfmt_misc, in mountinfo order. */
static int read_masks(char (*paths)[256], int max)
{
    FILE *mi = fopen("/proc/self/mountinfo", "re");
    if (!mi)
        return -errno;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, mi) && n < max) {
        char mp[256];
        const char *sep = strstr(line, " - ");
        char fstype[64] = "";
        if (!sep || sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1 ||
            sscanf(sep + 3, "%63s", fstype) != 1)
            continue;
        if (strncmp(mp, "/proc/", 6) == 0 && strcmp(fstype, "binfmt_misc") != 0)
            snprintf(paths[n++], sizeof paths[0], "%s", mp);
    }
    fclose(mi);
    return n;
}

int sbx_sandbox_lift_proc_masks(void)
{
    char paths[MAX_MASKS][256];
    int n = read_masks(paths, MAX_MASKS);
    if (n <= 0)
        return n;
    if (unshare(CLONE_NEWNS) < 0)
        return -errno;
    /* host mounts still propagate to us; ours (the detaches) never go back */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return -errno;
    int lifted = 0;
    for (int i = n - 1; i >= 0; i--) { /* children before their parents */
        if (umount2(paths[i], MNT_DETACH) == 0)
            lifted++;
        else
            SBX_LOG_ERRNO(SBX_LOG_ERROR, "executor", -errno, "cannot lift a /proc mask path=%s",
                          paths[i]);
    }
    return lifted == n ? lifted : -EPERM;
}
