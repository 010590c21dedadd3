/* exectab.h: the commands of each sandbox as the RPCs see them (one "execution" per Exec/Run):
 * request_id deduplication (a retry finds the first execution, running or finished), tag
 * uniqueness among running commands, the per-stream output cap, the retention of finished
 * executions (all of the last 10 minutes and at least the last 100), and the recording of
 * every finished execution in the store through the outbox. An execution's output lives in its
 * process (proc.h): the first EXE_HEAD_MAX bytes of each stream (Run's answer, replays, the
 * history record) for as long as the execution is kept, the newest bytes in the ring. A
 * monitor thread follows background executions and records them when they finish; foreground
 * executions are driven by the handler that started them.
 *
 * Files: exectab.c (the per-sandbox table), exe.c (one execution), exe_record.c (its history
 * record), execmon.c (the monitor), exe_journal.c (running background executions on disk,
 * recorded as killed at the next start when the executor died).
 *
 * Hooks into the registry (sbx_reg_hooks): sbx_exectab_attach / _detach / _running with the
 * monitor as argument. Executions are reference counted (sbx_exe_ref/unref); all functions are
 * thread-safe. Fields of sbx_exe marked (const) never change after sbx_exe_begin; the others
 * are read through sbx_exe_info_get. */
#ifndef SBX_EXEC_EXECTAB_H
#define SBX_EXEC_EXECTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stores.h"
#include "proc.h"
#include "registry.h"
#include "sbx/v1/executor.pb-c.h"
#include "sbx/v1/store.pb-c.h"

#define EXE_KEEP_RECENT_MS 600000 /* finished executions kept at least this long */
#define EXE_KEEP_MIN 100          /* ... and at least this many */
#define EXE_KEEP_MAX 1000         /* finished executions per sandbox at most */
#define EXE_KEEP_PROCS 16         /* newest finished ones that keep their output ring */
#define EXE_HEAD_MAX (1u << 20)   /* first bytes of each stream kept for Run/replay/history */

typedef struct sbx_execmon sbx_execmon;
typedef struct sbx_exectab sbx_exectab;
typedef struct sbx_exe sbx_exe;

/* The monitor: owns the background follower thread. stores may be NULL (nothing is
 * recorded). */
sbx_execmon *sbx_execmon_new(sbx_stores *stores);
void sbx_execmon_free(sbx_execmon *m); /* finalizes what it still follows; NULL is harmless */
/* Journals the running background executions under dir (created 0700) so that the next start
 * records those the executor's death ended, as killed (SIGKILL); first queues in the outbox the
 * entries a previous run left there (*recovered: how many). Call once, before serving. Returns
 * 0 or -errno (dir cannot be created). */
int sbx_execmon_journal(sbx_execmon *m, const char *dir, size_t *recovered);

int sbx_exectab_attach(void *mon, sbx_box *b);
void sbx_exectab_detach(void *mon, sbx_box *b);
int sbx_exectab_running(void *mon, sbx_box *b);

typedef enum { EXE_STARTING = 0, EXE_RUNNING = 1, EXE_DONE = 2, EXE_ABORTED = 3 } sbx_exe_state;

/* How an execution ended (ProcessExit). */
typedef struct sbx_exe_exit {
    int exit_code, signal;
    int64_t duration_us, finished_ms;
    bool timed_out, output_truncated, cached, oom_killed;
    uint64_t stdout_bytes, stderr_bytes;
} sbx_exe_exit;

typedef struct sbx_exe_info {
    sbx_exe_state state;
    int pid;
    bool stdin_open;
    bool pty;            /* runs on a terminal */
    uint16_t cols, rows; /* its size (pty) */
    int64_t started_ms;
    sbx_exe_exit exit;               /* valid in EXE_DONE */
    uint64_t out_end, err_end;       /* bytes produced so far per stream */
    uint64_t out_oldest, err_oldest; /* oldest offset still available per stream */
} sbx_exe_info;

struct sbx_exe {
    /* (const) */
    char id[96]; /* record id: "<sandbox_id>.<n>" */
    char tenant[72], project[EXV_PROJECT_MAX + 1], sandbox_id[EXV_ID_MAX + 1];
    char *request_id;     /* "" = none */
    char fingerprint[65]; /* what a request_id retry must match */
    char cmdkey[65];      /* "" unless computed (cache) */
    char *tag;            /* "" = none */
    char **argv;          /* NULL for shell commands */
    size_t argc;
    char *shell; /* NULL for argv commands */
    char *cwd;   /* resolved, absolute */
    bool background;
    bool pty;            /* started on a terminal (ExecRequest.pty) */
    int64_t cache_ttl_s; /* > 0: record as cacheable (unless timed out / cached) */
    uint64_t cap;        /* per-stream cap on the output shown */
    size_t head_limit;   /* min(cap, EXE_HEAD_MAX): the bytes Run answers and history keeps */
    /* private */
    struct sbx_exe_priv *priv;
};

