/* sandbox.h: the executor's sandbox runtime. A sandbox is one long-lived sbx-init process in new
 * user/pid/mount/net/ipc/uts/cgroup namespaces, with cgroup limits, that starts commands for us
 * over a private socket; the calling (multi-threaded) process never forks user commands.
 *
 * Threads: every function may be called from any thread. Internally one service thread (started
 * on first use, alive for the life of the process) spawns every init, so each init's
 * PR_SET_PDEATHSIG parent is a thread that never exits, and reads every init's socket.
 * The process must not set SIGCHLD to SIG_IGN nor reap with waitpid(-1)/wait(): every init
 * is a child of the process and is reaped here by pid.
 *
 * Errors: functions return 0 or a negative errno. Ownership is stated per function; nothing
 * returned points into memory the caller must free unless it says so. */
#ifndef SBX_SANDBOX_H
#define SBX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_sandbox sbx_sandbox;

/* What this kernel and cgroup setup allow; filled once by sbx_sandbox_caps_detect. */
typedef struct {
    bool namespaces;         /* user+pid+mount+net+ipc+uts+cgroup namespaces can be created */
    char namespaces_err[64]; /* why not, when !namespaces */
    bool cgroup_v2;          /* a cgroup2 hierarchy is mounted and our cgroup is in it */
    bool cgroup_v2_kill;     /* cgroup.kill works there (kill-tree) */
    unsigned v2_controllers; /* bit 0 memory, 1 pids, 2 cpu usable through cgroup v2 */
    unsigned v1_controllers; /* same bits, usable through a v1 hierarchy */
} sbx_sandbox_caps;

/* In a container whose runtime masks parts of /proc, fresh proc mounts (every sandbox's) are
 * refused: this moves the process into a private mount namespace and detaches the masks there
 * (procmask.c). Call it first in main, before any thread exists. Returns how many masks were
 * lifted (0: none found, nothing changed) or -errno (e.g. -EPERM without CAP_SYS_ADMIN). */
int sbx_sandbox_lift_proc_masks(void);

/* Probes the kernel once (runs `init_path --probe` to try the namespaces, reads the cgroup
 * mounts) and logs the result; later calls return the cached result. init_path may be NULL
 * after the first call. Returns 0 or -errno; *out is copied. */
int sbx_sandbox_caps_detect(const char *init_path, sbx_sandbox_caps *out);

/* Kills and removes every cgroup below cgroup_parent (under the executor's own cgroup, in every
 * hierarchy in use): at start-up, the sandboxes' groups a previous run of this executor left
 * after a kill -9. Call it after sbx_sandbox_caps_detect and before any sandbox or pool init
 * exists under that parent. *removed counts the groups removed. Returns 0, -EINVAL (no detect
 * yet, or a bad name) or the -errno of a group that would not go. */
int sbx_sandbox_sweep_cgroups(const char *cgroup_parent, size_t *removed);
/* At shutdown, once no sandbox or pool init is left: removes the empty cgroup_parent groups. */
void sbx_sandbox_cgroups_done(const char *cgroup_parent);

typedef struct {
    uint64_t memory_bytes; /* cgroup memory limit (swap included); 0 = none */
    uint64_t pids;         /* cgroup pids.max; 0 = none */
    uint32_t cpu_millis;   /* CPU quota, 1000 = one core; 0 = none */
    uint32_t cpu_weight;   /* relative share, 100 = normal (1..10000); 0 = default */
    uint64_t nofile;       /* RLIMIT_NOFILE of commands; 0 = 1024 */
    uint64_t file_bytes;   /* RLIMIT_FSIZE of commands (largest file, EFBIG/SIGXFSZ); 0 = none */
    uint64_t tmp_bytes;    /* size of /tmp and /dev/shm (tmpfs, ENOSPC); 0 = 64 MiB */
    uint64_t nproc;        /* RLIMIT_NPROC of the sandbox user; 0 = none */
} sbx_sandbox_limits;

