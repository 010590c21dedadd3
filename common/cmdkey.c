/* cmdkey.c: the cache key of a command (see cmdkey.h for the encoding). */
#include "cmdkey.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const void *d, size_t n)
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

static void put_str(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "/home/user" + lexical normalisation of cwd (".", "..", duplicate slashes). */
char *sbx_cmdkey_normalize_cwd(const char *cwd)
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
                o--; /* drop the slash too */
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

int sbx_cmdkey(const char *const *argv, size_t argc, const char *shell, const char *cwd,
               const char *const *env, size_t n_env, const void *stdin_data, size_t stdin_len,
               char out[65])
{
    buf b = {0};
    put_str(&b, "sbx.cmdkey.v1");
    if (shell) {
        put_str(&b, "shell");
        put_str(&b, shell);
    } else {
        put_str(&b, "argv");
        char cnt[24];
        snprintf(cnt, sizeof cnt, "%zu", argc);
        put_str(&b, cnt);
        for (size_t i = 0; i < argc; i++)
            put_str(&b, argv[i] ? argv[i] : "");
    }
    char *wd = sbx_cmdkey_normalize_cwd(cwd);
    if (!wd)
        b.oom = true;
    put_str(&b, wd ? wd : "");
    free(wd);
    const char **sorted = n_env ? malloc(n_env * sizeof *sorted) : NULL;
    char cnt[24];
    snprintf(cnt, sizeof cnt, "%zu", n_env);
    put_str(&b, cnt);
    if (n_env && !sorted)
        b.oom = true;
    if (sorted) {
        memcpy(sorted, env, n_env * sizeof *sorted);
        qsort(sorted, n_env, sizeof *sorted, cmp_str);
        for (size_t i = 0; i < n_env; i++)
            put_str(&b, sorted[i]);
        free(sorted);
    }
    put(&b, stdin_data, stdin_data ? stdin_len : 0);
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
