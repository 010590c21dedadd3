/* sbx.h: libsbx, the C client of sbx (sandboxes + state store over gRPC).
 *
 * A small, opaque API in the curl "easy" spirit: create one sbx_client from an sbx_config, call
 * one function per operation, free what you are given. No gRPC or protobuf type appears here.
 *
 * Conventions
 * - Every operation returns NULL on success or an sbx_error * describing the failure; the
 *   caller owns the error and frees it with sbx_error_free() (freeing NULL is harmless).
 *   On error, out-parameters are left zeroed/NULL.
 * - Status codes are gRPC's own numbers (SBX_CODE_*). A service that cannot be reached (after
 *   retries for idempotent calls) is SBX_CODE_UNAVAILABLE.
 * - Strings returned inside result structs are NUL-terminated, malloc'd, and owned by that
 *   struct: free the struct with its *_free / *_clear function, never its members.
 * - Routing: the executor and the store may each be several addresses ("a:1,b:2"). Calls about
 *   a project go to the instance picked by rendezvous hashing of the project id (stable; adding
 *   an address moves only the projects the new one wins). The KV space, which belongs to the
 *   tenant rather than a project, lives on the instance chosen for the reserved key "kv".
 *   Listing calls without a project (ListProjects, ListSandboxes) ask every instance and merge.
 * - Retries: UNAVAILABLE is retried with jittered exponential backoff for idempotent calls only
 *   (reads; writes made idempotent by the contract, e.g. Exec/Run with a request_id, which
 *   libsbx generates when the caller gives none). Streams resume from where they broke
 *   (byte offsets, sequence numbers) so output is neither lost nor duplicated.
 * - Thread safety: an sbx_client may be used from several threads at once.
 */
#ifndef SBX_H
#define SBX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* gRPC status codes (never renumbered). */
enum {
    SBX_CODE_OK = 0,
    SBX_CODE_CANCELLED = 1,
    SBX_CODE_UNKNOWN = 2,
    SBX_CODE_INVALID_ARGUMENT = 3,
    SBX_CODE_DEADLINE_EXCEEDED = 4,
    SBX_CODE_NOT_FOUND = 5,
    SBX_CODE_ALREADY_EXISTS = 6,
    SBX_CODE_PERMISSION_DENIED = 7,
    SBX_CODE_RESOURCE_EXHAUSTED = 8,
    SBX_CODE_FAILED_PRECONDITION = 9,
    SBX_CODE_ABORTED = 10,
    SBX_CODE_OUT_OF_RANGE = 11,
    SBX_CODE_UNIMPLEMENTED = 12,
    SBX_CODE_INTERNAL = 13,
    SBX_CODE_UNAVAILABLE = 14,
    SBX_CODE_DATA_LOSS = 15,
    SBX_CODE_UNAUTHENTICATED = 16,
};

typedef struct sbx_error {
    int code;         /* SBX_CODE_* */
    const char *name; /* canonical status name, "NOT_FOUND"; static storage */
    char *message;    /* human-readable detail, never NULL (may be ""); owned by the error */
    char *target;     /* address that answered ("127.0.0.1:50052"), NULL for local errors */
    int attempts;     /* attempts made (> 1 after retries) */
} sbx_error;

/* Frees an error and its strings. NULL is harmless. */
void sbx_error_free(sbx_error *e);
/* Canonical name of a status code ("UNKNOWN" for unknown numbers); static storage. */
const char *sbx_code_name(int code);
/* Makes an error (for callers that want to report their own failures the same way). The
 * message is formatted printf-style. Returns NULL only when out of memory. Caller frees. */
