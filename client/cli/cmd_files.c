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
    case SBX_FILE_REGULAR: return "file";
    case SBX_FILE_DIRECTORY: return "directory";
    case SBX_FILE_SYMLINK: return "symlink";
    case SBX_FILE_OTHER: return "other";
    default: return "unknown";
    }
}

static void info_json(FILE *f, const sbx_file_info *i)
{
    fputs("{\"path\":", f);
    json_cstr(f, i->path);
    fputs(",\"name\":", f);
    json_cstr(f, i->name);
    fprintf(f, ",\"type\":\"%s\",\"size\":%" PRIu64 ",\"mode\":\"%04o\",\"mtime\":", type_name(i->type), i->size,
            i->mode);
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
    const char *p = d;
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int do_write(cli_args *a, sbx_client *c, const char *what)
{
    src s = {.fd = STDIN_FILENO};
    if (a->path2) {
        s.fd = open(a->path2, O_RDONLY | O_CLOEXEC);
        if (s.fd < 0) {
            char w[1400];
            snprintf(w, sizeof w, "%s: %s", what, a->path2);
            return cli_fail(w, sbx_error_new(errno == ENOENT ? SBX_CODE_NOT_FOUND : SBX_CODE_PERMISSION_DENIED,
                                             "%s", strerror(errno)));
        }
    }
    struct stat st;
    s.seekable = fstat(s.fd, &st) == 0 && S_ISREG(st.st_mode);
    sbx_write_opts o = {.mode = a->mode, .append = a->append, .exclusive = a->exclusive,
                        .no_create_parents = !a->parents};
    sbx_file_info info;
    uint64_t n = 0;
    sbx_error *e = sbx_file_write(c, a->project, a->path, &o, src_read, s.seekable ? src_rewind : NULL, &s, &info, &n);
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

int cmd_files(cli_args *a, sbx_client *c)
{
    char what[600];
    snprintf(what, sizeof what, "%s %s", a->cmd_name, a->path ? a->path : "");
    sbx_error *e = NULL;
    switch (a->cmd) {
    case CMD_WRITE:
        return do_write(a, c, what);
    case CMD_READ:
        e = sbx_file_read(c, a->project, a->path, 0, 0, sink_stdout, NULL, NULL);
        return e ? cli_fail(what, e) : 0;
    case CMD_STAT: {
        sbx_file_info i;
        e = sbx_file_stat(c, a->project, a->path, &i);
        if (e)
            return cli_fail(what, e);
        if (a->json) {
            info_json(stdout, &i);
            fputc('\n', stdout);
        } else {
            char t[48] = "-";
            if (i.mtime_ms)
                cli_rfc3339(i.mtime_ms, t, sizeof t);
            fprintf(stdout, "path: %s\ntype: %s\nsize: %" PRIu64 "\nmode: %04o\nmtime: %s\nuid: %u\ngid: %u\n", i.path,
                    type_name(i.type), i.size, i.mode, t, i.uid, i.gid);
            if (i.type == SBX_FILE_SYMLINK)
                fprintf(stdout, "target: %s\n", i.symlink_target);
        }
        sbx_file_info_clear(&i);
        return 0;
    }
    case CMD_LS: {
        sbx_file_list *l = NULL;
        e = sbx_file_list_dir(c, a->project, a->path, a->depth, (int)a->limit, &l);
        if (e)
            return cli_fail(what, e);
        if (a->json)
            fputc('[', stdout);
        for (size_t k = 0; k < l->count; k++) {
            const sbx_file_info *i = &l->entries[k];
            if (a->json) {
                if (k)
                    fputc(',', stdout);
                info_json(stdout, i);
            } else if (a->long_format) {
                char t[48] = "-";
                if (i->mtime_ms)
                    cli_rfc3339(i->mtime_ms, t, sizeof t);
                fprintf(stdout, "%c%04o %10" PRIu64 " %s %s%s%s\n",
                        i->type == SBX_FILE_DIRECTORY ? 'd' : i->type == SBX_FILE_SYMLINK ? 'l' : '-', i->mode,
                        i->size, t, i->path, i->type == SBX_FILE_SYMLINK ? " -> " : "",
                        i->type == SBX_FILE_SYMLINK ? i->symlink_target : "");
            } else {
                fprintf(stdout, "%s%s\n", i->path, i->type == SBX_FILE_DIRECTORY ? "/" : "");
            }
        }
        if (a->json)
            fputs("]\n", stdout);
        if (l->truncated)
            fprintf(stderr, "sbx: ls: listing truncated (use --limit to raise the cap)\n");
        sbx_file_list_free(l);
        return 0;
    }
    case CMD_MKDIR: {
        bool created = false;
        e = sbx_file_mkdir(c, a->project, a->path, a->mode, a->parents, &created);
        if (e)
            return cli_fail(what, e);
        if (a->json)
            fprintf(stdout, "{\"created\":%s}\n", created ? "true" : "false");
        return 0;
    }
    case CMD_RM: {
        bool existed = false;
        e = sbx_file_remove(c, a->project, a->path, a->recursive, &existed);
        if (e)
            return cli_fail(what, e);
        if (a->json)
            fprintf(stdout, "{\"existed\":%s}\n", existed ? "true" : "false");
        if (!existed && !a->force)
            return cli_fail(what, sbx_error_new(SBX_CODE_NOT_FOUND, "no such file or directory (-f to ignore)"));
        return 0;
    }
    case CMD_MV:
        snprintf(what, sizeof what, "mv %s %s", a->path, a->path2);
        e = sbx_file_move(c, a->project, a->path, a->path2, a->overwrite);
        return e ? cli_fail(what, e) : 0;
    default:
        return cli_usage_error("not a file command");
    }
}