/* What to start (strings are copied). */
typedef struct sbx_exe_spec {
    const Sbx__V1__ExecRequest *req; /* validated */
    const char *cmdkey;              /* computed key or NULL */
    const char *fingerprint;         /* request_id retry identity */
    uint64_t cap;
} sbx_exe_spec;

void sbx_exe_ref(sbx_exe *e);
void sbx_exe_unref(sbx_exe *e); /* NULL is harmless */

/* Registers a new execution in the box's table (state STARTING). Returns SBX_OK with *out a new
 * reference; ALREADY_EXISTS when the tag is used by a running command, or the request_id is
 * known with a different fingerprint. When the request_id is known with the same fingerprint
 * it returns SBX_OK with *out NULL and *existing the first execution (a reference). */
int sbx_exe_begin(sbx_box *b, const sbx_exe_spec *spec, sbx_exe **out, sbx_exe **existing,
                  char *err, size_t errlen);
/* Starts the STARTING execution (req->keep_head_bytes is set to e->head_limit here). exec
 * failures become a finished execution (exit 127 / 126 and a one-line reason on stderr) and
 * SBX_OK. Other errors abort the execution (it leaves the table; waiters see EXE_ABORTED) and
 * return the gRPC code. */
int sbx_exe_spawn(sbx_box *b, sbx_exe *e, const sbx_proc_req *req, char *err, size_t errlen);
/* Fills a cached answer (nothing runs) and finishes the execution. */
void sbx_exe_set_cached(sbx_exe *e, const Sbx__V1__CachedResult *c);
/* Waits while the execution is STARTING (a concurrent retry); returns its state after. */
sbx_exe_state sbx_exe_wait_started(sbx_exe *e, int timeout_ms);

void sbx_exe_info_get(sbx_exe *e, sbx_exe_info *info);
/* The process (new reference) or NULL (not started, or released with an old execution). */
sbx_proc *sbx_exe_proc(sbx_exe *e);
/* Copies output of a stream from *off like sbx_proc_read; 0 when the output is gone. */
size_t sbx_exe_read(sbx_exe *e, int stream, uint64_t *off, void *buf, size_t len);
/* Copies the first bytes of a stream (its head, at most e->head_limit of them) into buf;
 * returns how many. */
size_t sbx_exe_read_head(sbx_exe *e, int stream, void *buf, size_t len);
/* Writes to the command's stdin (sbx_proc_write_stdin): bytes written, or -EPIPE when stdin is
 * closed (or never open, or the execution is not running). */
ssize_t sbx_exe_write_input(sbx_exe *e, const void *buf, size_t len, int timeout_ms);
/* Closes the command's stdin once what is queued is written (CloseInput); on a terminal types
 * EOF (sbx_proc_close_stdin). */
void sbx_exe_close_input(sbx_exe *e);
/* ResizeTerminal: 0, -ENOTTY (no terminal), -ESRCH (not running / terminal closed). */
int sbx_exe_resize(sbx_exe *e, uint16_t cols, uint16_t rows);
/* Finishes the execution once its process finished (force: it will not finish by itself, e.g.
 * the sandbox is gone: report it SIGKILLed). Records it through the outbox. Returns true when
 * it is DONE after the call. oom_kills: the sandbox's oom counter now, or -1 when unknown. */
bool sbx_exe_finish(sbx_exe *e, bool force, int64_t oom_kills);
/* Blocks until the execution is DONE or timeout_ms passes (used by a retry that attaches). */
int sbx_exe_wait_done(sbx_exe *e, int timeout_ms);
/* Hands a background execution to the monitor. */
void sbx_exe_follow_in_background(sbx_exe *e);

/* Lookup by selector: running first, else the most recent finished (new reference or NULL). */
sbx_exe *sbx_exe_find_pid(sbx_box *b, int pid);
sbx_exe *sbx_exe_find_tag(sbx_box *b, const char *tag);
/* Executions oldest first (new references; free with sbx_exe_list_free). */
size_t sbx_exe_list(sbx_box *b, bool include_exited, sbx_exe ***out);
void sbx_exe_list_free(sbx_exe **v, size_t n);

/* The sandbox's oom counter, or -1. Needs a use on b. */
int64_t sbx_exe_oom_kills(sbx_box *b);

#endif
