/* executor_fixture.c: the executor without a server (see executor_fixture.h). */
#include "executor_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "sandbox.h"
#include "status.h"

static const char *skip_reason(const char *init)
{
    sbx_sandbox_caps caps;
    if (geteuid() != 0)
        return "needs root (namespaces, cgroups, uid ranges)";
    if (sbx_sandbox_caps_detect(init, &caps) < 0 || !caps.namespaces)
        return "the kernel cannot create user/pid/mount/net namespaces here";
    return NULL;
}

/* The outbox's delivery: keeps the bytes as they would reach the store. */
static int capture(void *arg, const char *tenant, const uint8_t *req, size_t len, char *err,
                   size_t errlen)
{
    (void)tenant;
    (void)err;
    (void)errlen;
    exf *f = arg;
    uint8_t *copy = malloc(len ? len : 1);
    pthread_mutex_lock(&f->mu);
    uint8_t **nr = realloc(f->recs, (f->nrecs + 1) * sizeof *nr);
    size_t *nl = realloc(f->lens, (f->nrecs + 1) * sizeof *nl);
    if (nr)
        f->recs = nr;
    if (nl)
        f->lens = nl;
    int code = copy && nr && nl ? SBX_OK : SBX_RESOURCE_EXHAUSTED;
    if (code == SBX_OK) {
        memcpy(copy, req, len);
        f->recs[f->nrecs] = copy;
        f->lens[f->nrecs++] = len;
        pthread_cond_broadcast(&f->cond);
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&f->mu);
    return code;
}

/* The executor's outbox (one store, whose records the fixture captures). */
static int open_outbox(exf *f)
{
    char d[128], err[256];
    snprintf(d, sizeof d, "%s/outbox", f->dir);
    static char addr[] = "127.0.0.1:1";
    static char *v[] = {addr};
    static const sbx_addr_list one = {v, 1};
    sbx_stores_cfg sc = {.addrs = &one,
                         .outbox_root = d,
                         .deliver = capture,
                         .deliver_arg = f,
                         .retry_initial_ms = 10};
    return sbx_stores_open(&sc, &f->stores, err, sizeof err);
}

static int open_registry(exf *f, const exf_opts *o, const char *init)
{
    sbx_reg_cfg c = {
        .data_dir = f->dir,
        .init_path = init,
        .idle_timeout_ms = o->idle_timeout_ms,
        .defaults = {256 << 20, 128, 1000, 60000, 1 << 20, 1024, 1 << 30, 0},
        .max = {1LL << 32, 4096, 2000, 86400000, 1 << 30, 65536, 1LL << 40, 1 << 24},
        .max_sandboxes = o->max_sandboxes ? o->max_sandboxes : 4,
        /* eight uid blocks per test process, chosen by pid: parallel tests do not share them */
        .uid_base_first = 0x60000000u + (uint32_t)((unsigned)getpid() % 2000u) * 65536u * 8u,
        .ring_bytes = o->ring_bytes,
        .reaper_interval_ms = 50,
        .hooks = {sbx_exectab_attach, sbx_exectab_detach, sbx_exectab_running, f->mon},
        .on_stop = f->fwd ? exh_ports_on_stop : NULL,
        .on_stop_arg = f->fwd,
    };
    char err[256];
    if (sbx_reg_new(&c, &f->reg, err, sizeof err) < 0) {
        fprintf(stderr, "registry: %s\n", err);
        return -1;
    }
    return 0;
}

exf *exf_open(const exf_opts *o)
{
    static const exf_opts none;
    if (!o)
        o = &none;
    /* $SBX_TEST_INIT_PATH: an uninstrumented sbx-init for sanitizer builds */
    const char *init =
        getenv("SBX_TEST_INIT_PATH") ? getenv("SBX_TEST_INIT_PATH") : SBX_INIT_BUILD_PATH;
    const char *why = skip_reason(init);
    if (why) {
        printf("SKIP: %s\n", why);
        return NULL;
    }
    if (o->max_sandboxes > 8)
        fail_msg("exf: at most 8 sandboxes (the uid blocks of one test process)");
    sbx_log_set_level(SBX_LOG_WARN);
    exf *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(f->dir, sizeof f->dir, "/tmp/sbx-exf-XXXXXX");
    if (!mkdtemp(f->dir))
        fail_msg("mkdtemp failed");
    chmod(f->dir, 0711);
    if (o->outbox && open_outbox(f) < 0)
        fail_msg("outbox failed");
    if (o->ports && sbx_portfwd_create(NULL, &f->fwd) < 0)
        fail_msg("forwarder failed");
    f->opts = *o;
    f->init = init;
    f->mon = sbx_execmon_new(f->stores);
    if (!f->mon || open_registry(f, o, init) < 0)
        fail_msg("monitor or registry failed");
    f->svc = (sbx_exsvc){.reg = f->reg, .mon = f->mon, .fwd = f->fwd};
    return f;
}

int exf_restart_registry(exf *f)
{
    sbx_reg_free(f->reg);
    f->reg = NULL;
    if (open_registry(f, &f->opts, f->init) < 0)
        return -1;
    f->svc.reg = f->reg;
    return 0;
}

void exf_close(exf *f)
{
    if (!f)
        return;
    sbx_reg_free(f->reg);
    sbx_portfwd_destroy(f->fwd);
    sbx_execmon_free(f->mon);
    sbx_stores_close(f->stores, 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    for (size_t i = 0; i < f->nrecs; i++)
        free(f->recs[i]);
    free(f->recs);
    free(f->lens);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f);
}

sbx_box *exf_box(exf *f, const char *tenant, const char *project)
{
    sbx_box *b = NULL;
    char err[256];
    int code = sbx_reg_get(f->reg, tenant, NULL, project, REG_CREATE, &b, err, sizeof err);
    if (code != SBX_OK)
        fprintf(stderr, "exf_box: %s %s\n", sbx_status_name(code), err);
    return b;
}

size_t exf_wait_records(exf *f, size_t n, int timeout_ms)
{
    struct timespec dl;
    sbx_deadline_in(&dl, timeout_ms);
    pthread_mutex_lock(&f->mu);
    while (f->nrecs < n && pthread_cond_timedwait(&f->cond, &f->mu, &dl) == 0)
        ;
    size_t got = f->nrecs;
    pthread_mutex_unlock(&f->mu);
    return got;
}

Sbx__V1__RecordExecutionRequest *exf_record(exf *f, size_t i)
{
    pthread_mutex_lock(&f->mu);
    Sbx__V1__RecordExecutionRequest *r =
        i < f->nrecs ? sbx__v1__record_execution_request__unpack(NULL, f->lens[i], f->recs[i])
                     : NULL;
    pthread_mutex_unlock(&f->mu);
    return r;
}
