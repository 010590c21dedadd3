/* out.c: how `sbx` reports: the one-line error format, exit statuses (1 request error, 2 usage,
 * 69 unreachable), a finished command's status (its code, 128+N for signal N, 124 on
 * timeout), and the raw copy of a remote process's output to our stdout/stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_exit_code(const sbx_error *e)
{
    if (!e)
        return CLI_EXIT_OK;
    if (e->code == SBX_CODE_UNAVAILABLE)
        return CLI_EXIT_UNAVAILABLE;
    return CLI_EXIT_REQUEST;
}

int cli_fail(const char *what, sbx_error *e)
{
    if (!e) {
        fprintf(stderr, "sbx: %s: RESOURCE_EXHAUSTED: out of memory\n", what);
        return CLI_EXIT_REQUEST;
    }
    int code = cli_exit_code(e);
    /* keep it one line: a server message may carry newlines (e.g. a process's last output) */
    fprintf(stderr, "sbx: %s: %s: ", what, e->name);
    for (const char *p = e->message; *p; p++)
        fputc(*p == '\n' || *p == '\r' ? ' ' : *p, stderr);
    fputc('\n', stderr);
    sbx_error_free(e);
    return code;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sbx: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_command_status(const sbx_exec_result *r)
{
    if (r->timed_out)
        return 124;
    if (r->signal > 0)
        return 128 + r->signal;
    if (r->exit_code < 0 || r->exit_code > 255)
        return 255;
    return r->exit_code;
}

int cli_write_all(int fd, const void *d, size_t n)
{
    const char *p = d;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void cli_print_items(const cli_args *a, const void *items, size_t n, size_t size, cli_item_fn json,
                     cli_item_fn text)
{
    const char *p = items;
    if (a->json)
        fputc('[', stdout);
    for (size_t i = 0; i < n; i++, p += size) {
        if (!a->json) {
            text(stdout, p);
            continue;
        }
        if (i)
            fputc(',', stdout);
        json(stdout, p);
    }
    if (a->json)
        fputs("]\n", stdout);
}

int cli_copy_output(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)off;
    (void)ud;
    return cli_write_all(s == SBX_STDOUT ? STDOUT_FILENO : STDERR_FILENO, d, n);
}
