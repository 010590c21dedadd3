/* cmd_files.c: `sbx write|read|ls|stat|mkdir|rm|mv`: files inside a project's sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *type_name(sbx_file_type t)
{
    switch (t) {
    case SBX_FILE_REGULAR:
        return "file";
    case SBX_FILE_DIRECTORY:
        return "directory";
    case SBX_FILE_SYMLINK:
        return "symlink";
    case SBX_FILE_OTHER:
        return "other";
    default:
        return "unknown";
    }
}

static void info_json(FILE *f, const void *item)
{
    const sbx_file_info *i = item;
    fputs("{\"path\":", f);
    json_cstr(f, i->path);
    fputs(",\"name\":", f);
    json_cstr(f, i->name);
    fprintf(f, ",\"type\":\"%s\",\"size\":%" PRIu64 ",\"mode\":\"%04o\",\"mtime\":",
            type_name(i->type), i->size, i->mode);
    json_time(f, i->mtime_ms);
    fputs(",\"symlink_target\":", f);
    json_cstr(f, i->symlink_target);
    fprintf(f, ",\"uid\":%u,\"gid\":%u}", i->uid, i->gid);
}

typedef struct src {
    int fd;
    bool seekable;
} src;

static long src_read(void *buf, size_t cap, void *ud)
{
    src *s = ud;
    for (;;) {
        ssize_t r = read(s->fd, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        return (long)r;
    }
}

static int src_rewind(void *ud)
{
    src *s = ud;
    return lseek(s->fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

static int sink_stdout(const void *d, size_t n, void *ud)
{
    (void)ud;
    return cli_write_all(STDOUT_FILENO, d, n);
}

static int run_write(cli_args *a, sbx_client *c)
{
    char what[600];
    snprintf(what, sizeof what, "write %s", a->path);
    src s = {.fd = STDIN_FILENO};
    if (a->path2) {
        s.fd = open(a->path2, O_RDONLY | O_CLOEXEC);
        if (s.fd < 0) {
            char w[1400];
            snprintf(w, sizeof w, "%s: %s", what, a->path2);
            return cli_fail(
                w, sbx_error_new(errno == ENOENT ? SBX_CODE_NOT_FOUND : SBX_CODE_PERMISSION_DENIED,
                                 "%s", strerror(errno)));
        }
    }
    struct stat st;
    s.seekable = fstat(s.fd, &st) == 0 && S_ISREG(st.st_mode);
    sbx_write_opts o = {.mode = a->mode,
                        .append = a->append,
                        .exclusive = a->exclusive,
                        .no_create_parents = !a->parents};
    sbx_file_info info;
    uint64_t n = 0;
    sbx_error *e = sbx_file_write(c, a->project, a->path, &o, src_read,
                                  s.seekable ? src_rewind : NULL, &s, &info, &n);
    if (a->path2)
        close(s.fd);
    if (e)
        return cli_fail(what, e);
    if (a->json) {
        fprintf(stdout, "{\"bytes_written\":%" PRIu64 ",\"info\":", n);
        info_json(stdout, &info);
        fputs("}\n", stdout);
    }
    sbx_file_info_clear(&info);
    return 0;
}

/* "ls PATH", "stat PATH", ...: what an error line names. */
static const char *what_of(const cli_args *a, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s", a->cmd_name, a->path ? a->path : "");
    return buf;
}

static int run_read(cli_args *a, sbx_client *c)
{
    char what[600];
    sbx_error *e = sbx_file_read(c, a->project, a->path, 0, 0, sink_stdout, NULL, NULL);
    return e ? cli_fail(what_of(a, what, sizeof what), e) : 0;
}

static void stat_text(FILE *f, const sbx_file_info *i)
{
    char t[48] = "-";
    if (i->mtime_ms)
        cli_rfc3339(i->mtime_ms, t, sizeof t);
    fprintf(f, "path: %s\ntype: %s\nsize: %" PRIu64 "\nmode: %04o\nmtime: %s\nuid: %u\ngid: %u\n",
            i->path, type_name(i->type), i->size, i->mode, t, i->uid, i->gid);
    if (i->type == SBX_FILE_SYMLINK)
        fprintf(f, "target: %s\n", i->symlink_target);
}

