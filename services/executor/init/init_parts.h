/* init_parts.h: the pieces sbx-init (the per-sandbox init; single-threaded, no gRPC) is made
 * of, one concern per file as nsjail does:
 *   init.c     start-up: the helper that forks the init into its namespaces, and the init's
 *              build sequence (namespaces, root filesystem, lock-down, pool park and claim)
 *   ns.c       the namespaces a sandbox gets (user, pid, mount, net, ipc, uts, cgroup), the
 *              hostname (uts)
 *   userns.c   the user namespace: uid/gid maps, becoming root inside
 *   net.c      the network namespace: loopback up
 *   mounts.c   the root filesystem
 *   caps.c     capabilities
 *   seccomp.c  the syscall filter
 *   cmdcg.c    per-command cgroups under the sandbox's delegated cgroup2 dir
 *   spawn.c    the command spawner (clone3 + exec as the sandbox user)
 *   pty.c      a command's pseudo-terminal (from the sandbox's devpts)
 *   cmds.c     the command table: exits, timeouts, kill-tree
 *   serve.c    the request loop and the replies
 * Only sbx-init uses them. All return 0 or -errno unless they say otherwise. */
#ifndef SBX_INIT_PARTS_H
#define SBX_INIT_PARTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

/* ---- init.c: what every part of the init reads (one thread: no locks) */
typedef struct {
    int sock;                      /* the protocol socket (fd 3) */
    uint8_t *rx;                   /* receive buffer of SBX_WIRE_MAX bytes */
    uint32_t cmd_uid;              /* uid/gid commands run as, as seen by the init */
    uint64_t nofile, fsize, nproc; /* RLIMIT_NOFILE/FSIZE/NPROC of commands; 0 = leave */
    bool seccomp;                  /* the denylist is loaded: commands add the clone3 block */
    int home_mnt_fd;     /* detached mounts that came with Setup (-1: none); consumed by the */
    int template_mnt_fd; /* root's build */
} sbx_init_state;
extern sbx_init_state sbx_init;
/* "sbx-init[pid]: what: strerror(err)" on stderr. */
void sbx_init_log(const char *what, int err);

/* ---- ns.c */
/* Every namespace a sandbox gets (user, pid, mount, net, ipc, uts, cgroup). */
#define SBX_NS_ALL_FLAGS 0x7e020000UL
/* Forks like fork(2) into new namespaces (flags: CLONE_NEW*); with as_sibling the child becomes
 * a child of our parent (CLONE_PARENT). Returns the child pid to the parent, 0 in the child, or
 * -errno. */
pid_t sbx_ns_clone(unsigned long flags, bool as_sibling);
/* Sets the hostname of the new uts namespace ("" = "sbx"). */
int sbx_ns_set_hostname(const char *name);
/* --probe: can every namespace be created here? Prints the answer; exit status 0 or 1. */
int sbx_ns_probe(void);

/* ---- userns.c */
/* Writes "0 base count" into /proc/pid/uid_map and gid_map (needs CAP_SETUID/SETGID in the
 * parent user namespace). */
int sbx_userns_write_idmap(pid_t pid, uint32_t base, uint32_t count);
/* In the new user namespace (maps written): becomes uid/gid 0 with no groups, re-arms the
 * parent-death signal, and exits if the executor (the other end of sock) is already gone. */
int sbx_userns_become_root(int sock);

/* ---- net.c */
/* Brings the loopback interface of the current net namespace up. */
int sbx_net_lo_up(void);

/* ---- mounts.c */
typedef struct {
    int template_mnt_fd; /* detached mount of a template root (the executor's open_tree clone):
                            every top-level entry of it is bound; -1 = the system dirs of our
                            own "/" (the host's) */
    int home_mnt_fd;     /* detached mount attached at /home/user; -1 = a tmpfs home */
    uint64_t tmp_bytes;  /* size of /tmp and /dev/shm */
    uint32_t user_uid;   /* uid/gid of "user" inside (1000) for passwd and the tmpfs home */
} sbx_mounts_cfg;
/* Builds the sandbox root (tmpfs root, read-only system binds, home, /tmp, /proc, /dev) and
 * pivots into it, detaching the old root. Must run in a fresh mount namespace, as (namespace)
 * root, inside the new pid namespace. On error *what names the step that failed. */