/* A command's main process was reaped by the init. */
typedef struct {
    int pid;        /* pid inside the sandbox */
    int exit_code;  /* valid when signal == 0 */
    int signal;     /* terminating signal or 0 (a shell would show 128 + signal) */
    bool timed_out; /* the init killed the tree at the command's timeout */
    bool core_dumped;
    bool lost; /* the sandbox died; no real status (signal is SIGKILL) */
    uint64_t utime_us, stime_us, maxrss_kb, duration_us;
} sbx_exit;

typedef void (*sbx_exit_cb)(void *arg, const sbx_exit *ev);

typedef struct {
    const char *id;            /* [A-Za-z0-9_.-]{1,64}: names the cgroups; the hostname */
    const char *init_path;     /* the sbx-init binary */
    const char *home_dir;      /* host dir bound rw at /home/user; created (0700) if missing and
                                  owned by the sandbox user; NULL = a tmpfs home (ignored with
                                  home_image) */
    const char *home_image;    /* with a disk mechanism (sbx_disk_setup): the home is the ext4
                                  image at this path, made (disk_bytes, disk_inodes) when
                                  missing, attached through a loop device and mounted by the
                                  executor; -ENOTSUP without a mechanism */
    uint64_t disk_bytes;       /* a new image's data capacity (>= 4 MiB) */
    uint64_t disk_inodes;      /* a new image's inodes (>= 1024) */
    const char *template_root; /* NULL: host /usr, /etc, /bin, /lib...; else this tree, read-only */
    const char *cgroup_parent; /* group under the executor's own cgroups; NULL = "sbx" */
    uint32_t uid_base;         /* host uid/gid of root inside; 65536 ids from here belong to this
                                  sandbox alone (>= 65536). The user (1000) is uid_base + 1000.
                                  0 = the pool chooses (sbx_sandbox_pool_config; -EINVAL without
                                  one): a parked init is claimed when one matches init_path and
                                  cgroup_parent, else a cold create in a free block of the pool's
                                  range; read the choice with sbx_sandbox_uid_base. A non-zero
                                  uid_base must not overlap the pool's range (-EINVAL). */
    sbx_sandbox_limits limits;
    bool allow_weak_isolation; /* run without a user namespace when it cannot be created */
    /* Optional: called on the service thread for every exit, besides the exit queue. It must not
       block or destroy this sandbox. */
    sbx_exit_cb on_exit;
    void *on_exit_arg;
} sbx_sandbox_cfg;

/* Creates a sandbox and waits until its init is ready. cfg and its strings are copied. On
 * success *out is the caller's (release with sbx_sandbox_destroy). Errors: -EINVAL (bad cfg),
 * -EPERM/-ENOSPC... namespaces unavailable (and !allow_weak_isolation), -EEXIST (a sandbox
 * with this id exists in this executor), -ETIMEDOUT (init did not answer), -ENOSPC (uid_base 0
 * and no free block left in the pool's range), other -errno.
 * A sandbox claimed from the pool behaves exactly like one created cold (same namespaces,
 * filesystem, limits, enforced list); only its cgroups are named "@pool-<uid_base>" under
 * cgroup_parent instead of by id (cgroup2 groups cannot be renamed). */
int sbx_sandbox_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out);

/* ---- warm pool: inits made ahead so that a create costs a claim (~1 ms) instead of a spawn,
 * namespaces, uid maps and cgroup moves (7-23 ms here, most of it an RCU grace period paid by
 * the first cgroup.procs write). A refill thread keeps `size` inits parked: each has its
 * namespaces, uid/gid map (a block of 65536 ids from the pool's range), loopback, cgroups
 * (holding `limits`) with the init already in them, per-command cgroups, its root filesystem
 * built from the pool's template and pivoted into (old root detached) but without a home and
 * still writable, and the compiled seccomp program. At claim time the executor prepares the
 * home and sends a detached private nosuid,nodev clone of it (open_tree) with hostname, tmpfs
 * sizes and rlimits; the init attaches it at /home/user, makes the root read-only, drops its
 * capabilities and loads seccomp, as a cold init does; the claim writes the cgroup limits
 * that differ from `limits`. Parked inits are children of the same immortal thread as
 * every init (PR_SET_PDEATHSIG: they die with the executor, also on kill -9), are not
 * sandboxes (sbx_sandbox_count, ids), and are destroyed by sbx_sandbox_pool_shutdown. */
