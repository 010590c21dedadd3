/* log.c: the stderr writer behind log.h. One write(2) per line so concurrent threads do not
 * interleave within a line. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int sbx_log_threshold = SBX_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

int sbx_log_parse_level(const char *s)
{
    for (int i = 0; i <= SBX_LOG_OFF; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void sbx_log_set_level(int level)
{
    sbx_log_threshold = level;
}

void sbx_log_write(int level, const char *comp, int err, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n =
        snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s comp=%s msg=\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), level_names[level < 0 || level > 3 ? 1 : level],
                 comp ? comp : "-");
    char body[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    /* message = text up to the first " key=" token; the rest are fields */
    const char *fields = NULL;
    for (char *p = body; (p = strchr(p, ' ')) != NULL; p++) {
        char *eq = strchr(p + 1, '=');
        char *sp = strchr(p + 1, ' ');
        if (eq && (!sp || eq < sp) && eq > p + 1) {
            *p = '\0';
            fields = p + 1;
            break;
        }
    }
    if (!fields && strchr(body, '=') &&
        strchr(body, '=') < (strchr(body, ' ') ? strchr(body, ' ') : body + strlen(body))) {
        fields = body;
        n += snprintf(line + n, sizeof line - (size_t)n, "\"");
    } else {
        for (const char *s = body; *s && n < (int)sizeof line - 8; s++) {
            if (*s == '"' || *s == '\\')
                line[n++] = '\\';
            line[n++] = *s == '\n' ? ' ' : *s;
        }
        n += snprintf(line + n, sizeof line - (size_t)n, "\"");
    }
    if (fields && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", fields);
    if (err && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " err=\"%s\"",
                      strerror(err < 0 ? -err : err));
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