int sbx_mounts_build(const sbx_mounts_cfg *cfg, const char **what);
/* The same for a parked (pooled) init, before it knows its sandbox: no home (home_mnt_fd is
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

/* ---- cmdcg.c */
/* The sandbox's delegated cgroup2 dir (fd 4), or -1: commands then get no cgroup of their own
 * and kill-tree falls back to the process group. */
void sbx_cmdcg_set_root(int cg2fd);
bool sbx_cmdcg_enabled(void);
/* An empty per-command group: from the free list, else made now. Returns its dir fd (the
 * caller closes it) and its number in *n, or -errno. */
int sbx_cmdcg_take(uint32_t *n);
/* Keeps enough empty groups that the next commands need no mkdir. */
void sbx_cmdcg_topup(void);
/* Gives group n back once it is empty: onto the free list, or removed when the list is full
 * or the group was killed. false while processes are still in it. */
bool sbx_cmdcg_release(uint32_t n, bool killed);
/* Removes group n (rmdir; harmless when gone). */
void sbx_cmdcg_remove(uint32_t n);
/* SIGKILLs every process in group n (cgroup.kill); the group is never reused after. */
void sbx_cmdcg_kill(uint32_t n);

/* ---- cmds.c */
typedef struct {
    pid_t pid;    /* pid inside the sandbox */
    uint32_t cgn; /* names the per-command cgroup "c<cgn>" (valid with has_cg) */
    uint64_t start_us;
    uint64_t deadline_us; /* 0 = none */
    bool has_cg;
    bool cg_killed; /* cgroup.kill was written: the group is removed, never reused */
    bool timed_out;
    bool exited; /* main process reaped; kept while its cgroup still has members */
} sbx_cmd;
int sbx_cmds_init(void);
bool sbx_cmds_full(void);
void sbx_cmds_add(const sbx_cmd *c);
/* The command whose main process is pid: a live one first, else (unless live_only) one that
 * exited but whose cgroup still has members. NULL if none. */
sbx_cmd *sbx_cmds_find(pid_t pid, bool live_only);
/* SIGKILLs the command's tree: its cgroup (daemonised children too), its process group. */
void sbx_cmds_kill_tree(sbx_cmd *c);
/* Reaps every exited child, reports the exits of commands, drops finished commands. */
void sbx_cmds_reap(void);
/* Kills the trees of commands past their deadline; returns the poll timeout (ms) until the
 * next deadline, or -1 for none. */
int sbx_cmds_check_timeouts(void);

/* ---- spawn.c */
/* Handles a Spawn request: starts the command and answers Started (with its pipe ends). */
void sbx_cmd_spawn(uint64_t id, const Sbxinit__Spawn *s);

/* ---- pty.c */
/* A new terminal pair of this size from /dev/ptmx (the sandbox's devpts), unlocked: *master
 * and *slave (both O_RDWR, O_NOCTTY, O_CLOEXEC; the caller closes them). 0 or -errno (-ENOSPC
 * when the sandbox holds the most terminals its devpts allows). */
int sbx_pty_open(uint32_t cols, uint32_t rows, int *master, int *slave);

/* ---- serve.c */
/* Sends one message on the protocol socket (see sbx_wire_send). */
int sbx_init_send(Sbxinit__InitMsg *m, const int *fds, size_t nfds);
/* Ready (answer to Setup or Claim); fds travel with it (the final Ready: root, net ns). */
void sbx_init_send_ready(uint64_t id, int32_t pid, int err, const char *what, char **enforced,
                         size_t n, const int *fds, size_t nfds);
void sbx_init_send_result(uint64_t id, int err);
/* Serves requests until the executor goes away (then exits: pid 1 ends the sandbox). */
_Noreturn void sbx_serve(int sigfd);

#endif