typedef struct {
    size_t size;               /* inits kept parked (<= 64); 0 = none (the range stays usable) */
    const char *init_path;     /* the sbx-init binary; creates with another one go cold */
    const char *cgroup_parent; /* NULL = "sbx"; creates with another parent go cold */
    const char *template_root; /* root tree the parked inits prebuild (NULL = host system
                                  dirs); creates with another template go cold */
    uint32_t uid_first;        /* first host uid of the range reserved for uid_base 0 creates */
    uint32_t uid_count;        /* its size (blocks of 65536); must not overlap ranges callers
                                  pass as uid_base (those are refused with -EINVAL) */
    sbx_sandbox_limits limits; /* cgroup limits written ahead (memory, pids, cpu) and the size
                                  of the prebuilt /tmp and /dev/shm (tmp_bytes): use the server
                                  defaults so most claims write and remount nothing */
} sbx_sandbox_pool_cfg;

/* Configures (or reconfigures) the pool and starts its refill thread; returns at once (the
 * pool fills in the background, see sbx_sandbox_pool_wait). Strings are copied. A change of
 * init_path/cgroup_parent/template_root/limits drops the parked inits and builds new ones; the
 * uid range cannot change while a sandbox uses a block of it (-EBUSY). -EPERM when namespaces
 * cannot be created here, -EINVAL for a bad cfg. Put the range above every uid_base callers
 * pass (e.g. above the registry's uid_base_first + max_sandboxes * 65536). */
int sbx_sandbox_pool_config(const sbx_sandbox_pool_cfg *cfg);
/* Stops the refill thread and destroys every parked init (their groups removed). Claimed
 * sandboxes are not touched; uid_base 0 creates keep working (cold, in the pool's range) and a
 * later sbx_sandbox_pool_config restarts the pool. Call it before exit. */
void sbx_sandbox_pool_shutdown(void);

typedef struct {
    size_t target, ready, building; /* parked inits wanted, parked now, being built */
    size_t slots_total, slots_used; /* 65536-id blocks of the range (parked ones included) */
    uint64_t claimed, cold_creates; /* uid_base 0 creates served by the pool / cold */
    uint64_t built, build_failures; /* inits parked / failed to park since start */
} sbx_sandbox_pool_stats;
int sbx_sandbox_pool_stats_get(sbx_sandbox_pool_stats *st);
/* Waits until at least `ready` inits are parked: 0, or -ETIMEDOUT (timeout_ms < 0: forever). */
int sbx_sandbox_pool_wait(size_t ready, int timeout_ms);
/* Host pids of the parked inits (at most max); returns how many were stored. */
size_t sbx_sandbox_pool_pids(pid_t *out, size_t max);
/* Live sandboxes made by sbx_sandbox_create and not yet destroyed (parked inits excluded). */
size_t sbx_sandbox_count(void);

/* ---- disk limits (disk.c, diskpool.c): the home as an ext4 image per sandbox, attached
 * through a loop device and mounted by the executor: writes past disk_bytes or disk_inodes fail
 * inside with ENOSPC. */
