/* log.h: leveled, structured (key=value) logging to stderr. The level is checked before any
 * formatting. Lines look like:
 *   2026-11-29T17:40:20.123Z level=info comp=store msg="listening" addr=127.0.0.1:50052
 * Usage: SBX_LOG_INFO("store", "opened db path=%s cfs=%d", path, n);  the first word(s) up to
 * the first key=value are the message. */
#ifndef SBX_LOG_H
#define SBX_LOG_H

#include <errno.h>
#include <stdarg.h>

typedef enum {
    SBX_LOG_DEBUG = 0,
    SBX_LOG_INFO,
    SBX_LOG_WARN,
    SBX_LOG_ERROR,
    SBX_LOG_OFF
} sbx_log_level;

extern int sbx_log_threshold;

/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int sbx_log_parse_level(const char *s);
void sbx_log_set_level(int level);
void sbx_log_write(int level, const char *comp, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SBX_LOG_(lvl, comp, err, ...)                                                              \
    do {                                                                                           \
        if ((lvl) >= sbx_log_threshold)                                                            \
            sbx_log_write((lvl), (comp), (err), __VA_ARGS__);                                      \
    } while (0)
#define SBX_LOG_DEBUG(comp, ...) SBX_LOG_(SBX_LOG_DEBUG, comp, 0, __VA_ARGS__)
#define SBX_LOG_INFO(comp, ...) SBX_LOG_(SBX_LOG_INFO, comp, 0, __VA_ARGS__)
#define SBX_LOG_WARN(comp, ...) SBX_LOG_(SBX_LOG_WARN, comp, 0, __VA_ARGS__)
#define SBX_LOG_ERROR(comp, ...) SBX_LOG_(SBX_LOG_ERROR, comp, 0, __VA_ARGS__)
/* Same, appending err="strerror(errno)" (pass a positive or negative errno). */
#define SBX_LOG_ERRNO(lvl, comp, err, ...) SBX_LOG_(lvl, comp, err, __VA_ARGS__)

#endif
