/* help.c: `sbx --help`, `sbx help [COMMAND]`, `sbx COMMAND --help` and `sbx --version`, printed
 * from the command table and each command's option table, so the help lists exactly the
 * options the parser accepts. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SBX_VERSION "0.1.0"
#define HELP_COLUMN 30 /* where an option's help text starts */
#define WRAP_WIDTH 96

/* Writes text wrapped at WRAP_WIDTH columns (at spaces); the first line starts at column col
 * (the caller wrote what is before it), the others after indent spaces. */
static void print_wrapped(FILE *out, const char *text, int col, int indent)
{
    const char *p = text;
    for (bool first = true; *p; first = false) {
        int at = first ? col : indent;
        size_t room = (size_t)(WRAP_WIDTH - at), len = strlen(p);
        if (len > room) {
            len = room;
            while (len > 0 && p[len] != ' ')
                len--;
            if (len == 0)
                len = strcspn(p, " ");
        }
        fprintf(out, "%*s%.*s\n", first ? 0 : indent, "", (int)len, p);
        p += len;
        while (*p == ' ')
            p++;
    }
}

/* "  -p, --project PROJ" / "      --cache[=TTL_S]", then the help from HELP_COLUMN. */
static void print_option(FILE *out, const cli_opt *o)
{
    char head[128];
    int n = snprintf(head, sizeof head, "  %c%c%c --%s", o->shrt ? '-' : ' ',
                     o->shrt ? o->shrt : ' ', o->shrt ? ',' : ' ', o->name);
    if (o->arg && o->kind == CLI_CALL && o->val == CLI_OPTVAL)
        n += snprintf(head + n, sizeof head - (size_t)n, "[=%s]", o->arg);
    else if (o->arg)
        n += snprintf(head + n, sizeof head - (size_t)n, " %s", o->arg);
    if (n + 2 > HELP_COLUMN)
        fprintf(out, "%s\n%*s", head, HELP_COLUMN, "");
    else
        fprintf(out, "%-*s", HELP_COLUMN, head);
    print_wrapped(out, o->help, HELP_COLUMN, HELP_COLUMN);
}

static void print_options(FILE *out, const cli_opt *opts)
{
    for (const cli_opt *o = opts; o && o->name; o++)
        print_option(out, o);
}

/* "usage: sbx ...", then "   or: sbx ..." for each further form; other lines continue one. */
static void print_synopsis(FILE *out, const char *synopsis)
{
    bool first = true;
    for (const char *p = synopsis; *p;) {
        size_t len = strcspn(p, "\n");
        const char *lead = strncmp(p, "sbx ", 4) != 0 ? "      " : first ? "usage: " : "   or: ";
        fprintf(out, "%s%.*s\n", lead, (int)len, p);
        first = false;
        p += len;
        if (*p)
            p++;
    }
}

void cli_command_usage(const cli_command *c, FILE *out)
{
    print_synopsis(out, c->synopsis);
    fputc('\n', out);
    print_wrapped(out, c->summary, 0, 0);
    if (c->opts && c->opts->name) {
        fputs("\nOptions:\n", out);
        print_options(out, c->opts);
    }
    fputs("\nThe global options (--executor, --store, --api-key, --json, --deadline, --tls-*)\n"
          "are accepted before or after the command: see sbx --help.\n",
          out);
}

void cli_usage(FILE *out)
{
    fputs("usage: sbx [--executor ADDR[,ADDR...]] [--store ADDR[,ADDR...]] [--api-key KEY] "
          "[--json]\n"
          "           [--deadline SECONDS] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] "
          "COMMAND ...\n\nGlobal options (before or after the command):\n",
          out);
    static const cli_opt help_opts[] = {
        {.name = "help", .shrt = 'h', .help = "this text; after a command: that command's"},
        {.name = "version", .help = "the version of sbx"},
        CLI_OPT_END,
    };
    print_options(out, cli_global_opts);
    print_options(out, help_opts);
    fputs("\nSeveral addresses: projects are spread over them by rendezvous hashing of the "
          "project id.\n\nCommands:\n",
          out);
    for (size_t i = 0; i < cli_n_commands; i++) {
        fprintf(out, "  %-10s%s\n", cli_commands[i]->name, cli_commands[i]->brief);
    }
    fputs("\nRun 'sbx COMMAND --help' for a command's options.\n"
          "Exit status: the command's for exec/sh (128+N for signal N, 124 on timeout); "
          "otherwise\n0 ok, 1 request failed, 2 usage error, 69 service unreachable.\n",
          out);
}

/* ---- `sbx help [COMMAND]` and `sbx version` */
static int run_help(cli_args *a, sbx_client *c)
{
    (void)c; /* offline */
    if (a->help_topic)
        cli_command_usage(a->help_topic, stdout);
    else
        cli_usage(stdout);
    return 0;
}

static int help_finish(cli_args *a, char **pos, size_t np, cli_err *e)
{
    if (cli_npos(e, np, 0, 1, "sbx help [COMMAND]"))
        return -1;
    if (np && !(a->help_topic = cli_find_command(pos[0])))
        return cli_bad(e, "unknown command \"%s\" (try: sbx help)", pos[0]);
    return 0;
}

static int run_version(cli_args *a, sbx_client *c)
{
    (void)a;
    (void)c; /* offline */
    fputs("sbx " SBX_VERSION "\n", stdout);
    return 0;
}

static const cli_opt no_opts[] = {CLI_OPT_END};

const cli_command cli_cmd_help = {
    .name = "help",
    .brief = "list the commands, or describe one",
    .cmd = CMD_HELP,
    .offline = true,
    .synopsis = "sbx help [COMMAND]",
    .summary = "Lists the commands, or describes one (the same as sbx COMMAND --help).",
    .opts = no_opts,
    .finish = help_finish,
    .run = run_help,
};

const cli_command cli_cmd_version = {
    .name = "version",
    .brief = "print the version",
    .cmd = CMD_VERSION,
    .offline = true,
    .synopsis = "sbx version",
    .summary = "Prints the version of sbx (the same as sbx --version).",
    .opts = no_opts,
    .finish = cli_no_positionals,
    .run = run_version,
};