#define SBX_DISK_MECH_LOOP "ext4-image-loop"
typedef struct {
    const char *dir; /* a directory on the filesystem of the homes (renames go from it to them):
                        the probe and the blank images live here; created (0700) */
    size_t blanks;   /* blank images kept formatted and mounted ahead (<= 64; 0 = none) */
    uint64_t bytes, inodes; /* their size: the server's defaults (creates of another size
                               format on demand) */
} sbx_disk_cfg;
typedef struct {
    const char *mechanism; /* SBX_DISK_MECH_LOOP, or NULL: no mechanism works here */
    char why[256];         /* then why (the step that failed and its error) */
    uint64_t probe_us;     /* what the probe took */
} sbx_disk_caps;
/* Probes once (an image made, attached, mounted and written in cfg->dir) and, when that works,
 * starts keeping cfg->blanks blank images. Returns 0 with *out filled (mechanism NULL when
 * none works, with why), -EINVAL for a bad cfg, -EALREADY when set up already. */
int sbx_disk_setup(const sbx_disk_cfg *cfg, sbx_disk_caps *out);
/* Stops the refill thread and unmounts the blanks (their files stay for the next start). */
void sbx_disk_shutdown(void);
typedef struct {
    size_t target, ready, building;
    uint64_t taken, made, failures; /* blanks given to new homes / made / failed to make */
} sbx_disk_stats;
int sbx_disk_stats_get(sbx_disk_stats *st);
/* Waits until at least `ready` blanks are ready: 0 or -ETIMEDOUT. */
int sbx_disk_wait(size_t ready, int timeout_ms);

typedef struct {
    uint64_t used_bytes, used_inodes;   /* what the home's filesystem holds now (its own */
    uint64_t limit_bytes, limit_inodes; /* metadata aside): statfs of the mount */
    const char *mechanism;              /* SBX_DISK_MECH_LOOP (static) */
} sbx_disk_usage;
/* The (disk_bytes, disk_inodes) the home image at path was made for: 0, -ENOENT (no image),
 * -ENODATA (an image that does not say). */
int sbx_disk_image_spec(const char *image, uint64_t *bytes, uint64_t *inodes);
/* The home's disk use: 0, or -ENOENT when the home is not a limited image. */
int sbx_sandbox_disk_usage(const sbx_sandbox *sb, sbx_disk_usage *u);

/* Kills every process of the sandbox, reaps its init, removes its cgroups, frees it. The home
 * dir (or image) stays. Pending calls on other threads fail with -EPIPE; the caller must make sure
 * no thread uses sb after this returns. NULL is harmless. */
void sbx_sandbox_destroy(sbx_sandbox *sb);

/* What is enforced for this sandbox, e.g. "userns", "memory:cgroup-v1", "seccomp",
 * "kill-tree:cgroup-v2-kill". The strings and array belong to sb. */
size_t sbx_sandbox_enforced(const sbx_sandbox *sb, const char *const **list);

typedef struct {
    const char *const *argv; /* NULL-terminated; argv[0] non-empty; searched in PATH */
    const char *const *env;  /* NULL-terminated "KEY=VALUE" added to (or replacing) the defaults
                                PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/user USER=user ...;
                                NULL = defaults only */
    const char *cwd;         /* NULL = /home/user */
    bool want_stdin;         /* else stdin is /dev/null */
    bool merge_stderr;       /* stderr into the stdout pipe (no stderr_fd) */
    uint32_t timeout_ms;     /* wall clock; 0 = none. At expiry the whole tree is SIGKILLed */
    uint16_t pty_cols;       /* both > 0: run on a new pseudo-terminal of this size (the */
    uint16_t pty_rows;       /* sandbox's devpts; want_stdin and merge_stderr are ignored) */
} sbx_spawn_req;

typedef struct {
    int pid;              /* pid inside the sandbox */
    int stdin_fd;         /* write end of the command's stdin, or -1 */
    int stdout_fd;        /* read end of its stdout */
    int stderr_fd;        /* read end of its stderr, or -1 with merge_stderr */
    bool pty;             /* stdin_fd and stdout_fd are two fds of the terminal's master side
                             (TIOCSWINSZ on either resizes it; reads fail with EIO once no
                             process holds the terminal); no stderr_fd */
    const char *err_what; /* on failure: "exec", "cwd", "setup" or "pty" (static), else NULL */
} sbx_spawned;

