/* fuzz_config.c: common/config.c on hostile command lines. The input, split at NUL bytes, is an
 * argv (argv[0] is "fuzz") parsed against a table holding every option type, with and without a
 * positional index; each piece is also parsed by sbx_parse_size, whose result must agree with
 * a plain reading of the number and its suffix. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_ARGS 64

static char *s_listen, *s_mode;
static int64_t s_workers, s_cap;
static bool s_tls, s_debug;

static const sbx_cfg_opt OPTS[] = {
    {"listen", "SBX_FUZZ_LISTEN", SBX_CFG_STR, "127.0.0.1:0", 0, 0, NULL, "address", &s_listen},
    {"workers", "SBX_FUZZ_WORKERS", SBX_CFG_INT, "4", 1, 1024, NULL, "workers", &s_workers},
    {"tls", NULL, SBX_CFG_BOOL, "off", 0, 0, NULL, "tls", &s_tls},
    {"debug", NULL, SBX_CFG_BOOL, NULL, 0, 0, NULL, "debug", &s_debug},
    {"cap", "SBX_FUZZ_CAP", SBX_CFG_SIZE, "64M", 0, INT64_MAX, NULL, "cap", &s_cap},
    {"mode", NULL, SBX_CFG_ENUM, "group", 0, 0, "group|direct", "mode", &s_mode},
};
#define NOPTS (sizeof OPTS / sizeof OPTS[0])

/* Reference reading of a size: digits, then optional k/m/g/t, optional i, optional b. */
static void check_size(const char *s)
{
    int64_t v = -1;
    int rc = sbx_parse_size(s, &v);
    if (rc != 0)
        return;
    CHECK(v >= 0);
    char *end;
    long long base = strtoll(s, &end, 10);
    CHECK(end != s && base >= 0);
    int shift = 0;
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
    case '\0':
        break;
    default:
        CHECK(!"accepted an unknown suffix");
    }
    CHECK(base <= (INT64_MAX >> shift));
    CHECK(v == (int64_t)((uint64_t)base << shift));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    /* one heap block per argument so ASan sees overreads of any of them */
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup("fuzz");
    size_t start = 0;
    for (size_t i = 0; i <= size && argc < MAX_ARGS + 1; i++) {
        if (i == size || data[i] == '\0') {
            size_t n = i - start;
            char *a = malloc(n + 1);
            CHECK(a);
            memcpy(a, data + start, n);
            a[n] = '\0';
            argv[argc++] = a;
            start = i + 1;
        }
    }
    argv[argc] = NULL;

    for (int i = 1; i < argc; i++)
        check_size(argv[i]);

    char err[160];
    for (int with_pos = 0; with_pos < 2; with_pos++) {
        int pos = -1;
        err[0] = '\0';
        int rc = sbx_cfg_parse(OPTS, NOPTS, argc, argv, with_pos ? &pos : NULL, err, sizeof err);
        CHECK(rc == SBX_CFG_OK || rc == SBX_CFG_HELP || rc == SBX_CFG_ERROR);
        if (rc == SBX_CFG_ERROR)
            CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err));
        if (rc == SBX_CFG_OK) {
            CHECK(s_workers >= 1 && s_workers <= 1024);
            CHECK(s_cap >= 0);
            CHECK(s_listen);
            CHECK(s_mode && (!strcmp(s_mode, "group") || !strcmp(s_mode, "direct")));
            if (with_pos)
                CHECK(pos >= 1 && pos <= argc);
        }
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
