/* config.c: the table-driven flag/env parser behind config.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int sbx_parse_size(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    int shift = 0;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (shift && v > (INT64_MAX >> shift))
        return -1;
    *out = (int64_t)v << shift;
    return 0;
}

int sbx_cfg_set(const sbx_cfg_opt *o, const char *v, const char *src, char *err, size_t errlen)
{
    switch (o->type) {
    case SBX_CFG_STR:
        *(const char **)o->dst = v;
        return 0;
    case SBX_CFG_ENUM: {
        size_t vl = strlen(v);
        for (const char *c = o->choices; c && *c;) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == vl && strncmp(c, v, vl) == 0) {
                *(const char **)o->dst = v;
                return 0;
            }
            c = bar ? bar + 1 : NULL;
        }
        snprintf(err, errlen, "%s: '%s' is not one of %s", src, v, o->choices);
        return -1;
    }
    case SBX_CFG_BOOL:
        if (!strcasecmp(v, "on") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
            !strcmp(v, "1"))
            *(bool *)o->dst = true;
        else if (!strcasecmp(v, "off") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
                 !strcmp(v, "0"))
            *(bool *)o->dst = false;
        else {
            snprintf(err, errlen, "%s: '%s' is not on|off", src, v);
            return -1;
        }
        return 0;
    case SBX_CFG_INT:
    case SBX_CFG_SIZE: {
        int64_t x;
        if (o->type == SBX_CFG_INT) {
            errno = 0;
            char *end;
            long long ll = strtoll(v, &end, 10);
            if (errno || end == v || *end) {
                snprintf(err, errlen, "%s: '%s' is not an integer", src, v);
                return -1;
            }
            x = ll;
        } else if (sbx_parse_size(v, &x) != 0) {
            snprintf(err, errlen, "%s: '%s' is not a size (e.g. 4096, 512K, 64M, 2G)", src, v);
            return -1;
        }
        if (x < o->min || x > o->max) {
            snprintf(err, errlen, "%s: %s is out of range %lld..%lld", src, v, (long long)o->min,
                     (long long)o->max);
            return -1;
        }
        *(int64_t *)o->dst = x;
        return 0;
    }
    }
    return -1;
}

static const sbx_cfg_opt *find(const sbx_cfg_opt *opts, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0)
            return &opts[i];
    return NULL;
}

int sbx_cfg_parse(const sbx_cfg_opt *opts, size_t n, int argc, char **argv, int *positional,
                  char *err, size_t errlen)
{
    char src[128];
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type == SBX_CFG_STR || opts[i].type == SBX_CFG_ENUM)
            *(const char **)opts[i].dst = NULL;
        if (opts[i].def) {
            snprintf(src, sizeof src, "default of --%s", opts[i].flag);
            if (sbx_cfg_set(&opts[i], opts[i].def, src, err, errlen) != 0)
                return SBX_CFG_ERROR;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v && *v) {
            snprintf(src, sizeof src, "%s", opts[i].env);
            if (sbx_cfg_set(&opts[i], v, src, err, errlen) != 0)
                return SBX_CFG_ERROR;
        }
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return SBX_CFG_HELP;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (positional)
                break;
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return SBX_CFG_ERROR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const sbx_cfg_opt *o = find(opts, n, name, nl);
        if (!o) {
            snprintf(err, errlen, "unknown flag --%.*s (see --help)", (int)nl, name);
            return SBX_CFG_ERROR;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (o->type == SBX_CFG_BOOL &&
                 (i + 1 >= argc || sbx_cfg_set(o, argv[i + 1], "", err, errlen) != 0)) {
            v = "on";
        } else if (o->type == SBX_CFG_BOOL) {
            v = argv[++i];
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s: needs a value", o->flag);
                return SBX_CFG_ERROR;
            }
            v = argv[++i];
        }
        snprintf(src, sizeof src, "--%s", o->flag);
        if (sbx_cfg_set(o, v, src, err, errlen) != 0)
            return SBX_CFG_ERROR;
    }
    if (positional)
        *positional = i;
    else if (i < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[i]);
        return SBX_CFG_ERROR;
    }
    return SBX_CFG_OK;
}

void sbx_cfg_usage(FILE *out, const char *prog, const char *summary, const sbx_cfg_opt *opts,
                   size_t n)
{
    fprintf(
        out,
        "usage: %s [FLAGS]\n%s\n\nFlags (each also read from its environment variable; a flag wins):\n",
        prog, summary ? summary : "");
    for (size_t i = 0; i < n; i++) {
        const sbx_cfg_opt *o = &opts[i];
        const char *meta = o->type == SBX_CFG_BOOL   ? "on|off"
                           : o->type == SBX_CFG_ENUM ? o->choices
                           : o->type == SBX_CFG_INT  ? "N"
                           : o->type == SBX_CFG_SIZE ? "BYTES"
                                                     : "VALUE";
        fprintf(out, "  --%s %s\n      %s\n      env %s; default %s", o->flag, meta, o->help,
                o->env ? o->env : "-", o->def ? o->def : "(none)");
        if (o->type == SBX_CFG_INT || o->type == SBX_CFG_SIZE)
            fprintf(out, "; range %lld..%lld", (long long)o->min, (long long)o->max);
        fputc('\n', out);
    }
}

void sbx_cfg_parse_or_exit(const sbx_cfg_opt *opts, size_t n, int argc, char **argv,
                           int *positional, const char *prog, const char *summary)
{
    char err[512];
    int r = sbx_cfg_parse(opts, n, argc, argv, positional, err, sizeof err);
    if (r == SBX_CFG_HELP) {
        sbx_cfg_usage(stdout, prog, summary, opts, n);
        exit(0);
    }
    if (r != SBX_CFG_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
}
