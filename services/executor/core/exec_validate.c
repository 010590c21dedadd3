/* exec_validate.c: the field checks of the SandboxExecutor requests (see exec_validate.h). Each
 * check names the field and the limit in its message, like "argv.args[3]: 131073 bytes exceeds
 * the limit of 131072". */
#include "exec_validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SBX_INVALID_ARGUMENT;
}

static bool alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int exv_project_id(const char *field, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0)
        return fail(err, errlen, "%s: required (1..%d bytes of [A-Za-z0-9][A-Za-z0-9._-]*)", field,
                    EXV_PROJECT_MAX);
    if (n > EXV_PROJECT_MAX)
        return fail(err, errlen, "%s: %zu bytes exceeds the limit of %d", field, n,
                    EXV_PROJECT_MAX);
    if (!alnum((unsigned char)s[0]))
        return fail(err, errlen, "%s: must start with [A-Za-z0-9]", field);
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!alnum(c) && c != '.' && c != '_' && c != '-')
            return fail(err, errlen, "%s: byte %zu is not one of [A-Za-z0-9._-]", field, i);
    }
    return SBX_OK;
}

int exv_sandbox_id(const char *field, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > EXV_ID_MAX)
        return fail(err, errlen, "%s: must be 1..%d bytes (got %zu)", field, EXV_ID_MAX, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!alnum(c) && c != '.' && c != '_' && c != '-')
            return fail(err, errlen, "%s: byte %zu is not one of [A-Za-z0-9._-]", field, i);
    }
    return SBX_OK;
}

int exv_address(const char *sandbox_id, const char *project_id, char *err, size_t errlen)
{
    bool has_id = sandbox_id && sandbox_id[0], has_proj = project_id && project_id[0];
    if (!has_id && !has_proj)
        return fail(err, errlen, "sandbox_id, project_id: set one of them");
    int rc;
    if (has_id && (rc = exv_sandbox_id("sandbox_id", sandbox_id, err, errlen)) != SBX_OK)
        return rc;
    if (has_proj && (rc = exv_project_id("project_id", project_id, err, errlen)) != SBX_OK)
        return rc;
    return SBX_OK;
}

int exv_template(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > EXV_TEMPLATE_MAX)
        return fail(err, errlen, "template: %zu bytes exceeds the limit of %d", n,
                    EXV_TEMPLATE_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!alnum(c) && c != '.' && c != '_' && c != '-')
            return fail(err, errlen, "template: byte %zu is not one of [A-Za-z0-9._-]", i);
    }
    return SBX_OK;
}

int exv_tag(const char *field, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > EXV_TAG_MAX)
        return fail(err, errlen, "%s: %zu bytes exceeds the limit of %d", field, n, EXV_TAG_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!alnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
            return fail(err, errlen, "%s: byte %zu is not one of [A-Za-z0-9._:-]", field, i);
    }
    return SBX_OK;
}

int exv_request_id(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > EXV_REQUEST_ID_MAX)
        return fail(err, errlen, "request_id: %zu bytes exceeds the limit of %d", n,
                    EXV_REQUEST_ID_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e)
            return fail(err, errlen, "request_id: byte %zu is not printable ASCII", i);
    }
    return SBX_OK;
}

int exv_env(const char *field, const exv_kv *kv, size_t n, char *err, size_t errlen)
{
    if (n > EXV_ENV_MAX)
        return fail(err, errlen, "%s: %zu entries exceeds the limit of %d", field, n, EXV_ENV_MAX);
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key ? kv[i].key : "";
        const char *v = kv[i].value ? kv[i].value : "";
        size_t kl = strlen(k), vl = strlen(v);
        if (kl == 0)
            return fail(err, errlen, "%s: empty key (keys are 1..%d bytes)", field,
                        EXV_ENV_KEY_MAX);
        if (kl > EXV_ENV_KEY_MAX)
            return fail(err, errlen, "%s[%.64s...]: key of %zu bytes exceeds the limit of %d",
                        field, k, kl, EXV_ENV_KEY_MAX);
        if (strchr(k, '='))
            return fail(err, errlen,
                        "%s[%.64s]: key contains '=' (keys are [A-Za-z_][A-Za-z0-9_]*)", field, k);
        if (!(alnum((unsigned char)k[0]) && !(k[0] >= '0' && k[0] <= '9')) && k[0] != '_')
            return fail(err, errlen, "%s[%.64s]: key must start with [A-Za-z_]", field, k);
        for (size_t j = 1; j < kl; j++)
            if (!alnum((unsigned char)k[j]) && k[j] != '_')
                return fail(err, errlen, "%s[%.64s]: key byte %zu is not one of [A-Za-z0-9_]",
                            field, k, j);
        if (vl > EXV_ENV_VALUE_MAX)
            return fail(err, errlen, "%s[%.64s]: value of %zu bytes exceeds the limit of %d", field,
                        k, vl, EXV_ENV_VALUE_MAX);
    }
    return SBX_OK;
}