static int run_stat(cli_args *a, sbx_client *c)
{
    char what[600];
    sbx_file_info i;
    sbx_error *e = sbx_file_stat(c, a->project, a->path, &i);
    if (e)
        return cli_fail(what_of(a, what, sizeof what), e);
    if (a->json) {
        info_json(stdout, &i);
        fputc('\n', stdout);
    } else {
        stat_text(stdout, &i);
    }
    sbx_file_info_clear(&i);
    return 0;
}

/* One `ls -l` line: type and mode, size, mtime, path (-> target). */
static void ls_long(FILE *f, const void *item)
{
    const sbx_file_info *i = item;
    char t[48] = "-";
    if (i->mtime_ms)
        cli_rfc3339(i->mtime_ms, t, sizeof t);
    bool link = i->type == SBX_FILE_SYMLINK;
    fprintf(f, "%c%04o %10" PRIu64 " %s %s%s%s\n",
            i->type == SBX_FILE_DIRECTORY ? 'd'
            : link                        ? 'l'
                                          : '-',
            i->mode, i->size, t, i->path, link ? " -> " : "", link ? i->symlink_target : "");
}

/* One `ls` line: the path, "/" after a directory. */
static void ls_short(FILE *f, const void *item)
{
    const sbx_file_info *i = item;
    fprintf(f, "%s%s\n", i->path, i->type == SBX_FILE_DIRECTORY ? "/" : "");
}

static int run_ls(cli_args *a, sbx_client *c)
{
    char what[600];
    sbx_file_list *l = NULL;
    sbx_error *e = sbx_file_list_dir(c, a->project, a->path, a->depth, (int)a->limit, &l);
    if (e)
        return cli_fail(what_of(a, what, sizeof what), e);
    cli_print_items(a, l->entries, l->count, sizeof *l->entries, info_json,
                    a->long_format ? ls_long : ls_short);
    if (l->truncated)
        fprintf(stderr, "sbx: ls: listing truncated (use --limit to raise the cap)\n");
    sbx_file_list_free(l);
    return 0;
}

static int run_mkdir(cli_args *a, sbx_client *c)
{
    char what[600];
    bool created = false;
    sbx_error *e = sbx_file_mkdir(c, a->project, a->path, a->mode, a->parents, &created);
    if (e)
        return cli_fail(what_of(a, what, sizeof what), e);
    if (a->json)
        fprintf(stdout, "{\"created\":%s}\n", created ? "true" : "false");
    return 0;
}

static int run_rm(cli_args *a, sbx_client *c)
{
    char what[600];
    what_of(a, what, sizeof what);
    bool existed = false;
    sbx_error *e = sbx_file_remove(c, a->project, a->path, a->recursive, &existed);
    if (e)
        return cli_fail(what, e);
    if (a->json)
        fprintf(stdout, "{\"existed\":%s}\n", existed ? "true" : "false");
    if (!existed && !a->force)
        return cli_fail(
            what, sbx_error_new(SBX_CODE_NOT_FOUND, "no such file or directory (-f to ignore)"));
    return 0;
}

static int run_mv(cli_args *a, sbx_client *c)
{
    char what[1200];
    snprintf(what, sizeof what, "mv %s %s", a->path, a->path2);
    sbx_error *e = sbx_file_move(c, a->project, a->path, a->path2, a->overwrite);
    return e ? cli_fail(what, e) : 0;
}

/* ---- the command line */
static const char *set_mode(cli_args *a, const char *v)
{
    char *end = NULL;
    errno = 0;
    unsigned long m = strtoul(v, &end, 8);
    if (!*v || errno || *end || m > 07777)
        return "want octal permission bits like 0644";
    a->mode = (uint32_t)m;
    return NULL;
}

#define OPT_MODE(help_) CLI_OPT_CALL("mode", 0, CLI_VAL, set_mode, "MODE", help_)

