/* config.h: one table per binary drives its flags, the matching SBX_* environment variables,
 * defaults, bounds and --help. A flag wins over its variable; a bad value names the flag (or
 * variable) and the binary exits 2. */
#ifndef SBX_CONFIG_H
#define SBX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    SBX_CFG_STR,  /* char * (points into argv/environ or the default) */
    SBX_CFG_INT,  /* int64_t, decimal, within [min, max] */
    SBX_CFG_BOOL, /* bool: on|off|true|false|yes|no|1|0; a bare --flag means on */
    SBX_CFG_SIZE, /* int64_t bytes: 1048576, 512K, 64M, 2G (powers of 1024), within [min, max] */
    SBX_CFG_ENUM, /* char *: one of the '|'-separated words in `choices` */
} sbx_cfg_type;

typedef struct sbx_cfg_opt {
    const char *flag; /* "listen" for --listen */
    const char *env;  /* "SBX_LISTEN", or NULL */
    sbx_cfg_type type;
    const char *def;     /* default as text (NULL = unset) */
    int64_t min, max;    /* INT/SIZE bounds */
    const char *choices; /* ENUM: "on|off" */
    const char *help;
    void *dst; /* char **, int64_t *, or bool * */
} sbx_cfg_opt;

enum { SBX_CFG_OK = 0, SBX_CFG_HELP = 1, SBX_CFG_ERROR = -1 };

/* Parses defaults, then the environment, then argv (--flag VALUE and --flag=VALUE). Options stop
 * at "--" or at the first non-option when positional is non-NULL (its index is stored there);
 * otherwise a positional argument is an error. --help / -h print usage to out and return
 * SBX_CFG_HELP. On error returns SBX_CFG_ERROR with the message in err. */
int sbx_cfg_parse(const sbx_cfg_opt *opts, size_t n, int argc, char **argv, int *positional,
                  char *err, size_t errlen);
void sbx_cfg_usage(FILE *out, const char *prog, const char *summary, const sbx_cfg_opt *opts,
                   size_t n);
/* Parses one value as the option's type into its dst. */
int sbx_cfg_set(const sbx_cfg_opt *o, const char *value, const char *source, char *err,
                size_t errlen);
/* Size parsing used by SBX_CFG_SIZE: returns 0 or -1. */
int sbx_parse_size(const char *s, int64_t *out);

/* Convenience for a main(): parse, print usage or the error, exit(0) / exit(2) as needed. */
void sbx_cfg_parse_or_exit(const sbx_cfg_opt *opts, size_t n, int argc, char **argv,
                           int *positional, const char *prog, const char *summary);

#endif