int exv_metadata(const char *field, const exv_kv *kv, size_t n, char *err, size_t errlen)
{
    if (n > EXV_META_MAX)
        return fail(err, errlen, "%s: %zu entries exceeds the limit of %d", field, n, EXV_META_MAX);
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key ? kv[i].key : "";
        const char *v = kv[i].value ? kv[i].value : "";
        size_t kl = strlen(k), vl = strlen(v);
        if (kl == 0 || kl > EXV_META_KEY_MAX)
            return fail(err, errlen, "%s: key of %zu bytes is outside 1..%d", field, kl,
                        EXV_META_KEY_MAX);
        if (vl > EXV_META_VALUE_MAX)
            return fail(err, errlen, "%s[%.64s]: value of %zu bytes exceeds the limit of %d", field,
                        k, vl, EXV_META_VALUE_MAX);
    }
    return SBX_OK;
}

int exv_duration_ms(const char *field, int64_t v, int64_t max, char *err, size_t errlen)
{
    if (v < 0)
        return fail(err, errlen, "%s: %lld is negative (0..%lld ms)", field, (long long)v,
                    (long long)max);
    if (v > max)
        return fail(err, errlen, "%s: %lld exceeds the limit of %lld ms", field, (long long)v,
                    (long long)max);
    return SBX_OK;
}

int exv_command(int command_case, const Sbx__V1__Argv *argv, const char *shell, char *err,
                size_t errlen)
{
    if (command_case == SBX__V1__EXEC_REQUEST__COMMAND_ARGV) {
        if (!argv || argv->n_args == 0)
            return fail(err, errlen, "argv.args: empty (1..%d entries, args[0] the program)",
                        EXV_ARGV_MAX);
        if (argv->n_args > EXV_ARGV_MAX)
            return fail(err, errlen, "argv.args: %zu entries exceeds the limit of %d", argv->n_args,
                        EXV_ARGV_MAX);
        if (!argv->args[0] || !argv->args[0][0])
            return fail(err, errlen, "argv.args[0]: the program name must not be empty");
        size_t total = 0;
        for (size_t i = 0; i < argv->n_args; i++) {
            size_t l = strlen(argv->args[i]);
            if (l > EXV_ARG_MAX)
                return fail(err, errlen, "argv.args[%zu]: %zu bytes exceeds the limit of %d", i, l,
                            EXV_ARG_MAX);
            total += l;
        }
        if (total > EXV_ARGV_TOTAL_MAX)
            return fail(err, errlen, "argv.args: %zu bytes in total exceeds the limit of %d", total,
                        EXV_ARGV_TOTAL_MAX);
        return SBX_OK;
    }
    if (command_case == SBX__V1__EXEC_REQUEST__COMMAND_SHELL) {
        size_t l = shell ? strlen(shell) : 0;
        if (l == 0)
            return fail(err, errlen, "shell: empty (1..%d bytes)", EXV_SHELL_MAX);
        if (l > EXV_SHELL_MAX)
            return fail(err, errlen, "shell: %zu bytes exceeds the limit of %d", l, EXV_SHELL_MAX);
        return SBX_OK;
    }
    return fail(err, errlen, "command: required (set argv or shell)");
}

int exv_path(const char *field, const char *path, bool allow_empty, char *err, size_t errlen)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0) {
        if (allow_empty)
            return SBX_OK;
        return fail(err, errlen, "%s: required (1..4096 bytes)", field);
    }
    if (n > 4096)
        return fail(err, errlen, "%s: %zu bytes exceeds the limit of 4096", field, n);
    return SBX_OK;
}

