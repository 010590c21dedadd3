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

/* Probes the kernel once (runs `init_path --probe` to try the namespaces, reads the cgroup
 * mounts) and logs the result; later calls return the cached result. init_path may be NULL
 * after the first call. Returns 0 or -errno; *out is copied. */
int sbx_sandbox_caps_detect(const char *init_path, sbx_sandbox_caps *out);

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
                                  owned by the sandbox user; NULL = a tmpfs home */
    const char *template_root; /* NULL: host /usr, /etc, /bin, /lib...; else this tree, read-only */
    const char *cgroup_parent; /* group under the executor's own cgroups; NULL = "sbx" */
    uint32_t uid_base;         /* host uid/gid of root inside; 65536 ids from here belong to this
                                  sandbox alone (>= 65536). The user (1000) is uid_base + 1000. */
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
 * with this id exists in this executor), -ETIMEDOUT (init did not answer), other -errno. */
int sbx_sandbox_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out);

/* Kills every process of the sandbox, reaps its init, removes its cgroups, frees it. The home
 * dir stays. Pending calls on other threads fail with -EPIPE; the caller must make sure no
 * thread uses sb after this returns. NULL is harmless. */
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
} sbx_spawn_req;

typedef struct {
    int pid;              /* pid inside the sandbox */
    int stdin_fd;         /* write end of the command's stdin, or -1 */
    int stdout_fd;        /* read end of its stdout */
    int stderr_fd;        /* read end of its stderr, or -1 with merge_stderr */
    const char *err_what; /* on failure: "exec", "cwd" or "setup" (static), else NULL */
} sbx_spawned;

/* Starts a command. On success the three fds (close-on-exec, blocking) belong to the caller.
 * Errors: -ENOENT program not found when err_what is "exec" (a shell reports 127),
 * -EACCES not executable (126), -ENOENT/-ENOTDIR/-EACCES for the cwd ("cwd"), -E2BIG/-EMSGSIZE
 * argv+env too large, -EAGAIN too many commands, -EPIPE the sandbox is dead. */
int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_req *req, sbx_spawned *out);

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
/* Host uid that the sandbox user (1000 inside) maps to. */
uid_t sbx_sandbox_user_uid(const sbx_sandbox *sb);

typedef struct {
    uint64_t memory_current, memory_peak, oom_kills, pids_current;
} sbx_sandbox_stats;
/* Reads the sandbox's cgroup counters. */
int sbx_sandbox_read_stats(const sbx_sandbox *sb, sbx_sandbox_stats *st);

/* Bytes used by the home dir (a walk of the tree; files counted by allocated blocks). The
 * executor can compare this with a disk quota: the kernel enforces only RLIMIT_FSIZE per file
 * on the home bind. */
int sbx_sandbox_home_usage(const sbx_sandbox *sb, uint64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