/* Starts a command. On success the three fds (close-on-exec, blocking) belong to the caller.
 * Errors: -ENOENT program not found when err_what is "exec" (a shell reports 127),
 * -EACCES not executable (126), -ENOENT/-ENOTDIR/-EACCES for the cwd ("cwd"), -ENOSPC no
 * terminal left in the sandbox's devpts ("pty"), -E2BIG/-EMSGSIZE
 * argv+env too large, -EAGAIN too many commands, -EPIPE the sandbox is dead. */
int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_req *req, sbx_spawned *out);

/* Delivers exits to cb (on the service thread, as on_exit: it must not block or call back into
 * this sandbox) instead of the exit queue, saving a thread wake-up per command; cb NULL goes
 * back to the queue. Returns once no call of the previous hook is running. The process table
 * (proc.h) uses it. */
void sbx_sandbox_set_exit_hook(sbx_sandbox *sb, sbx_exit_cb cb, void *arg);
/* An eventfd (owned by sb, non-blocking) that is readable while exits are queued. */
int sbx_sandbox_exit_fd(const sbx_sandbox *sb);
/* Pops the oldest queued exit into *ev: 0, or -EAGAIN when none is queued. */
int sbx_sandbox_next_exit(sbx_sandbox *sb, sbx_exit *ev);

/* Sends sig to a process of the sandbox (pid as seen inside; pid 1 is refused with -EPERM).
 * -ESRCH when no such process in this sandbox. */
int sbx_sandbox_signal(sbx_sandbox *sb, int pid, int sig);
/* Same, to the process group (each command leads its own session and group). */
int sbx_sandbox_signal_group(sbx_sandbox *sb, int pid, int sig);
/* SIGKILLs the whole tree of the command whose main pid is pid (its per-command cgroup, so
 * daemonised children die too; else its process group). -ESRCH for an unknown command. */
int sbx_sandbox_kill_tree(sbx_sandbox *sb, int pid);
/* SIGKILLs every process of the sandbox except its init. */
int sbx_sandbox_kill_all(sbx_sandbox *sb);
/* Round trip to the init: 0 when it is alive and serving. */
int sbx_sandbox_ping(sbx_sandbox *sb);
/* false once the init has died or the socket broke. */
bool sbx_sandbox_alive(const sbx_sandbox *sb);

/* Host pid of the init (pid 1 inside): /proc/<pid>/root is the sandbox root, /proc/<pid>/ns/net
 * its network namespace. Valid until sbx_sandbox_destroy (the init is not reaped before). */
pid_t sbx_sandbox_init_pid(const sbx_sandbox *sb);
/* The sandbox root (an O_PATH directory fd: openat2 RESOLVE_IN_ROOT from it never leaves the
 * sandbox) and its network namespace (for setns), as the init sent them with its final Ready,
 * so that no /proc/<pid>/... of another uid is opened (that needs CAP_SYS_PTRACE, which
 * container runtimes drop). Borrowed: valid until sbx_sandbox_destroy; dup to keep. */
int sbx_sandbox_root_fd(const sbx_sandbox *sb);
int sbx_sandbox_netns_fd(const sbx_sandbox *sb);
/* Host uid that the sandbox user (1000 inside) maps to. */
uid_t sbx_sandbox_user_uid(const sbx_sandbox *sb);
/* Host uid of root inside (the first of its 65536 ids): cfg->uid_base, or the block the pool
 * chose when that was 0. */
uint32_t sbx_sandbox_uid_base(const sbx_sandbox *sb);
/* Whether the sandbox was a parked init claimed from the warm pool (false: created cold). */
bool sbx_sandbox_from_pool(const sbx_sandbox *sb);

typedef struct {
    uint64_t memory_current, memory_peak, oom_kills, pids_current;
} sbx_sandbox_stats;
/* Reads the sandbox's cgroup counters. */
int sbx_sandbox_read_stats(const sbx_sandbox *sb, sbx_sandbox_stats *st);

#ifdef __cplusplus
}
#endif
#endif
