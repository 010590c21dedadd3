/* cmdkey.c: the command cache key (see cmdkey.h). */
#include "cmdkey.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

typedef struct kbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} kbuf;

static void put(kbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 4 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 256) + n + 4;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    uint32_t l = (uint32_t)n;
    b->p[b->len++] = (uint8_t)(l >> 24);
    b->p[b->len++] = (uint8_t)(l >> 16);
    b->p[b->len++] = (uint8_t)(l >> 8);
    b->p[b->len++] = (uint8_t)l;
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_str(kbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *exk_normalize_cwd(const char *cwd)
{
    const char *home = "/home/user";
    size_t n = strlen(home) + 2 + (cwd ? strlen(cwd) : 0);
    char *in = malloc(n), *out = malloc(n);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    if (!cwd || !*cwd)
        snprintf(in, n, "%s", home);
    else if (cwd[0] == '/')
        snprintf(in, n, "%s", cwd);
    else
        snprintf(in, n, "%s/%s", home, cwd);
    size_t o = 0;
    out[o++] = '/';
    char *save = NULL;
    for (char *t = strtok_r(in, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0)
            continue;
        if (strcmp(t, "..") == 0) {
            while (o > 1 && out[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
            continue;
        }
        if (o > 1)
            out[o++] = '/';
        size_t tl = strlen(t);
        memcpy(out + o, t, tl);
        o += tl;
    }
    out[o] = 0;
    free(in);
    return out;
}

int exk_command_key(const Sbx__V1__ExecRequest *r, char out[65])
{
    kbuf b = {0};
    put_str(&b, "sbx.cmdkey.v1");
    if (r->command_case == SBX__V1__EXEC_REQUEST__COMMAND_SHELL) {
        put_str(&b, "shell");
        put_str(&b, r->shell);
    } else {
        put_str(&b, "argv");
        size_t argc = r->argv ? r->argv->n_args : 0;
        char cnt[24];
        snprintf(cnt, sizeof cnt, "%zu", argc);
        put_str(&b, cnt);
        for (size_t i = 0; i < argc; i++)
            put_str(&b, r->argv->args[i] ? r->argv->args[i] : "");
    }
    char *wd = exk_normalize_cwd(r->cwd);
    if (!wd)
        b.oom = true;
    put_str(&b, wd ? wd : "");
    free(wd);
    char cnt[24];
    snprintf(cnt, sizeof cnt, "%zu", r->n_env);
    put_str(&b, cnt);
    if (r->n_env) {
        char **kv = calloc(r->n_env, sizeof *kv);
        if (!kv)
            b.oom = true;
        for (size_t i = 0; kv && i < r->n_env; i++) {
            size_t l = strlen(r->env[i]->key) + strlen(r->env[i]->value) + 2;
            if (!(kv[i] = malloc(l))) {
                b.oom = true;
                break;
            }
            snprintf(kv[i], l, "%s=%s", r->env[i]->key, r->env[i]->value);
        }
        if (kv && !b.oom) {
            qsort(kv, r->n_env, sizeof *kv, cmp_str);
            for (size_t i = 0; i < r->n_env; i++)
                put_str(&b, kv[i]);
        }
        for (size_t i = 0; kv && i < r->n_env; i++)
            free(kv[i]);
        free(kv);
    }
    put(&b, r->stdin.data, r->stdin.data ? r->stdin.len : 0);
    int rc = 0;
    if (b.oom) {
        memset(out, '0', 64);
        out[64] = 0;
        rc = -ENOMEM;
    } else {
        sbx_sha256_hex(b.p, b.len, out);
    }
    free(b.p);
    return rc;
}
