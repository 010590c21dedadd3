/* fuzz_cli.c: the `sbx` command line (client/cli/args.c with the commands' option tables, and
 * the help printed from them) and its JSON string writer (client/cli/json.c). The input, split
 * at NUL bytes, is argv[1..] for cli_parse, which must either fail with a message or leave a
 * cli_args whose lists and command argv stay in bounds (a --help is printed to a memory
 * stream); every argument also goes through cli_parse_signal. The whole input is written with
 * json_str and read back by an independent decoder: the output must be one valid JSON string
 * literal (strict UTF-8, no raw control characters) that decodes, with \udcXX meaning the raw byte
 * XX, to exactly the input. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_cli: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_ARGS 64

static const char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

/* Strict UTF-8 (RFC 3629): length of the sequence at p, 0 if invalid. */
static size_t utf8_strict(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t l;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        l = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        l = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        l = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < l)
        return 0;
    for (size_t i = 1; i < l; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return l;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void check_json(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    CHECK(f);
    json_str(f, data, size);
    CHECK(fclose(f) == 0);
    const uint8_t *o = (const uint8_t *)out;
    CHECK(olen >= 2 && o[0] == '"' && o[olen - 1] == '"');
    uint8_t *dec = malloc(size + 1);
    CHECK(dec);
    size_t dn = 0;
    for (size_t i = 1; i < olen - 1;) {
        uint8_t c = o[i];
        CHECK(dn <= size);
        if (c == '"' || c < 0x20 || c == 0x7f) {
            fprintf(stderr, "fuzz_cli: json_str wrote a raw 0x%02x at %zu\n", c, i);
            abort();
        }
        if (c >= 0x80) {
            size_t l = utf8_strict(o + i, olen - 1 - i);
            if (l == 0) {
                fprintf(stderr, "fuzz_cli: json_str wrote invalid UTF-8 at %zu\n", i);
                abort();
            }
            CHECK(dn + l <= size);
            memcpy(dec + dn, o + i, l);
            dn += l;
            i += l;
            continue;
        }
        if (c != '\\') {
            CHECK(dn < size);
            dec[dn++] = c;
            i++;
            continue;
        }
        CHECK(i + 1 < olen - 1);
        uint8_t e = o[i + 1];
        uint8_t b;
        switch (e) {
        case '"':
            b = '"';
            break;
        case '\\':
            b = '\\';
            break;
        case '/':
            b = '/';
            break;
        case 'n':
            b = '\n';
            break;
        case 'r':
            b = '\r';
            break;
        case 't':
            b = '\t';
            break;
        case 'b':
            b = '\b';
            break;
        case 'f':
            b = '\f';
            break;
        case 'u': {
            CHECK(i + 6 <= olen - 1);
            int v = 0;
            for (int k = 0; k < 4; k++) {
                int h = hexval(o[i + 2 + k]);
                CHECK(h >= 0);
                v = v * 16 + h;
            }
            i += 6;
            if (v == 0x2028 || v == 0x2029) {
                CHECK(dn + 3 <= size);
                dec[dn++] = 0xe2;
                dec[dn++] = 0x80;
                dec[dn++] = v == 0x2028 ? 0xa8 : 0xa9;
            } else if (v >= 0xdc80 && v <= 0xdcff) {
                CHECK(dn < size);
                dec[dn++] = (uint8_t)(v & 0xff);
            } else {
                CHECK(v < 0x20 || v == 0x7f); /* nothing else needs \u */
                CHECK(dn < size);
                dec[dn++] = (uint8_t)v;
            }
            continue;
        }
        default:
            fprintf(stderr, "fuzz_cli: json_str wrote an unknown escape \\%c\n", e);
            abort();
        }
        CHECK(dn < size);
        dec[dn++] = b;
        i += 2;
    }
    if (dn != size || memcmp(dec, data, size) != 0) {
        fprintf(stderr, "fuzz_cli: json_str output does not decode to its input\n");
        abort();
    }
    free(dec);
    free(out);
}

/* The usage text of a command (or the list) comes out whole. */
static void check_help(const cli_command *c)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    CHECK(f);
    if (c)
        cli_command_usage(c, f);
    else
        cli_usage(f);
    CHECK(fclose(f) == 0);
    CHECK(len > 0 && strncmp(out, "usage: sbx", 10) == 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup("sbx");
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
    /* an empty input is "sbx" alone */
    if (size == 0) {
        free(argv[1]);
        argc = 1;
        argv[1] = NULL;
    }

    cli_args *a = malloc(sizeof *a);
    CHECK(a);
    cli_defaults(a, no_env);
    char err[256];
    err[0] = '\0';
    int rc = cli_parse(argc, argv, a, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        CHECK(err[0] && memchr(err, 0, sizeof err));
    } else {
        CHECK(a->n_env <= CLI_MAX_LIST && a->n_set <= CLI_MAX_LIST && a->n_unset <= CLI_MAX_LIST);
        CHECK(a->sub && a->executor && a->store);
        if (a->argv && a->argc)
            CHECK(a->argv >= argv && a->argv + a->argc <= argv + argc);
        for (size_t i = 0; i < a->n_env; i++)
            CHECK(a->env[i]);
        for (size_t i = 0; i < a->n_set; i++)
            CHECK(a->set_keys[i] && a->set_values[i]);
        CHECK(a->command || a->cmd == CMD_HELP || a->cmd == CMD_VERSION);
        if (a->cmd == CMD_HELP)
            check_help(a->help_topic);
    }
    for (int i = 1; i < argc; i++) {
        int s = cli_parse_signal(argv[i]);
        CHECK(s >= -1 && s < 65);
    }
    free(a);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    check_json(data, size);
    return 0;
}
