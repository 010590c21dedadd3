/* sandbox_int.h: what the files of the sandbox runtime share with each other and with nothing
 * else (the library's door is sandbox.h). The runtime, one concern per file:
 *   service.c  the service thread (reads every init socket, hands answers to waiting callers,
 *              queues exits), the spawner thread (posix_spawn of every init), the registry of
 *              sandboxes, and requests to an init
 *   sandbox.c  a sandbox's life: alloc, cold create, the Setup/Ready hand-shake, destroy,
 *              accessors
 *   command.c  commands in a sandbox: spawn, signals, kill-all, ping, the exit queue
 *   pool.c     the warm pool of parked inits and the creates that let it choose the uid range
 *   home.c     the home: a directory (created, re-owned into the sandbox's uid range, cloned
 *              as a detached mount for the init; templates too) or an image (disk.c)
 *   disk.c     the home as an ext4 image on a loop device: the total disk limit
 *   diskpool.c whether images work here (probed once), and blank images made ahead
 *   detect.c   what this kernel and cgroup setup allow (probed once, cached)
 *
 * Lock order (never the other way round): svc dispatch (held by the service thread for one
 * epoll batch) -> svc registry lock -> pool.lock; svc dispatch -> sb->lock. sb->lock is never
 * held while another lock is taken. The caps lock of detect.c is taken alone. */
#ifndef SBX_SANDBOX_INT_H
#define SBX_SANDBOX_INT_H

#include <pthread.h>

#include "cgroup.h"
#include "sandbox.h"
#include "wire.h"

#define MAX_ENFORCED 24
#define REQUEST_TIMEOUT_MS 30000
#define SETUP_TIMEOUT_MS 10000 /* Setup/Claim to Ready */
#define USER_ID 1000u          /* the sandbox user inside */
#define UID_BLOCK 65536u       /* ids of one sandbox */
#define DEFAULT_TMP_BYTES (64ull << 20)
#define DEFAULT_NOFILE 1024

/* A caller waiting for the init's answer to its request (lives on the caller's stack). */
typedef struct sbx__pending {
    uint64_t id;
    bool done;
    int err;
    Sbxinit__InitMsg *msg;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds;
    struct sbx__pending *next;
} sbx__pending;

struct sbx_sandbox {
    uint64_t key; /* registry key used as the epoll cookie */
    char id[65];
    int sock;
    int exit_efd;
    pid_t init_pid;
    int root_fd;  /* the sandbox root (O_PATH) and network namespace, sent with the final */
    int netns_fd; /* Ready; -1 until then. Owned; closed by sbx__sb_free */
    int disk_fd;  /* the home image's mount (statfs), or -1. Owned; closed by sbx__sb_free */
    uint32_t uid_base;
    int slot;       /* index of uid_base in the pool's range, or -1 (the caller's own range) */
    bool parked;    /* a pool init not claimed yet: not a sandbox (sbx_sandbox_count) */
    bool from_pool; /* claimed from the warm pool (else created cold) */
    bool userns;
    sbx_cg cg;
    sbx_cg_limits cg_lim; /* what the groups hold now */
    const char *enforced[MAX_ENFORCED];
    size_t nenforced;
    sbx_exit_cb cb;
    void *cb_arg;
    sbx_exit_cb hook; /* sbx_sandbox_set_exit_hook: exits go here instead of the queue */
    void *hook_arg;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* CLOCK_MONOTONIC */
    bool dead;
    int inflight; /* callers inside a request */
    uint64_t next_id;
    sbx__pending *pending;
    sbx_exit *q; /* ring of queued exits */
    size_t qhead, qlen, qcap;
    int *live; /* pids started and not yet reported exited */
    size_t nlive, caplive;
};

/* ---- service.c */
/* Starts the service and spawner threads once; 0 or the error of that first start. */
int sbx__svc_start(void);
/* posix_spawn of the init helper on the spawner thread (sock at fd 3, cg2fd at fd 4 when >= 0);
 * returns its pid or -errno. */
pid_t sbx__svc_spawn(const char *path, int sock, int cg2fd);
/* Registers sb under a new key: -EEXIST when a sandbox (or parked init) has its id. */
int sbx__svc_add(sbx_sandbox *sb);
/* Unregisters sb, stops watching its socket and waits out an epoll batch that may use it. */
void sbx__svc_remove(sbx_sandbox *sb);
/* Starts reading sb's socket on the service thread. */
int sbx__svc_watch(sbx_sandbox *sb);
/* Returns once no epoll batch of the service thread that started before the call runs. */
void sbx__svc_barrier(void);
/* The registry lock, for a check-and-rename that must be atomic with the duplicate-id check. */
void sbx__svc_lock(void);
void sbx__svc_unlock(void);
bool sbx__svc_has_id_locked(const char *id);
/* Sends msg with nfds descriptors (the caller keeps them) and waits up to timeout_ms for the
 * answer. On 0, p->msg and p->fds belong to the caller (sbx__pending_release). -EPIPE when
 * the sandbox is dead, -ETIMEDOUT, or -errno of the send. */
int sbx__request_fds(sbx_sandbox *sb, Sbxinit__InitMsg *msg, const int *fds, size_t nfds,
                     sbx__pending *p, int timeout_ms);
int sbx__request(sbx_sandbox *sb, Sbxinit__InitMsg *msg, sbx__pending *p, int timeout_ms);
/* A request answered by a Result: 0 or its -err (-EPROTO for another answer). */
int sbx__request_result(sbx_sandbox *sb, Sbxinit__InitMsg *msg);
/* Closes the answer's descriptors and frees it. */
void sbx__pending_release(sbx__pending *p);

