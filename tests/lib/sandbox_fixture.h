/* sandbox_fixture.h: the sandbox tests' fixture (runtime unit tests, the process table's tests,
 * the sandbox security suite): make a sandbox with a unique id, uid range and home (with
 * sbx_probe copied in when tsbx_probe_path is set), run a shell command or a probe through the
 * process table and collect its output and status, check a fresh sandbox still works. Needs
 * root and namespaces: TSBX_REQUIRE() skips a test, printing why, when the host lacks them. */
#ifndef SBX_SANDBOX_FIXTURE_H
#define SBX_SANDBOX_FIXTURE_H

/* the libc headers sandbox tests use (this header always provided them) */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "sandbox.h"
#include "test_main.h"

typedef struct {
    sbx_sandbox *sb;
    sbx_proctab *tab;
    char id[64];
    char dir[256]; /* /tmp/sbx-sec-<pid>-<n>, removed by tsbx_close */
    char home[300];
} tsbx;

typedef struct {
    char out[1 << 16]; /* stdout + stderr, NUL-terminated */
    size_t len;
    sbx_proc_status st;
} tres;

/* When set (before tsbx_open), sandboxes get this binary as /home/user/sbx_probe. */
extern const char *tsbx_probe_path;

/* true (with *why) when this host cannot run sandboxes: not root, or no namespaces. */
bool tsbx_skip_reason(const char **why);

#define TSBX_REQUIRE()                                                                             \
    do {                                                                                           \
        const char *why_;                                                                          \
        if (tsbx_skip_reason(&why_)) {                                                             \
            printf("SKIP: %s\n", why_);                                                            \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* A sandbox (limits: 512 MiB and 256 pids unless lim says otherwise; pc: the process table's
 * config, NULL = defaults) with a process table over it: 0 or -errno. */
int tsbx_open2(tsbx *t, const sbx_sandbox_limits *lim, const sbx_proctab_cfg *pc);
int tsbx_open(tsbx *t, const sbx_sandbox_limits *lim);
/* Destroys the table and the sandbox and removes its directory. */
void tsbx_close(tsbx *t);
/* rm -rf dir (no symlinks followed). */
void tsbx_rm_tree(const char *dir);

/* Runs argv (NULL-terminated) to completion; stdout+stderr merged into r->out (first 64 KiB). */
int tsbx_runv(tsbx *t, const char *const *argv, uint32_t timeout_ms, uint64_t max_out, tres *r);
int tsbx_sh(tsbx *t, const char *cmd, uint32_t timeout_ms, tres *r);
/* Runs /home/user/sbx_probe with up to 2 arguments (a1, a2 may be NULL). */
int tsbx_probe(tsbx *t, const char *op, const char *a1, const char *a2, tres *r);

/* After an attack: the host can still make a new sandbox that runs a command. */
void tsbx_assert_fresh_works(void);

#endif
