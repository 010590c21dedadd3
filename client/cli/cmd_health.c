/* cmd_health.c: `sbx health [--service executor|store]` (every address of the service(s); exit
 * 0 only when all are SERVING) and `sbx keygen --tenant NAME`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *status_name(int s)
{
    switch (s) {
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
    }
}

int cmd_health(cli_args *a, sbx_client *c)
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
            const char *addr = sbx_client_addr(c, (sbx_service)svc, i);
            int st = 0;
            sbx_error *e = sbx_health_check(c, (sbx_service)svc, i, &st);
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
            first = false;
            int this_rc;
            if (e) {
                char what[300];
                snprintf(what, sizeof what, "health %s %s", name, addr);
                this_rc = cli_fail(what, e);
            } else {
                this_rc = st == 1 ? 0 : CLI_EXIT_REQUEST;
            }
            /* the worst outcome wins: unreachable (69) over not serving (1) */
            if (this_rc == CLI_EXIT_UNAVAILABLE || (this_rc && !rc))
                rc = this_rc;
        }
    }
    if (a->json)
        fputs("]\n", stdout);
    return rc;
}

int cmd_keygen(cli_args *a)
{
    char *key = NULL, *line = NULL;
    sbx_error *e = sbx_keygen(a->tenant, &key, &line);
    if (e) {
        int rc = e->code == SBX_CODE_INVALID_ARGUMENT ? CLI_EXIT_USAGE : cli_exit_code(e);
        fprintf(stderr, "sbx: keygen: %s\n", e->message);
        sbx_error_free(e);
        return rc;
    }
    if (a->json) {
        fputs("{\"tenant\":", stdout);
        json_cstr(stdout, a->tenant);
        fputs(",\"key\":", stdout);
        json_cstr(stdout, key);
        fputs(",\"keys_file_line\":", stdout);
        json_cstr(stdout, line);
        fputs("}\n", stdout);
    } else {
        fprintf(stdout, "%s\n%s\n", key, line);
    }
    free(key);
    free(line);
    return 0;
}