int exv_exec_request(const Sbx__V1__ExecRequest *r, char *err, size_t errlen)
{
    int rc;
    if ((rc = exv_address(r->sandbox_id, r->project_id, err, errlen)) != SBX_OK)
        return rc;
    if ((rc = exv_command((int)r->command_case, r->argv, r->shell, err, errlen)) != SBX_OK)
        return rc;
    if (r->cwd && strlen(r->cwd) > 4096)
        return fail(err, errlen, "cwd: %zu bytes exceeds the limit of 4096", strlen(r->cwd));
    exv_kv *kv = exv_kv_collect((void *const *)r->env, r->n_env);
    if (r->n_env && !kv)
        return fail(err, errlen, "env: out of memory");
    rc = exv_env("env", kv, r->n_env, err, errlen);
    free(kv);
    if (rc != SBX_OK)
        return rc;
    if (r->stdin.len > EXV_STDIN_MAX)
        return fail(err, errlen, "stdin: %zu bytes exceeds the limit of %d", r->stdin.len,
                    EXV_STDIN_MAX);
    if ((rc = exv_duration_ms("timeout_ms", r->timeout_ms, EXV_TIMEOUT_MAX_MS, err, errlen)) !=
        SBX_OK)
        return rc;
    if (r->max_output_bytes < 0)
        return fail(err, errlen, "max_output_bytes: %lld is negative",
                    (long long)r->max_output_bytes);
    if ((rc = exv_tag("tag", r->tag, err, errlen)) != SBX_OK)
        return rc;
    if (r->pty && (rc = exv_term_size("pty.", r->pty->cols, r->pty->rows, err, errlen)) != SBX_OK)
        return rc;
    if (r->cache_ttl_s < 0 || r->cache_ttl_s > EXV_CACHE_TTL_MAX_S)
        return fail(err, errlen, "cache_ttl_s: %lld is outside 0..%lld", (long long)r->cache_ttl_s,
                    EXV_CACHE_TTL_MAX_S);
    return exv_request_id(r->request_id, err, errlen);
}

int exv_term_size(const char *field, uint32_t cols, uint32_t rows, char *err, size_t errlen)
{
    if (cols < 1 || cols > EXV_TERM_SIZE_MAX)
        return fail(err, errlen, "%scols: %u is outside 1..%d", field, cols, EXV_TERM_SIZE_MAX);
    if (rows < 1 || rows > EXV_TERM_SIZE_MAX)
        return fail(err, errlen, "%srows: %u is outside 1..%d", field, rows, EXV_TERM_SIZE_MAX);
    return SBX_OK;
}

int exv_selector(const Sbx__V1__ProcessSelector *s, char *err, size_t errlen)
{
    if (!s || s->sel_case == SBX__V1__PROCESS_SELECTOR__SEL__NOT_SET)
        return fail(err, errlen, "process: required (set pid or tag)");
    if (s->sel_case == SBX__V1__PROCESS_SELECTOR__SEL_PID) {
        if (s->pid <= 0)
            return fail(err, errlen, "process.pid: %d is not > 0", s->pid);
        return SBX_OK;
    }
    if (!s->tag || !s->tag[0])
        return fail(err, errlen, "process.tag: empty (1..%d bytes of [A-Za-z0-9._:-])",
                    EXV_TAG_MAX);
    return exv_tag("process.tag", s->tag, err, errlen);
}

static int limit_one(const char *field, int64_t v, int64_t min, int64_t def, int64_t max,
                     int64_t *out, char *err, size_t errlen)
{
    if (v < 0)
        return fail(err, errlen, "limits.%s: %lld is negative", field, (long long)v);
    if (v == 0) {
        *out = def;
        return SBX_OK;
    }
    if (v < min)
        return fail(err, errlen, "limits.%s: %lld is below the minimum of %lld", field,
                    (long long)v, (long long)min);
    if (max > 0 && v > max)
        return fail(err, errlen, "limits.%s: %lld exceeds the server maximum of %lld", field,
                    (long long)v, (long long)max);
    *out = v;
    return SBX_OK;
}

/* disk_inodes against disk_bytes (out holds both resolved): an explicit one may not exceed one
 * per EXV_BYTES_PER_INODE_MIN; a default adapts. */
static int resolve_inodes(int64_t asked, int64_t max, exv_limits *out, char *err, size_t errlen)
{
    int64_t cap = out->disk_bytes / EXV_BYTES_PER_INODE_MIN;
    if (asked > 0 && asked > cap)
        return fail(err, errlen,
                    "limits.disk_inodes: %lld exceeds one inode per %d bytes of "
                    "limits.disk_bytes (%lld: at most %lld)",
                    (long long)asked, EXV_BYTES_PER_INODE_MIN, (long long)out->disk_bytes,
                    (long long)cap);
    if (asked > 0)
        return SBX_OK;
    int64_t v =
        out->disk_inodes > 0 ? out->disk_inodes : out->disk_bytes / EXV_BYTES_PER_INODE_AUTO;
    if (max > 0 && v > max)
        v = max;
    if (v > cap)
        v = cap;
    out->disk_inodes = v < EXV_INODES_MIN ? EXV_INODES_MIN : v;
    return SBX_OK;
}

