/* cmd_setup.c: `sbx setup -p PROJ LOCAL_DIR [--to PATH] [--install 'CMD']`: upload a local tree
 * all-or-nothing (with a progress bar only when stderr is a terminal), then run the install
 * command through the shell, streaming its output. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void progress(uint64_t done, uint64_t total, size_t files_done, size_t files_total, void *ud)
{
    (void)ud;
    int width = 30;
    int fill = total ? (int)((double)done / (double)total * width) : width;
    if (fill > width)
        fill = width;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = 0;
    fprintf(stderr, "\rupload [%s] %zu/%zu files, %" PRIu64 "/%" PRIu64 " bytes", bar, files_done, files_total, done,
            total);
    fflush(stderr);
}

static int on_out(sbx_stream_id s, const void *d, size_t n, uint64_t off, void *ud)
{
    (void)off;
    (void)ud;
    return fwrite(d, 1, n, s == SBX_STDOUT ? stdout : stderr) == n ? (fflush(s == SBX_STDOUT ? stdout : stderr), 0)
                                                                   : -1;
}

int cmd_setup(cli_args *a, sbx_client *c)
{
    char what[600];
    snprintf(what, sizeof what, "setup %s", a->local_dir);
    bool tty = isatty(STDERR_FILENO) && !a->json;
    sbx_upload_result up;
    sbx_error *e = sbx_upload_dir(c, a->project, a->local_dir, a->to, a->replace, tty ? progress : NULL, NULL, &up);
    if (tty)
        fputc('\n', stderr);
    if (e)
        return cli_fail(what, e);
    if (!a->json)
        fprintf(stdout, "uploaded %u files, %" PRIu64 " bytes to %s\n", up.files_written, up.bytes_written, up.dest_dir);
    int rc = 0;
    sbx_exec_result res = {0};
    bool ran = false;
    if (a->install) {
        sbx_exec_req r = {
            .project_id = a->project,
            .shell = a->install,
            .cwd = up.dest_dir,
            .timeout_ms = a->timeout_ms,
            .deadline_ms = a->deadline_set ? a->deadline_ms : 0,
        };
        fflush(stdout);
        e = sbx_exec(c, &r, NULL, a->json ? NULL : on_out, NULL, &res);
        if (e) {
            sbx_upload_result_clear(&up);
            return cli_fail("setup --install", e);
        }
        ran = true;
        rc = cli_command_status(&res);
        if (rc != 0 && !a->json)
            fprintf(stderr, "sbx: setup --install: the install command exited with status %d\n", rc);
    }
    if (a->json) {
        fprintf(stdout, "{\"files_written\":%u,\"bytes_written\":%" PRIu64 ",\"dest_dir\":", up.files_written,
                up.bytes_written);
        json_cstr(stdout, up.dest_dir);
        if (ran)
            fprintf(stdout, ",\"install_exit_code\":%d", rc);
        fputs("}\n", stdout);
    }
    sbx_exec_result_clear(&res);
    sbx_upload_result_clear(&up);
    return rc;
}