static const cli_opt write_opts[] = {
    CLI_OPT_PROJECT,
    OPT_MODE("permission bits in octal (default 0644)"),
    CLI_OPT_FLAG("append", 0, append, "append to the file instead of replacing it"),
    CLI_OPT_FLAG("exclusive", 0, exclusive, "fail if the file exists"),
    CLI_OPT_UNFLAG("no-parents", 0, parents, "do not create missing parent directories"),
    CLI_OPT_END,
};
static const cli_opt project_only_opts[] = {CLI_OPT_PROJECT, CLI_OPT_END};
static const cli_opt ls_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_INT("depth", 0, depth, 1, 32, "N", "want 1..32", "levels to descend (default 1)"),
    CLI_OPT_FLAG("long", 'l', long_format, "mode, size, mtime and symlink targets"),
    CLI_OPT_LIMIT("at most N entries"),
    CLI_OPT_END,
};
static const cli_opt mkdir_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("parents", 0, parents, "create missing parents (the default)"),
    CLI_OPT_UNFLAG("no-parents", 0, parents, "fail if the parent is missing"),
    OPT_MODE("permission bits in octal (default 0755)"),
    CLI_OPT_END,
};
static const cli_opt rm_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("recursive", 'r', recursive, "remove a directory and its contents"),
    CLI_OPT_FLAG("force", 'f', force, "a missing PATH is not an error"),
    CLI_OPT_END,
};
static const cli_opt mv_opts[] = {
    CLI_OPT_PROJECT,
    CLI_OPT_FLAG("overwrite", 0, overwrite, "replace DST if it exists"),
    CLI_OPT_FLAG("force", 'f', overwrite, "the same as --overwrite"),
    CLI_OPT_END,
};

/* The positionals of the file commands: PATH (ls: optional), then write's LOCAL_FILE or mv's
 * DST. */
static int files_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    size_t min = 1, max = 1;
    if (a->cmd == CMD_WRITE || a->cmd == CMD_MV)
        max = 2;
    if (a->cmd == CMD_MV)
        min = 2;
    if (a->cmd == CMD_LS)
        min = 0;
    if (cli_need_project(a, e) || cli_npos(e, np, min, max, a->command->synopsis))
        return -1;
    a->path = np ? pos[0] : "";
    a->path2 = np > 1 ? pos[1] : NULL;
    return 0;
}

#define FILE_COMMAND(name_, cmd_, opts_, brief_, synopsis_, summary_, run_)                        \
    {                                                                                              \
        .name = name_, .cmd = cmd_, .brief = brief_, .synopsis = synopsis_, .summary = summary_,   \
        .opts = opts_, .finish = files_finish, .run = run_                                         \
    }

const cli_command cli_cmd_write =
    FILE_COMMAND("write", CMD_WRITE, write_opts, "write a file in the sandbox",
                 "sbx write -p PROJ PATH [LOCAL_FILE] [--mode 0644] [--append] [--exclusive] "
                 "[--no-parents]",
                 "Writes a file in the sandbox from LOCAL_FILE, or from stdin; creates parents. "
                 "A relative PATH is under /home/user.",
                 run_write);
const cli_command cli_cmd_read =
    FILE_COMMAND("read", CMD_READ, project_only_opts, "print a file of the sandbox",
                 "sbx read -p PROJ PATH", "Writes the file's bytes to stdout.", run_read);
const cli_command cli_cmd_ls = FILE_COMMAND(
    "ls", CMD_LS, ls_opts, "list a directory", "sbx ls -p PROJ [PATH] [--depth N] [-l] [--limit N]",
    "Lists a directory (default: the home directory); directories end in \"/\".", run_ls);
const cli_command cli_cmd_stat =
    FILE_COMMAND("stat", CMD_STAT, project_only_opts, "show a file's type, size, mode, times",
                 "sbx stat -p PROJ PATH",
                 "Type, size, mode, mtime, owner (and symlink target) of PATH.", run_stat);
const cli_command cli_cmd_mkdir =
    FILE_COMMAND("mkdir", CMD_MKDIR, mkdir_opts, "create a directory",
                 "sbx mkdir -p PROJ PATH [--no-parents] [--mode M]",
                 "Creates a directory (and its parents unless --no-parents).", run_mkdir);
const cli_command cli_cmd_rm = FILE_COMMAND("rm", CMD_RM, rm_opts, "remove a file or directory",
                                            "sbx rm -p PROJ [-r] [-f] PATH",
                                            "Removes a file, or a directory with -r.", run_rm);
const cli_command cli_cmd_mv =
    FILE_COMMAND("mv", CMD_MV, mv_opts, "move a file or directory", "sbx mv -p PROJ [-f] SRC DST",
                 "Moves (renames) SRC to DST; -f replaces an existing DST.", run_mv);