#define MIN_MEMORY (16LL << 20)
#define MIN_PIDS 8
#define MIN_CPU 10
#define MIN_OPEN_FILES 16

int exv_limits_resolve(const Sbx__V1__SandboxLimits *req, const exv_limits *def,
                       const exv_limits *max, exv_limits *out, char *err, size_t errlen)
{
    Sbx__V1__SandboxLimits zero = SBX__V1__SANDBOX_LIMITS__INIT;
    if (!req)
        req = &zero;
    int rc;
    if ((rc = limit_one("memory_bytes", req->memory_bytes, MIN_MEMORY, def->memory_bytes,
                        max->memory_bytes, &out->memory_bytes, err, errlen)) ||
        (rc = limit_one("pids", req->pids, MIN_PIDS, def->pids, max->pids, &out->pids, err,
                        errlen)) ||
        (rc = limit_one("cpu_millis", req->cpu_millis, MIN_CPU, def->cpu_millis, max->cpu_millis,
                        &out->cpu_millis, err, errlen)) ||
        (rc = limit_one("command_timeout_ms", req->command_timeout_ms, 1, def->command_timeout_ms,
                        max->command_timeout_ms, &out->command_timeout_ms, err, errlen)) ||
        (rc = limit_one("max_output_bytes", req->max_output_bytes, 1, def->max_output_bytes,
                        max->max_output_bytes, &out->max_output_bytes, err, errlen)) ||
        (rc = limit_one("open_files", req->open_files, MIN_OPEN_FILES, def->open_files,
                        max->open_files, &out->open_files, err, errlen)) ||
        (rc = limit_one("disk_bytes", req->disk_bytes, EXV_DISK_MIN, def->disk_bytes,
                        max->disk_bytes, &out->disk_bytes, err, errlen)) ||
        (rc = limit_one("disk_inodes", req->disk_inodes, EXV_INODES_MIN, def->disk_inodes,
                        max->disk_inodes, &out->disk_inodes, err, errlen)))
        return rc;
    return resolve_inodes(req->disk_inodes, max->disk_inodes, out, err, errlen);
}

int exv_limits_check_config(const exv_limits *d, const exv_limits *m, char *err, size_t errlen)
{
    struct {
        const char *flag;
        int64_t def, max, min;
    } rows[] = {
        {"memory", d->memory_bytes, m->memory_bytes, MIN_MEMORY},
        {"pids", d->pids, m->pids, MIN_PIDS},
        {"cpu-millis", d->cpu_millis, m->cpu_millis, MIN_CPU},
        {"command-timeout-ms", d->command_timeout_ms, m->command_timeout_ms, 1},
        {"max-output", d->max_output_bytes, m->max_output_bytes, 1},
        {"open-files", d->open_files, m->open_files, MIN_OPEN_FILES},
        {"disk", d->disk_bytes, m->disk_bytes, EXV_DISK_MIN},
        {"disk-inodes", d->disk_inodes ? d->disk_inodes : EXV_INODES_MIN, m->disk_inodes,
         EXV_INODES_MIN},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].def < rows[i].min)
            return fail(err, errlen, "--%s: %lld is below the minimum of %lld", rows[i].flag,
                        (long long)rows[i].def, (long long)rows[i].min);
        if (rows[i].max > 0 && rows[i].def > rows[i].max)
            return fail(err, errlen, "--%s: default %lld exceeds --%s-max %lld", rows[i].flag,
                        (long long)rows[i].def, rows[i].flag, (long long)rows[i].max);
    }
    return SBX_OK;
}

exv_kv *exv_kv_collect(void *const *entries, size_t n)
{
    if (n == 0)
        return NULL;
    exv_kv *kv = calloc(n, sizeof *kv);
    if (!kv)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        /* every generated map entry is {ProtobufCMessage base; char *key; char *value;} */
        const Sbx__V1__ExecRequest__EnvEntry *e = entries[i];
        kv[i].key = e->key;
        kv[i].value = e->value;
    }
    return kv;
}