/* ---- sandbox.c */
bool sbx__valid_id(const char *id);
sbx_sandbox *sbx__sb_alloc(const char *id, uint32_t uid_base, int slot);
void sbx__sb_free(sbx_sandbox *sb);
/* Makes the init socket and spawns the helper (the sandbox's groups exist). *cg2fd is the
 * cgroup2 dir handed to the init (the caller closes it once Setup was answered). */
pid_t sbx__sb_spawn_init(sbx_sandbox *sb, const char *init_path, int *cg2fd);
/* Moves the helper into the sandbox's groups and starts reading the socket. Kills and reaps
 * the helper on failure. */
int sbx__sb_attach(sbx_sandbox *sb, pid_t helper);
/* Sends Setup (with nfds descriptors: the detached mounts its flags announce; the caller keeps
 * them) to the helper and waits for the init's Ready; reaps the helper. */
int sbx__sb_setup(sbx_sandbox *sb, Sbxinit__Setup *su, pid_t helper, const int *fds, size_t nfds);
/* Records a Ready answer (the init pid and what the init enforces) and releases it. */
int sbx__sb_take_ready(sbx_sandbox *sb, sbx__pending *p);
void sbx__sb_add_rlimit_enforced(sbx_sandbox *sb);
sbx_cg_limits sbx__cg_limits_of(const sbx_sandbox_limits *l);
/* A cold create in the range at uid_base (slot: its pool block, or -1; released on failure). */
int sbx__sb_create_cold(const sbx_sandbox_cfg *cfg, uint32_t uid_base, int slot, sbx_sandbox **out);

/* ---- pool.c */
/* uid_base 0: claims a parked init that fits cfg, else a cold create in a free block. */
int sbx__pool_create(const sbx_sandbox_cfg *cfg, sbx_sandbox **out);
/* Gives a block of the range back (slot < 0: nothing). */
void sbx__pool_slot_put(int slot);
/* Does [base, base + 65536) overlap the pool's range? */
bool sbx__pool_in_range(uint32_t base);

/* ---- home.c */
/* The home of sb as a detached mount for its init (*mnt_fd, the caller's): created or
 * attached, owned by sb's user (uid_base + 1000). 0 or -errno (logged). */
int sbx__home_open(sbx_sandbox *sb, const sbx_sandbox_cfg *cfg, int *mnt_fd);
/* Creates the home (0700, parents 0755) and makes the sandbox user (uid_base + 1000) own it,
 * re-owning a tree left by a sandbox in another uid range. */
int sbx__home_prepare(const char *home, uint32_t uid_base);
/* A detached, private, nosuid+nodev clone of the home for an init to attach; fd or -errno. */
int sbx__home_mount_fd(const char *home);
/* A detached, private, recursive, read-only nosuid+nodev clone of a template root; fd or
 * -errno. */
int sbx__template_mount_fd(const char *root);
/* The uid_base whose sandbox user owns cfg's home (dir or image) now, or 0 (missing, or not a
 * sandbox's). */
uint32_t sbx__home_owner_base(const sbx_sandbox_cfg *cfg);
/* Re-owns the tree under dfd (not closed) from old_base's range into new_base's. */
int sbx__home_remap(int dfd, uint32_t old_base, uint32_t new_base);

/* ---- disk.c */
/* The journal (MiB, 0 = none) and the image file size that give bytes of data and inodes. */
uint32_t sbx__disk_journal_mb(uint64_t bytes);
uint64_t sbx__disk_image_bytes(uint64_t bytes, uint64_t inodes);
bool sbx__disk_have_mke2fs(void);
/* Creates name in dir_fd (dir: its path, for mke2fs) as an image of that capacity, root owned
 * by owner. Removed again on failure. 0 or -errno with err. */
int sbx__disk_format(int dir_fd, const char *dir, const char *name, uint64_t bytes, uint64_t inodes,
                     uint32_t owner, char *err, size_t errlen);
/* Locks img_fd's image (waiting for a previous mount to go), attaches it to a loop device
 * (nodes made in dir_fd when /dev has none) and mounts it: the detached mount's fd, or -errno
 * with err. img_fd stays the caller's. */
int sbx__disk_mount_fd(int img_fd, int dir_fd, char *err, size_t errlen);
/* The root of a mounted image for the user of uid_base: owned (a tree of another range
 * re-owned), 0700; fresh: lost+found removed. */
int sbx__disk_root_prepare(int mnt_fd, uint32_t uid_base, bool fresh);
/* The home image at path as a detached mount ready for uid_base's user: attached, or made
 * (a blank taken, else formatted now) when missing. The mount fd, or -errno with err. */
int sbx__disk_open(const char *path, uint64_t bytes, uint64_t inodes, uint32_t uid_base, char *err,
                   size_t errlen);
int sbx__disk_usage(int mnt_fd, sbx_disk_usage *u);
/* Remembers (xattr on the image file) / reads which uid_base's user owns the image now. */
void sbx__disk_set_owner_hint(const char *image, uint32_t uid_base);
uint32_t sbx__disk_owner_hint(const char *image);

/* ---- diskpool.c */
/* A blank image of exactly (bytes, inodes), renamed to path: its mount fd (the caller's), or
 * -errno (-ENOENT: none ready). */
int sbx__diskpool_take(const char *path, uint64_t bytes, uint64_t inodes);
/* SBX_DISK_MECH_LOOP once sbx_disk_setup found it works, else NULL. */
const char *sbx__disk_mechanism(void);

/* ---- detect.c */
/* What every create and pool configuration needs first: the service threads running and the
 * host's caps detected (*caps). 0 or -errno. */
int sbx__runtime_start(const char *init_path, sbx_sandbox_caps *caps);
/* The cgroup environment found by sbx_sandbox_caps_detect (zeroed before it ran). */
sbx_cg_env sbx__detect_cg_env(void);

#endif
