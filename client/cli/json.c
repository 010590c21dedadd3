/* json.c: the few JSON writers `sbx --json` needs: strings (UTF-8 validated; invalid bytes as
 * \udcXX escapes), RFC 3339 times and millisecond durations. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 if it is not valid (overlong
 * forms, surrogates and code points above U+10FFFF are invalid, per RFC 3629). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

void json_str(FILE *f, const void *s, size_t n)
{
    const unsigned char *p = s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t l = utf8_len(p + i, n - i);
        if (l == 0) {
            fprintf(f, "\\udc%02x", c);
            i++;
            continue;
        }
        if (l > 1) {
            /* U+2028 / U+2029 are valid JSON but break JavaScript embedding: escape them */
            if (l == 3 && c == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
                fprintf(f, "\\u%04x", p[i + 2] == 0xa8 ? 0x2028 : 0x2029);
            else
                fwrite(p + i, 1, l, f);
            i += l;
            continue;
        }
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        case '\f':
            fputs("\\f", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
        i++;
    }
    fputc('"', f);
}

void json_cstr(FILE *f, const char *s)
{
    if (!s)
        s = "";
    json_str(f, s, strlen(s));
}

void cli_rfc3339(int64_t ms, char *out, size_t outlen)
{
    time_t sec = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", base, frac);
}

void json_time(FILE *f, int64_t ms)
{
    if (ms == 0) {
        fputs("null", f);
        return;
    }
    char buf[48];
    cli_rfc3339(ms, buf, sizeof buf);
    fprintf(f, "\"%s\"", buf);
}

void json_duration_ms(FILE *f, int64_t us)
{
    if (us < 0)
        us = 0;
    fprintf(f, "%" PRId64 ".%03" PRId64, us / 1000, us % 1000);
}
