/* util.c: small helpers of libsbx: owned copies of strings and bytes, shell quoting for
 * display, kernel randomness, request ids and "K=V" environment entries as protobuf maps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sbx_internal.h"

const char *sbx__nz(const char *s)
{
    return s ? s : "";
}

char *sbx__strdup(const char *s)
{
    return strdup(s ? s : "");
}

uint8_t *sbx__memdup(const void *p, size_t n)
{
    uint8_t *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

static bool shell_safe(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("@%+=:,./_-", ch)))
            return false;
    }
    return true;
}

char *sbx__join_argv(const char *const *argv, size_t argc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return NULL;
    for (size_t i = 0; i < argc; i++) {
        const char *a = argv[i] ? argv[i] : "";
        if (i)
            fputc(' ', m);
        if (shell_safe(a)) {
            fputs(a, m);
            continue;
        }
        fputc('\'', m);
        for (const char *p = a; *p; p++) {
            if (*p == '\'')
                fputs("'\\''", m);
            else
                fputc(*p, m);
        }
        fputc('\'', m);
    }
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int sbx__random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* fall back to the device (old kernels, seccomp'd environments) */
            FILE *f = fopen("/dev/urandom", "re");
            if (!f)
                return -1;
            size_t got = fread(p, 1, n, f);
            fclose(f);
            return got == n ? 0 : -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

void sbx_request_id_new(char out[37])
{
    uint8_t b[16];
    if (sbx__random(b, sizeof b) != 0) {
        /* never reached on Linux >= 3.17; still produce something unique-ish */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        for (int i = 0; i < 16; i++, x = x * 6364136223846793005u + 1442695040888963407u)
            b[i] = (uint8_t)(x >> 56);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = 0;
}

int sbx__split_env(const char *kv, char **key, char **value)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return -1;
    *key = strndup(kv, (size_t)(eq - kv));
    *value = strdup(eq + 1);
    if (!*key || !*value) {
        free(*key);
        free(*value);
        return -1;
    }
    return 0;
}

int sbx__env_entries(const char *const *env, size_t n, const ProtobufCMessageDescriptor *d,
                     void ***out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    void **arr = calloc(n, sizeof *arr);
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sbx__kvpair *e = calloc(1, d->sizeof_message > sizeof *e ? d->sizeof_message : sizeof *e);
        if (!e) {
            sbx__env_free(arr, i);
            return -1;
        }
        protobuf_c_message_init(d, e);
        if (sbx__split_env(env[i], &e->key, &e->value) != 0) {
            free(e);
            sbx__env_free(arr, i);
            return -1;
        }
        arr[i] = e;
    }
    *out = arr;
    return 0;
}

void sbx__env_free(void **entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++) {
        sbx__kvpair *e = entries[i];
        if (!e)
            continue;
        free(e->key);
        free(e->value);
        free(e);
    }
    free(entries);
}
