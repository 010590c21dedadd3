/* exec_validate.h: input validation of the SandboxExecutor requests, as the comments of
 * proto/sbx/v1/executor.proto define it (ids, project ids, argv, shell strings, env maps,
 * timeouts, output caps, tags, request ids, sandbox limits, metadata). Pure functions, no
 * state: every check returns SBX_OK or a gRPC status code (almost always INVALID_ARGUMENT) and
 * writes a one-line message that names the field and the limit into err.
 *
 * A NUL byte inside a string field never reaches these checks: the gRPC layer refuses such a
 * request first, naming the field (common/pbcheck.h). `bytes` fields (stdin) are checked for
 * size only. The sandbox address is checked once per request: by exv_exec_request for
 * Exec/Run/StartDevServer, by exh_box for the other RPCs. */
#ifndef SBX_EXEC_VALIDATE_H
#define SBX_EXEC_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/v1/executor.pb-c.h"

#define EXV_ID_MAX 64
#define EXV_PROJECT_MAX 128
#define EXV_TEMPLATE_MAX 64
#define EXV_TAG_MAX 64
#define EXV_REQUEST_ID_MAX 128
#define EXV_ARGV_MAX 4096
#define EXV_ARG_MAX (128 * 1024)
#define EXV_ARGV_TOTAL_MAX (256 * 1024)
#define EXV_SHELL_MAX (256 * 1024)
#define EXV_ENV_MAX 256
#define EXV_ENV_KEY_MAX 256
#define EXV_ENV_VALUE_MAX (32 * 1024)
#define EXV_META_MAX 64
#define EXV_META_KEY_MAX 128
#define EXV_META_VALUE_MAX 1024
#define EXV_STDIN_MAX (1024 * 1024)
#define EXV_INPUT_MAX (1024 * 1024)
#define EXV_TIMEOUT_MAX_MS 86400000LL    /* 24 h */
#define EXV_IDLE_MAX_MS 604800000LL      /* 7 days */
#define EXV_CACHE_TTL_MAX_S 2592000LL    /* 30 days */
#define EXV_RUN_OUTPUT_MAX (1024 * 1024) /* Run: each stream clamped to 1 MiB */
#define EXV_CHUNK_MAX (1024 * 1024)      /* WriteFile data / UploadEntry content per message */
#define EXV_READ_CHUNK_DEFAULT (64 * 1024)
#define EXV_SIGNAL_MAX 64
#define EXV_READY_TIMEOUT_MAX_MS 600000LL
#define EXV_READY_PATH_MAX 2048
#define EXV_TERM_SIZE_MAX 1000 /* pty / ResizeTerminal: columns and rows each 1..1000 */

/* One key/value pair of a protobuf map (the generated *EnvEntry / *MetadataEntry types all
 * start with the message base, then key, then value). */
typedef struct exv_kv {
    const char *key;
    const char *value;
} exv_kv;

/* The limits a sandbox runs with (effective values; see SandboxLimits). */
typedef struct exv_limits {
    int64_t memory_bytes;
    int64_t pids;
    int64_t cpu_millis;
    int64_t command_timeout_ms;
    int64_t max_output_bytes;
    int64_t open_files;
    int64_t disk_bytes;
    int64_t disk_inodes; /* defaults: 0 = one per 16 KiB of disk_bytes (ext4's own ratio) */
} exv_limits;

#define EXV_DISK_MIN (4LL << 20)     /* limits.disk_bytes (an ext4 image of the home) */
#define EXV_INODES_MIN 1024LL        /* limits.disk_inodes */
#define EXV_BYTES_PER_INODE_MIN 2048 /* at most one inode per 2 KiB of disk_bytes */
#define EXV_BYTES_PER_INODE_AUTO 16384

/* project_id: 1..128 bytes of [A-Za-z0-9][A-Za-z0-9._-]*. */
int exv_project_id(const char *field, const char *s, char *err, size_t errlen);
/* sandbox_id: 1..64 bytes of [A-Za-z0-9_.-] (what this server generates). */
int exv_sandbox_id(const char *field, const char *s, char *err, size_t errlen);
/* "Addressing a sandbox": one of sandbox_id / project_id set (both syntactically valid). */
int exv_address(const char *sandbox_id, const char *project_id, char *err, size_t errlen);
/* template: 0..64 bytes of [A-Za-z0-9._-]. */
int exv_template(const char *s, char *err, size_t errlen);
/* tag: 0..64 bytes of [A-Za-z0-9._:-]. */
int exv_tag(const char *field, const char *s, char *err, size_t errlen);
/* request_id: 0..128 bytes of printable ASCII (0x20..0x7e). */
int exv_request_id(const char *s, char *err, size_t errlen);
/* env map: at most 256 entries, key 1..256 bytes [A-Za-z_][A-Za-z0-9_]*, value 0..32 KiB. */
int exv_env(const char *field, const exv_kv *kv, size_t n, char *err, size_t errlen);
/* metadata map: at most 64 entries, key 1..128 bytes, value 0..1024 bytes. */
int exv_metadata(const char *field, const exv_kv *kv, size_t n, char *err, size_t errlen);
/* A millisecond duration: 0..max (negative or above max: INVALID_ARGUMENT). */
int exv_duration_ms(const char *field, int64_t v, int64_t max, char *err, size_t errlen);
/* The command oneof of an Exec/StartDevServer request: argv (1..4096 entries, each 0..128 KiB,
 * total 0..256 KiB, args[0] non-empty) or shell (1..256 KiB). */
int exv_command(int command_case, const Sbx__V1__Argv *argv, const char *shell, char *err,
                size_t errlen);
/* Everything of an ExecRequest that can be checked without a sandbox, its address included. */
int exv_exec_request(const Sbx__V1__ExecRequest *r, char *err, size_t errlen);
/* A terminal size: cols and rows each 1..1000; the message names `<field>cols` / `<field>rows`
 * (field "pty." for ExecRequest.pty, "" for ResizeTerminal). */
int exv_term_size(const char *field, uint32_t cols, uint32_t rows, char *err, size_t errlen);
/* A ProcessSelector (required): pid > 0 or a non-empty valid tag. */
int exv_selector(const Sbx__V1__ProcessSelector *s, char *err, size_t errlen);
/* A path inside the sandbox: 1..4096 bytes (`allow_empty`: "" means the home directory). */
int exv_path(const char *field, const char *path, bool allow_empty, char *err, size_t errlen);

/* Resolves requested limits against the server defaults and maxima: 0 = default, negative,
 * below the documented minimum or above the maximum = INVALID_ARGUMENT naming the field.
 * disk_inodes 0 = the server default, or when that is 0 one per 16 KiB of disk_bytes, within
 * [1024, disk_bytes / 2048] and the server maximum; an explicit one above disk_bytes / 2048 is
 * INVALID_ARGUMENT. req may be NULL (all defaults). */
int exv_limits_resolve(const Sbx__V1__SandboxLimits *req, const exv_limits *defaults,
                       const exv_limits *max, exv_limits *out, char *err, size_t errlen);
/* Checks that a server's default/maximum configuration is coherent (used at start-up). */
int exv_limits_check_config(const exv_limits *defaults, const exv_limits *max, char *err,
                            size_t errlen);

/* Collects a protobuf map (an array of generated *Entry pointers) as exv_kv; returns a
 * malloc'd array the caller frees (NULL when n == 0). */
exv_kv *exv_kv_collect(void *const *entries, size_t n);

#endif
