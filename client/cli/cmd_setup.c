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
    fprintf(stderr, "\rupload [%s] %zu/%zu files, %" PRIu64 "/%" PRIu64 " bytes", bar, files_done,
            files_total, done, total);
    fflush(stderr);
}

static int run_setup(cli_args *a, sbx_client *c)
{
    char what[600];
    snprintf(what, sizeof what, "setup %s", a->local_dir);
    bool tty = isatty(STDERR_FILENO) && !a->json;
    sbx_upload_result up;
    sbx_error *e = sbx_upload_dir(c, a->project, a->local_dir, a->to, a->replace,
                                  tty ? progress : NULL, NULL, &up);
    if (tty)
        fputc('\n', stderr);
    if (e)
        return cli_fail(what, e);
    if (!a->json)
        fprintf(stdout, "uploaded %u files, %" PRIu64 " bytes to %s\n", up.files_written,
                up.bytes_written, up.dest_dir);
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
        e = sbx_exec(c, &r, NULL, a->json ? NULL : cli_copy_output, NULL, &res);
        if (e) {
            sbx_upload_result_clear(&up);
            return cli_fail("setup --install", e);
        }
        ran = true;
        rc = cli_command_status(&res);
        if (rc != 0 && !a->json)
            fprintf(stderr, "sbx: setup --install: the install command exited with status %d\n",
                    rc);
    }
    if (a->json) {
        fprintf(stdout, "{\"files_written\":%u,\"bytes_written\":%" PRIu64 ",\"dest_dir\":",
                up.files_written, up.bytes_written);
        json_cstr(stdout, up.dest_dir);
        if (ran)
            fprintf(stdout, ",\"install_exit_code\":%d", rc);
        fputs("}\n", stdout);
    }
    sbx_exec_result_clear(&res);
    sbx_upload_result_clear(&up);
    return rc;
}

/* ---- the command line */
static const cli_opt setup_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_STR("to", 0, to, "PATH", "destination directory (default: the home directory)"),
    CLI_OPT_STR("install", 0, install, "'CMD'", "run CMD with /bin/sh -c in PATH after the upload"),
    CLI_OPT_UNFLAG("no-replace", 0, replace, "fail instead of overwriting existing files"),
    CLI_OPT_TIMEOUT_MS("time limit of the install command"),
    CLI_OPT_END,
};

static int setup_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (cli_need_project(a, e) ||
        cli_npos(e, np, 1, 1, "sbx setup -p PROJ LOCAL_DIR [--to PATH] [--install 'CMD']"))
        return -1;
    a->local_dir = pos[0];
    return 0;
}

const cli_command cli_cmd_setup = {
    .name = "setup",
    .brief = "upload a directory tree, then install",
    .cmd = CMD_SETUP,
    .synopsis = "sbx setup -p PROJ LOCAL_DIR [--to PATH] [--install 'CMD'] [--no-replace]",
    .summary = "Uploads a directory tree all-or-nothing (a progress bar when stderr is a "
               "terminal), then runs the install command if given; exit status: the install "
               "command's.",
    .opts = setup_opts,
    .finish = setup_finish,
    .run = run_setup,
};
