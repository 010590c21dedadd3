/* cmd_health.c: `sbx health [--service executor|store]`: every address of the service(s); exit
 * 0 only when all are SERVING, 69 when one is unreachable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *status_name(int s)
{
    switch (s) {
    case 1:
        return "SERVING";
    case 2:
        return "NOT_SERVING";
    case 3:
        return "SERVICE_UNKNOWN";
    default:
        return "UNKNOWN";
    }
}

/* Checks one address; prints its line (or JSON element); returns its exit status. */
static int check_one(cli_args *a, sbx_client *c, sbx_service svc, size_t i, bool first)
{
    const char *name = svc == SBX_SERVICE_EXECUTOR ? "executor" : "store";
    const char *addr = sbx_client_addr(c, svc, i);
    int st = 0;
    sbx_error *e = sbx_health_check(c, svc, i, &st);
    const char *shown = e ? e->name : status_name(st);
    if (a->json) {
        fprintf(stdout, "%s{\"service\":\"%s\",\"address\":", first ? "" : ",", name);
        json_cstr(stdout, addr);
        fputs(",\"status\":", stdout);
        json_cstr(stdout, shown);
        fputc('}', stdout);
    } else if (!e) {
        fprintf(stdout, "%s %s %s\n", name, addr, shown);
    }
    if (!e)
        return st == 1 ? 0 : CLI_EXIT_REQUEST;
    char what[300];
    snprintf(what, sizeof what, "health %s %s", name, addr);
    return cli_fail(what, e);
}

static int run_health(cli_args *a, sbx_client *c)
{
    int rc = 0;
    bool first = true;
    if (a->json)
        fputc('[', stdout);
    for (int svc = 0; svc < 2; svc++) {
        const char *name = svc == SBX_SERVICE_EXECUTOR ? "executor" : "store";
        if (a->service && strcmp(a->service, name) != 0)
            continue;
        for (size_t i = 0; i < sbx_client_addr_count(c, (sbx_service)svc); i++) {
            int this_rc = check_one(a, c, (sbx_service)svc, i, first);
            first = false;
            /* the worst outcome wins: unreachable (69) over not serving (1) */
            if (this_rc == CLI_EXIT_UNAVAILABLE || (this_rc && !rc))
                rc = this_rc;
        }
    }
    if (a->json)
        fputs("]\n", stdout);
    return rc;
}

/* ---- the command line */
static const char *set_service(cli_args *a, const char *v)
{
    if (strcmp(v, "executor") != 0 && strcmp(v, "store") != 0)
        return "want executor or store";
    a->service = v;
    return NULL;
}

static const cli_opt health_opts[] = {
    CLI_OPT_CALL("service", 0, CLI_VAL, set_service, "executor|store",
                 "check only this service (default: both)"),
    CLI_OPT_END,
};

const cli_command cli_cmd_health = {
    .name = "health",
    .brief = "check the services",
    .cmd = CMD_HEALTH,
    .synopsis = "sbx health [--service executor|store]",
    .summary = "Checks every address of the service(s): exit 0 when all are SERVING, 1 when "
               "one is not, 69 when one is unreachable.",
    .opts = health_opts,
    .finish = cli_no_positionals,
    .run = run_health,
};
