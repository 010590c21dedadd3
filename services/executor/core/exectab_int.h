/* exectab_int.h: what the files of the execution table share (private to core/): the private
 * half of an execution, the per-sandbox table and the monitor. Cross-file functions use the
 * sbx__exe_ prefix.
 *
 * Locks: a table's mu guards its list; an execution's mu guards its private fields; the
 * monitor's mu guards its list. Order: table mu, then an execution's mu; the monitor's mu is
 * never held while taking another. A process's locks (proc.h) come after all of these. */
#ifndef SBX_EXEC_EXECTAB_INT_H
#define SBX_EXEC_EXECTAB_INT_H

#include <pthread.h>

#include "exectab.h"

struct sbx_exe_priv {
    int refs; /* atomic */
    sbx_execmon *mon;
    pthread_mutex_t mu; /* fields below */
    pthread_cond_t cond;
    sbx_exe_state state;
    int pid;
    sbx_proc *proc; /* the output; NULL before the start or once released */
    int64_t started_ms;
    uint64_t started_mono_us;
    sbx_exe_exit exit;
    bool exit_given; /* exit was filled by sbx_exe_set_cached, not read from the process */
    bool recorded;
    int64_t done_mono_ms;
    uint64_t end[2]; /* stream ends at the finish (for info once the process is released) */
};

struct sbx_exectab {
    sbx_execmon *mon;
    pthread_mutex_t mu;
    sbx_exe **v; /* oldest first */
    size_t n, cap;
    uint64_t seq;
    char sandbox_id[EXV_ID_MAX + 1];
    int64_t oom_seen;
};

struct sbx_execmon {
    sbx_stores *stores;
    char *journal; /* dir of the running background executions' entries, or NULL */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sbx_exe **v;
    size_t n, cap;
    bool stop;
    pthread_t thr;
};

/* ---- exe.c ---- */
/* A new STARTING execution of spec in box b (one reference), or NULL (out of memory). */
sbx_exe *sbx__exe_new(sbx_execmon *mon, const sbx_exe_spec *spec, sbx_box *b);
sbx_exe_state sbx__exe_state(sbx_exe *e);

/* ---- exectab.c ---- */
/* Takes e out of its box's table (an aborted start). */
void sbx__exe_remove(sbx_box *b, sbx_exe *e);

/* ---- exe_record.c ---- */
/* Queues the history record of a finished execution in its store's outbox (if any). */
void sbx__exe_record(sbx_exe *e);
/* The packed RecordExecutionRequest of e (malloc'd, *len bytes), or NULL (out of memory). With
 * killed: the record of an execution the executor's death ended (SIGKILL, exit 137, output
 * lost, no duration yet) instead of its real outcome. */
uint8_t *sbx__exe_record_pack(sbx_exe *e, bool killed, size_t *len);
/* Queues a packed RecordExecutionRequest of tenant's project in the outbox of the project's
 * store (the one way records leave the table: the journal's recovery uses it too). 0 or -errno
 * (-ENOTCONN without stores). */
int sbx__exe_record_queue(sbx_execmon *m, const char *tenant, const char *project,
                          const uint8_t *req, size_t len);

/* ---- exe_journal.c ---- */
/* Journals a background execution that started (its killed record, for the next start). */
void sbx__exe_journal_add(sbx_exe *e);
/* Drops its entry once its real record is queued. */
void sbx__exe_journal_done(sbx_exe *e);

#endif