sbx_error *sbx_error_new(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ client */

/* Initialise / release the process-wide RPC runtime. Call sbx_global_init() once before the
 * first sbx_client_new() and sbx_global_cleanup() after the last sbx_client_free(). */
void sbx_global_init(void);
void sbx_global_cleanup(void);

typedef struct sbx_client sbx_client;

typedef enum { SBX_SERVICE_EXECUTOR = 0, SBX_SERVICE_STORE = 1 } sbx_service;

typedef struct sbx_config {
    const char *executor; /* "HOST:PORT[,HOST:PORT...]"; NULL/"" = "127.0.0.1:50051" */
    const char *store;    /* same; NULL/"" = "127.0.0.1:50052" */
    const char *api_key;  /* sent as "authorization: Bearer <key>"; NULL = none */
    const char *tls_ca;   /* PEM file: enables TLS, verifies the server */
    const char *tls_cert; /* PEM files: client certificate + key for mTLS */
    const char *tls_key;
    const char *tls_server_name; /* override of the name checked in the server certificate */
    int64_t deadline_ms;         /* per-call deadline of unary calls; 0 = 30000; < 0 = none */
    int max_attempts;            /* retry attempts for idempotent calls (incl. the first); 0 = 5 */
    int64_t backoff_initial_ms;  /* 0 = 100 */
    int64_t backoff_max_ms;      /* 0 = 5000 */
} sbx_config;

/* Creates a client. All strings of cfg are copied. Channels connect lazily, so a stopped
 * service is noticed at the first call, not here. Errors: INVALID_ARGUMENT (malformed address
 * list), NOT_FOUND / PERMISSION_DENIED (unreadable TLS files). *out is owned by the caller:
 * free it with sbx_client_free(). */
sbx_error *sbx_client_new(const sbx_config *cfg, sbx_client **out);
/* Frees the client and its channels. NULL is harmless. */
void sbx_client_free(sbx_client *c);

/* Number of addresses configured for a service, and the i-th one (owned by the client). */
size_t sbx_client_addr_count(const sbx_client *c, sbx_service svc);
const char *sbx_client_addr(const sbx_client *c, sbx_service svc, size_t i);
/* The address that serves project_id (owned by the client). */
const char *sbx_client_route(const sbx_client *c, sbx_service svc, const char *project_id);

/* Rendezvous (highest random weight) hashing: the index in addrs[0..n) that owns key; -1 when
 * n == 0. Deterministic across processes and platforms. */
int sbx_rendezvous_pick(const char *const *addrs, size_t n, const char *key);
/* The 64-bit score used above, exposed for tests and tools. */
uint64_t sbx_rendezvous_score(const char *addr, const char *key);

/* ------------------------------------------------------------------ small shared types */

typedef struct sbx_field {
    char *key;
    char *value;
} sbx_field;

/* A random idempotency id (UUID v4 text, 36 chars + NUL) from the kernel's CSPRNG. */
void sbx_request_id_new(char out[37]);

/* Health of one address of a service: *status is 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN,
 * 0 UNKNOWN. index < sbx_client_addr_count(). */
sbx_error *sbx_health_check(sbx_client *c, sbx_service svc, size_t index, int *status);

/* A new API key for tenant: *key is "sbx_" + 43 base64url characters (256 random bits from
 * /dev/urandom); *keys_line is the API-keys file line "TENANT:SHA256HEX". Both are malloc'd
 * and owned by the caller. Errors: INVALID_ARGUMENT (tenant not 1..64 [A-Za-z0-9._-]),
 * INTERNAL (no randomness). */
sbx_error *sbx_keygen(const char *tenant, char **key, char **keys_line);

/* ------------------------------------------------------------------ KV (store) */

typedef struct sbx_kv_entry {
    char *key;
    uint8_t *value; /* value_len bytes, plus a NUL after them for convenience */
    size_t value_len;
    uint64_t version;
    int64_t expires_at_ms; /* 0 = no expiry */
} sbx_kv_entry;

typedef struct sbx_kv_set_opts {
    int64_t ttl_s;             /* 0 = no expiry */
    int64_t expires_at_ms;     /* absolute expiry alternative; 0 = none */
    bool check_version;        /* compare-and-set: write only if the version is expected_version */
    uint64_t expected_version; /* 0 = the key must not exist */
} sbx_kv_set_opts;

/* Set: opts may be NULL. *version / *expires_at_ms (either may be NULL) receive the result.
 * FAILED_PRECONDITION when a CAS check fails. Retried only without check_version. */
sbx_error *sbx_kv_set(sbx_client *c, const char *key, const void *value, size_t len,
                      const sbx_kv_set_opts *opts, uint64_t *version, int64_t *expires_at_ms);
/* Get: NOT_FOUND when missing or expired. *out is owned by the caller (sbx_kv_entry_free). */
sbx_error *sbx_kv_get(sbx_client *c, const char *key, sbx_kv_entry **out);
/* Delete: *existed (may be NULL) tells whether a live key was removed. */
sbx_error *sbx_kv_del(sbx_client *c, const char *key, bool *existed);
/* Incr: atomic add; never retried unless delta == 0. value/version may be NULL. */
sbx_error *sbx_kv_incr(sbx_client *c, const char *key, int64_t delta, int64_t *value,
                       uint64_t *version);
/* Flush the caller's tenant's KV space. */
sbx_error *sbx_kv_flush(sbx_client *c, uint64_t *deleted);

typedef struct sbx_kv_list {
    sbx_kv_entry *entries;
    size_t count;
    char *next_cursor; /* "" = no more keys */
} sbx_kv_list;

/* One page of keys in byte order. prefix/cursor may be NULL. limit 0 = server default (100).
 * *out is owned by the caller (sbx_kv_list_free). */
sbx_error *sbx_kv_list_page(sbx_client *c, const char *prefix, const char *cursor, int limit,
                            bool keys_only, sbx_kv_list **out);
void sbx_kv_entry_free(sbx_kv_entry *e);
void sbx_kv_list_free(sbx_kv_list *l);

/* ------------------------------------------------------------------ projects (store) */

typedef struct sbx_project {
    char *project_id;
    uint64_t version;
    sbx_field *fields; /* sorted by key */
    size_t n_fields;
    int64_t created_at_ms;
    int64_t updated_at_ms; /* 0 = never updated */
    uint64_t execution_count;
    uint64_t last_execution_seq;
    int64_t last_execution_at_ms;
    int last_exit_code;
    uint64_t retention_max_records;
    int64_t retention_max_age_s;
} sbx_project;

/* NOT_FOUND for an unknown project. *out owned by the caller (sbx_project_free). */
sbx_error *sbx_project_get(sbx_client *c, const char *project_id, sbx_project **out);

typedef struct sbx_project_update {
    const sbx_field *set; /* fields to write */
    size_t n_set;
    const char *const *remove; /* field keys to delete */
    size_t n_remove;
    bool check_version; /* apply only if the version is expected_version (0 = new) */
    uint64_t expected_version;
} sbx_project_update;

/* Merge fields. FAILED_PRECONDITION "version mismatch: expected E, current C" when the CAS
 * check fails. *out (may be NULL) receives the updated project (caller frees). */
sbx_error *sbx_project_update_fields(sbx_client *c, const char *project_id,
                                     const sbx_project_update *u, sbx_project **out);
/* Removes the project's metadata, history and cache. *existed may be NULL. */
sbx_error *sbx_project_delete(sbx_client *c, const char *project_id, bool *existed);

typedef struct sbx_project_list {
    sbx_project *projects; /* byte-wise project_id order, merged over every store instance */
    size_t count;
    bool truncated; /* more matched than limit */
} sbx_project_list;

/* All projects (prefix may be NULL), at most limit (0 = no limit). Caller frees. */
sbx_error *sbx_project_list_all(sbx_client *c, const char *prefix, size_t limit,
                                sbx_project_list **out);
void sbx_project_free(sbx_project *p);
void sbx_project_list_free(sbx_project_list *l);

/* ------------------------------------------------------------------ history + cache (store) */

typedef struct sbx_record {
    char *project_id;
    uint64_t seq;
    char *record_id;
    char *command;
    char **argv;
    size_t argc;
    char *cwd;
    int exit_code;
    int signal;
    bool timed_out;
    bool output_truncated;
    bool cached;
    uint8_t *out; /* stdout (NUL after out_len for convenience); empty unless asked */
    size_t out_len;
    uint8_t *err; /* stderr */
    size_t err_len;
    int64_t started_at_ms;
    int64_t duration_us;
    char *sandbox_id;
    char *tag;
    char *command_key;
    uint64_t stdout_bytes;
    uint64_t stderr_bytes;
    int64_t recorded_at_ms;
} sbx_record;

typedef struct sbx_history_page {
    sbx_record *records; /* newest first */
    size_t count;
    char *next_page_token; /* "" = no more */
} sbx_history_page;

typedef struct sbx_history_query {
    int limit;              /* 0 = 50 (server clamps at 1000) */
    const char *page_token; /* NULL = newest */
    int64_t since_ms;       /* 0 = unbounded */
    int64_t until_ms;
    bool include_output;
} sbx_history_query;

/* One page of a project's history (unknown project = empty). q may be NULL. Caller frees. */
sbx_error *sbx_history_list(sbx_client *c, const char *project_id, const sbx_history_query *q,
                            sbx_history_page **out);
void sbx_history_page_free(sbx_history_page *p);

/* Called per record; return non-zero to stop watching (sbx_history_watch then returns NULL). */
typedef int (*sbx_record_fn)(const sbx_record *r, void *ud);
/* Streams records with seq >= from_seq (0 = only new ones), then live appends, until fn says
 * stop or the stream fails. Reconnects after UNAVAILABLE from the last seq + 1. deadline_ms
 * <= 0 = none. */
sbx_error *sbx_history_watch(sbx_client *c, const char *project_id, uint64_t from_seq,
                             bool include_output, int64_t deadline_ms, sbx_record_fn fn, void *ud);

/* What to record (history add / import). All pointers are borrowed for the call. */
typedef struct sbx_record_in {
    const char *record_id; /* idempotency id; NULL/"" = none (then the call is not retried) */
    const char *command;   /* display form; NULL = argv joined with shell quoting */
    const char *const *argv;
    size_t argc;
    const char *cwd;
    int exit_code;
    int signal;
    bool timed_out;
    bool output_truncated;
    const void *out;
    size_t out_len;
    const void *err;
    size_t err_len;
    int64_t started_at_ms; /* 0 = the server's time */
    int64_t duration_us;
    const char *sandbox_id;
    const char *tag;
    const char *command_key; /* NULL = computed with sbx_command_key() from argv and cwd */
} sbx_record_in;

/* RecordExecution: appends to history and, with cache_ttl_s > 0, fills the cache in one atomic
 * write. *seq / *duplicate may be NULL. */
sbx_error *sbx_history_record(sbx_client *c, const char *project_id, const sbx_record_in *r,
                              int64_t cache_ttl_s, uint64_t *seq, bool *duplicate);

typedef struct sbx_cached {
    char *command_key;
    int exit_code;
    int signal;
    bool timed_out;
    bool output_truncated;
    uint8_t *out;
    size_t out_len;
    uint8_t *err;
    size_t err_len;
    int64_t duration_us;
    int64_t created_at_ms;
    int64_t expires_at_ms;
    uint64_t seq;
} sbx_cached;

/* GetCachedResult: *found false (and *out NULL) on a miss; *expired (may be NULL) tells an
 * expired entry. *out owned by the caller (sbx_cached_free). */
sbx_error *sbx_cache_get(sbx_client *c, const char *project_id, const char *command_key,
                         bool *found, bool *expired, sbx_cached **out);
/* ClearCache: command_key NULL/"" = the whole project. *cleared may be NULL. */
sbx_error *sbx_cache_clear(sbx_client *c, const char *project_id, const char *command_key,
                           uint64_t *cleared);
void sbx_cached_free(sbx_cached *r);

/* The cache key of a command, as lowercase hex SHA-256 (64 chars + NUL) of a canonical,
 * length-prefixed encoding: "sbx.cmdkey.v1", then "argv" + each argument or "shell" + the
 * string, the working directory normalised against /home/user ("" = /home/user), the env
 * entries "K=V" sorted bytewise, and the stdin bytes. shell != NULL selects the shell form. */
void sbx_command_key(const char *const *argv, size_t argc, const char *shell, const char *cwd,
                     const char *const *env, size_t n_env, const void *stdin_data, size_t stdin_len,
                     char out[65]);

/* ------------------------------------------------------------------ processes (executor) */

typedef struct sbx_exec_req {
    const char *project_id; /* or sandbox_id (one of them is required) */
    const char *sandbox_id;
    const char *const *argv; /* argv command ... */
    size_t argc;
    const char *shell;      /* ... or a /bin/sh -c string (wins when set) */
    const char *cwd;        /* NULL = /home/user */
    const char *const *env; /* "K=V" entries */
    size_t n_env;
    const void *stdin_data;
    size_t stdin_len;
    bool close_stdin;
    int64_t timeout_ms;       /* 0 = sandbox default */
    int64_t max_output_bytes; /* 0 = sandbox default */
    bool background;
    const char *tag;
    int64_t cache_ttl_s;    /* > 0: answer from / fill the cache */
    const char *request_id; /* NULL = generated, so retries never run the command twice */
    int64_t deadline_ms;    /* 0 = none (the command's own timeout bounds it) */
    /* pty_cols/pty_rows (both 1..1000): run on a pseudo-terminal of this size. Its output
       comes as stdout (no stderr); stdin stays open for sbx_proc_send_input (what is typed,
       echoed by the terminal) and sbx_terminal_resize; close_stdin / sbx_proc_close_input
       type EOF (^D). Without max_output_bytes the output is not capped. A foreground command
       whose call is cancelled is hung up (SIGHUP), as when a terminal closes. 0 = pipes. */
    uint32_t pty_cols, pty_rows;
} sbx_exec_req;

typedef struct sbx_exec_result {
    int pid;
    char *sandbox_id;
    bool exited;   /* false for a background start */
    int exit_code; /* 0..255, or 128 + signal */
    int signal;
    bool timed_out;
    bool output_truncated;
    bool cached;
    bool oom_killed;
    int64_t duration_us;
    uint64_t stdout_bytes;
    uint64_t stderr_bytes;
    int64_t started_at_ms;
    int64_t finished_at_ms;
} sbx_exec_result;

typedef enum { SBX_STDOUT = 1, SBX_STDERR = 2 } sbx_stream_id;

/* Output callback: a chunk of stdout or stderr at byte offset `offset` of that stream. Return
 * non-zero to cancel the call (the foreground command is then left to its request_id rules). */
typedef int (*sbx_output_fn)(sbx_stream_id stream, const void *data, size_t len, uint64_t offset,
                             void *ud);
/* Started callback (may be NULL): pid 0 for a cached answer. */
typedef void (*sbx_started_fn)(int pid, const char *sandbox_id, void *ud);

/* Exec: runs the command and streams its output to on_output (may be NULL). After UNAVAILABLE
 * the call is retried with the same request_id; output already delivered is not repeated.
 * *res is filled (free its strings with sbx_exec_result_clear). */
sbx_error *sbx_exec(sbx_client *c, const sbx_exec_req *r, sbx_started_fn on_started,
                    sbx_output_fn on_output, void *ud, sbx_exec_result *res);
void sbx_exec_result_clear(sbx_exec_result *r);

/* Selects a background process by pid (> 0) or tag. */
typedef struct sbx_proc_sel {
    int pid;
    const char *tag;
} sbx_proc_sel;

/* AttachProcess: replays output from the offsets, then (follow) live output until exit.
 * res->exited tells whether the exit was seen. */
sbx_error *sbx_attach(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                      uint64_t stdout_offset, uint64_t stderr_offset, bool follow,
                      sbx_output_fn on_output, void *ud, sbx_exec_result *res);

typedef struct sbx_proc_info {
    int pid;
    char *tag;
    char *command; /* argv joined with shell quoting, or the shell string */
    char *cwd;
    bool running;
    bool background;
    bool stdin_open;
    int64_t started_at_ms;
    uint64_t stdout_bytes;
    uint64_t stderr_bytes;
    bool has_exit;
    int exit_code;
    int signal;
    bool timed_out;
    int64_t duration_us;
    bool pty;            /* runs on a pseudo-terminal ... */
    uint32_t cols, rows; /* ... of this size */
} sbx_proc_info;

typedef struct sbx_proc_list {
    sbx_proc_info *procs; /* oldest first */
    size_t count;
} sbx_proc_list;

sbx_error *sbx_proc_list_get(sbx_client *c, const char *project_id, bool include_exited,
                             sbx_proc_list **out);
void sbx_proc_list_free(sbx_proc_list *l);
/* Sends signal (0 = SIGTERM) to the process group. Retried only for SIGTERM/SIGKILL. */
sbx_error *sbx_proc_signal(sbx_client *c, const char *project_id, sbx_proc_sel sel, int signal);
/* Writes bytes to a background process's stdin (never retried) / closes it. */
sbx_error *sbx_proc_send_input(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                               const void *data, size_t len);
sbx_error *sbx_proc_close_input(sbx_client *c, const char *project_id, sbx_proc_sel sel);
/* ResizeTerminal: the new size (1..1000 each) of a process's pseudo-terminal; SIGWINCH reaches
 * its foreground process group. FAILED_PRECONDITION when it has no terminal or exited.
 * Idempotent (retried). */
sbx_error *sbx_terminal_resize(sbx_client *c, const char *project_id, sbx_proc_sel sel,
                               uint32_t cols, uint32_t rows);

/* ------------------------------------------------------------------ watching (executor) */

/* Numbered as the wire's WatchEventKind. */
typedef enum {
    SBX_WATCH_READY = 1, /* the watch is in place (path: the watched directory) */
    SBX_WATCH_CREATE = 2,
    SBX_WATCH_MODIFY = 3,
    SBX_WATCH_DELETE = 4,
    SBX_WATCH_RENAME_FROM = 5, /* with RENAME_TO: the same cookie */
    SBX_WATCH_RENAME_TO = 6,
    SBX_WATCH_OVERFLOW = 7, /* events were lost: list the directory again */
} sbx_watch_kind;

typedef struct sbx_watch_event {
    sbx_watch_kind kind;
    const char *path; /* absolute inside the sandbox ("" for OVERFLOW); valid during the call */
    bool is_dir;
    uint32_t cookie;
    int64_t at_ms; /* when the executor saw the change (ms since the epoch) */
} sbx_watch_event;

/* Called per event; return non-zero to stop (sbx_watch_dir then returns NULL). */
typedef int (*sbx_watch_fn)(const sbx_watch_event *ev, void *ud);

typedef struct sbx_watch_opts {
    bool recursive;       /* subdirectories too, including ones created later */
    uint32_t coalesce_ms; /* merge a path's events within this window (1..10000); 0 = 50 ms */
    int64_t reconnect_ms; /* how long to keep reconnecting after UNAVAILABLE; 0 = 30000 */
} sbx_watch_opts;

/* WatchDir: streams events of path (NULL/"" = /home/user) in the project's sandbox to fn until
 * fn says stop, the directory is deleted or the sandbox stops (NULL: a clean end), or the call
 * fails. After UNAVAILABLE it reconnects with backoff (the client's backoff settings, for up to
 * reconnect_ms after the stream was lost); as events may have been missed meanwhile, fn then
 * sees the new READY followed by an OVERFLOW. No deadline applies. opts may be NULL. */
sbx_error *sbx_watch_dir(sbx_client *c, const char *project_id, const char *path,
                         const sbx_watch_opts *opts, sbx_watch_fn fn, void *ud);

/* ------------------------------------------------------------------ sandboxes (executor) */

typedef struct sbx_port {
    uint32_t port;
    char *host;
    uint32_t host_port;
    char *url;
} sbx_port;

typedef struct sbx_sandbox {
    char *sandbox_id;
    char *project_id;
    int state; /* 1 running, 2 stopped */
    char *template_name;
    int init_pid;
    int64_t created_at_ms;
    int64_t last_used_at_ms;
    int64_t expires_at_ms;
    int64_t idle_timeout_ms;
    int64_t memory_bytes;
    int pids;
    int cpu_millis;
    int64_t command_timeout_ms;
    int64_t max_output_bytes;
    int open_files;
    int64_t disk_bytes;
    int64_t disk_inodes; /* 0: no inode limit enforced */
    char **enforced;
    size_t n_enforced;
    sbx_field *metadata;
    size_t n_metadata;
    int running_processes;
    bool from_pool; /* the executor served it from its warm pool of prebuilt inits */
    sbx_port *ports;
    size_t n_ports;
    /* network egress: the policy in force and what went through the sandbox's proxies */
    bool has_network; /* the executor reported it */
    char **allow_out;
    size_t n_allow_out;
    char **deny_out;
    size_t n_deny_out;
    uint64_t net_allowed, net_denied, net_failed, net_bytes_out, net_bytes_in;
    char *http_proxy; /* "http://127.0.0.1:3128" while the proxies are open, else "" */
    /* the home's disk use and limits (while running); limit 0 / mechanism "": not enforced */
    bool has_disk;
    uint64_t disk_used_bytes, disk_used_inodes, disk_limit_bytes, disk_limit_inodes;
    char *disk_mechanism;
} sbx_sandbox;

typedef struct sbx_sandbox_create {
    const char *template_name; /* NULL = default root */
    int64_t idle_timeout_ms;   /* 0 = server default */
    int64_t memory_bytes;      /* limits: 0 = server default */
    int pids;
    int cpu_millis;
    int64_t command_timeout_ms;
    int64_t disk_bytes;
    const char *const *env; /* "K=V" */
    size_t n_env;
    /* egress policy: with set_network false the executor's --egress-default applies; true sends
       these lists (both empty = no egress). Patterns: host, *.host, IP, CIDR, *; [:PORT]. */
    bool set_network;
    const char *const *allow_out;
    size_t n_allow_out;
    const char *const *deny_out;
    size_t n_deny_out;
} sbx_sandbox_create;

/* Create (idempotent per project; opts may be NULL), Get, SetTimeout: *out owned by the caller
 * (sbx_sandbox_free). */
sbx_error *sbx_sandbox_new(sbx_client *c, const char *project_id, const sbx_sandbox_create *opts,
                           sbx_sandbox **out);
sbx_error *sbx_sandbox_get(sbx_client *c, const char *project_id, sbx_sandbox **out);
sbx_error *sbx_sandbox_set_timeout(sbx_client *c, const char *project_id, int64_t idle_timeout_ms,
                                   sbx_sandbox **out);
sbx_error *sbx_sandbox_kill(sbx_client *c, const char *project_id, bool wipe_home, bool *killed);
/* Replaces the egress policy of the project's running sandbox (UpdateSandboxNetwork); new
 * connections follow it. Both lists empty = no egress. *out as for sbx_sandbox_get. */
sbx_error *sbx_sandbox_set_network(sbx_client *c, const char *project_id,
                                   const char *const *allow_out, size_t n_allow_out,
                                   const char *const *deny_out, size_t n_deny_out,
                                   sbx_sandbox **out);

typedef struct sbx_sandbox_list {
    sbx_sandbox *sandboxes;
    size_t count;
} sbx_sandbox_list;

/* Lists the caller's sandboxes on every executor (project_id NULL) or the project's. */
sbx_error *sbx_sandbox_list_all(sbx_client *c, const char *project_id, bool include_stopped,
                                sbx_sandbox_list **out);
void sbx_sandbox_free(sbx_sandbox *s);
void sbx_sandbox_list_free(sbx_sandbox_list *l);

/* ------------------------------------------------------------------ files (executor) */

typedef enum {
    SBX_FILE_UNKNOWN = 0,
    SBX_FILE_REGULAR = 1,
    SBX_FILE_DIRECTORY = 2,
    SBX_FILE_SYMLINK = 3,
    SBX_FILE_OTHER = 4
} sbx_file_type;

typedef struct sbx_file_info {
    char *path;
    char *name;
    sbx_file_type type;
    uint64_t size;
    uint32_t mode;
    int64_t mtime_ms;
    char *symlink_target;
    uint32_t uid;
    uint32_t gid;
} sbx_file_info;

void sbx_file_info_clear(sbx_file_info *fi);

/* Data sink: return non-zero to stop (the call then fails with CANCELLED). */
typedef int (*sbx_data_fn)(const void *data, size_t len, void *ud);
/* Reads a file (offset, length 0 = to the end) into sink. Resumes after UNAVAILABLE from the
 * byte reached. info may be NULL (else cleared with sbx_file_info_clear by the caller). */
sbx_error *sbx_file_read(sbx_client *c, const char *project_id, const char *path, uint64_t offset,
                         uint64_t length, sbx_data_fn sink, void *ud, sbx_file_info *info);

/* Data source for writes: fill buf with up to cap bytes, return the count, 0 at the end, or
 * -1 on error (errno set). rewind (may be NULL) restarts the source for a retry: 0 or -1. */
typedef long (*sbx_source_fn)(void *buf, size_t cap, void *ud);
typedef int (*sbx_rewind_fn)(void *ud);

typedef struct sbx_write_opts {
    uint32_t mode; /* 0 = 0644 */
    bool append;
    bool no_create_parents;
    bool exclusive;
} sbx_write_opts;

/* WriteFile from a source (opts may be NULL). Retried after UNAVAILABLE only when the write is
 * idempotent (no append/exclusive) and rewind is given. info/bytes may be NULL. */
sbx_error *sbx_file_write(sbx_client *c, const char *project_id, const char *path,
                          const sbx_write_opts *opts, sbx_source_fn src, sbx_rewind_fn rewind,
                          void *ud, sbx_file_info *info, uint64_t *bytes);

typedef struct sbx_file_list {
    sbx_file_info *entries;
    size_t count;
    bool truncated;
} sbx_file_list;

/* path NULL/"" = /home/user; depth 0 = 1. Caller frees *out (sbx_file_list_free). */
sbx_error *sbx_file_list_dir(sbx_client *c, const char *project_id, const char *path, int depth,
                             int max_entries, sbx_file_list **out);
void sbx_file_list_free(sbx_file_list *l);
sbx_error *sbx_file_stat(sbx_client *c, const char *project_id, const char *path,
                         sbx_file_info *out);
sbx_error *sbx_file_mkdir(sbx_client *c, const char *project_id, const char *path, uint32_t mode,
                          bool parents, bool *created);
sbx_error *sbx_file_remove(sbx_client *c, const char *project_id, const char *path, bool recursive,
                           bool *existed);
/* Move is not idempotent: never retried. */
sbx_error *sbx_file_move(sbx_client *c, const char *project_id, const char *src, const char *dst,
                         bool overwrite);

/* Upload progress (may be NULL): called as bytes are sent. */
typedef void (*sbx_progress_fn)(uint64_t bytes_done, uint64_t bytes_total, size_t files_done,
                                size_t files_total, void *ud);

typedef struct sbx_upload_result {
    uint32_t files_written;
    uint64_t bytes_written;
    char *dest_dir; /* owned: sbx_upload_result_clear */
} sbx_upload_result;

/* Uploads the tree under local_dir (regular files, directories, symlinks; other types are an
 * INVALID_ARGUMENT error before anything is sent) into dest_dir (NULL = /home/user) with one
 * all-or-nothing UploadFiles call. replace: overwrite existing files (then the call is
 * idempotent and retried after UNAVAILABLE). Local read errors map errno to a status. */
sbx_error *sbx_upload_dir(sbx_client *c, const char *project_id, const char *local_dir,
                          const char *dest_dir, bool replace, sbx_progress_fn progress, void *ud,
                          sbx_upload_result *res);
void sbx_upload_result_clear(sbx_upload_result *r);

/* ------------------------------------------------------------------ ports (executor) */

typedef struct sbx_dev_server_req {
    const char *project_id;
    const char *const *argv;
    size_t argc;
    const char *shell; /* wins over argv when set */
    const char *cwd;
    const char *const *env;
    size_t n_env;
    uint32_t port;
    const char *ready_path;   /* NULL = "/" */
    int64_t ready_timeout_ms; /* 0 = 30000 */
    const char *tag;          /* makes the call idempotent (then retried) */
    bool keep_on_failure;
} sbx_dev_server_req;

typedef struct sbx_dev_server {
    char *url;
    int pid;
    char *host;
    uint32_t host_port;
    int64_t ready_after_ms;
    char *sandbox_id;
} sbx_dev_server;

/* StartDevServer: returns once an HTTP request to the port answers. *out owned by the caller
 * (sbx_dev_server_free). */
sbx_error *sbx_dev_server_start(sbx_client *c, const sbx_dev_server_req *r, sbx_dev_server **out);
void sbx_dev_server_free(sbx_dev_server *d);
/* ExposePort: *out owned by the caller (sbx_port_clear). */
sbx_error *sbx_port_expose(sbx_client *c, const char *project_id, uint32_t port, sbx_port *out);
void sbx_port_clear(sbx_port *p);

#ifdef __cplusplus
}
#endif

#endif
