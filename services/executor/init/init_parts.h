/* init_parts.h: the pieces sbx-init assembles a sandbox from, one file each: ns.c (namespaces,
 * id maps, loopback), mounts.c (the root filesystem), caps.c (capabilities), seccomp.c (the
 * syscall filter). Only sbx-init (init.c) uses them. All return 0 or -errno. */
#ifndef SBX_INIT_PARTS_H
#define SBX_INIT_PARTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- ns.c */
/* Every namespace a sandbox gets (user, pid, mount, net, ipc, uts, cgroup). */
#define SBX_NS_ALL_FLAGS 0x7e020000UL
/* Forks like fork(2) into new namespaces (flags: CLONE_NEW*); with as_sibling the child becomes
 * a child of our parent (CLONE_PARENT). Returns the child pid to the parent, 0 in the child, or
 * -errno. */
pid_t sbx_ns_clone(unsigned long flags, bool as_sibling);
/* Writes "0 base count" into /proc/pid/uid_map and gid_map (needs CAP_SETUID/SETGID in the
 * parent user namespace). */
int sbx_ns_write_idmap(pid_t pid, uint32_t base, uint32_t count);
/* Brings the loopback interface of the current net namespace up. */
int sbx_ns_lo_up(void);

/* ---- mounts.c */
typedef struct {
    int template_fd;    /* O_PATH dir used as the source of system dirs; -1 = host "/" */
    bool is_template;   /* bind every top-level entry of template_fd, not just the system dirs */
    int home_fd;        /* O_PATH dir bound rw at /home/user; -1 = a tmpfs home */
    uint64_t tmp_bytes; /* size of /tmp and /dev/shm */
    uint32_t user_uid;  /* uid/gid of "user" inside (1000) for passwd and the tmpfs home */
} sbx_mounts_cfg;
/* Builds the sandbox root (tmpfs root, read-only system binds, home, /tmp, /proc, /dev) and
 * pivots into it, detaching the old root. Must run in a fresh mount namespace, as (namespace)
 * root, inside the new pid namespace. On error *what names the step that failed. */
int sbx_mounts_build(const sbx_mounts_cfg *cfg, const char **what);
/* The same for a parked (pooled) init, before it knows its sandbox: no home (home_fd is
 * ignored; /home/user is an empty dir) and the root stays writable; pivots and detaches the old
 * root (the costly part: its umount waits for an expedited RCU grace period). */
int sbx_mounts_prebuild(const sbx_mounts_cfg *cfg, const char **what);
typedef struct {
    int home_mnt_fd;          /* detached mount (open_tree clone) to attach at /home/user;
                                 -1 = a tmpfs home */
    uint64_t tmp_bytes;       /* wanted size of /tmp and /dev/shm (and of a tmpfs home) */
    uint64_t built_tmp_bytes; /* what sbx_mounts_prebuild made them */
    uint32_t user_uid;
} sbx_mounts_claim;
/* Completes a prebuilt root at claim time: the home, the tmpfs sizes, root read-only. */
int sbx_mounts_finish(const sbx_mounts_claim *c, const char **what);

/* ---- caps.c */
/* Reduces the init's own capabilities to what it still needs (setuid, setgid, setpcap, kill). */
int sbx_caps_restrict_init(void);
/* For a command between vfork and exec: empties the bounding and ambient sets (needs
 * CAP_SETPCAP, so call before setresuid). After sbx_caps_restrict_init only the few caps it
 * kept are dropped (the rest are gone already). Async-signal-safe. */
int sbx_caps_drop_bounding(void);
/* After setresuid: clears the permitted/effective/inheritable sets. Async-signal-safe. */
int sbx_caps_clear(void);

/* ---- seccomp.c */
/* Compiles the sandbox denylist to BPF and keeps it for sbx_seccomp_load (a pooled init does
 * this before it is claimed). Idempotent. */
int sbx_seccomp_prepare(void);
/* Loads the sandbox denylist into the calling process (the init; every command inherits it),
 * compiling it first unless sbx_seccomp_prepare did. Sets no_new_privs. clone3 stays allowed
 * for the init. */
int sbx_seccomp_load(void);
/* For a command just before exec (no_new_privs already set): clone3 -> ENOSYS. */
int sbx_seccomp_block_clone3(void);

#endif
