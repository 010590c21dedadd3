/* run.c: `sbx` after parsing: help text, building the client from the global flags, and
 * dispatching to the command's file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

void cli_usage(FILE *out)
{
    fputs("usage: sbx [--executor ADDR[,ADDR...]] [--store ADDR[,ADDR...]] [--api-key KEY] [--json]\n"
          "           [--deadline SECONDS] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] COMMAND ...\n"
          "\n"
          "Environment: SBX_EXECUTOR (default 127.0.0.1:50051), SBX_STORE (default 127.0.0.1:50052),\n"
          "SBX_API_KEY. Several addresses: projects are spread over them by rendezvous hashing.\n"
          "\n"
          "Sandboxes (executor):\n"
          "  exec -p PROJ [--cwd D] [--env K=V]... [--timeout-ms N] [--cache[=TTL_S]] [--stdin]\n"
          "       [--background] [--tag T] [--max-output-bytes N] -- CMD [ARG...]\n"
          "  sh -p PROJ [exec flags] 'SHELL STRING'\n"
          "  write -p PROJ PATH [LOCAL_FILE] [--mode 0644] [--append] [--exclusive] [--no-parents]\n"
          "  read -p PROJ PATH          ls -p PROJ [PATH] [--depth N] [-l]     stat -p PROJ PATH\n"
          "  mkdir -p PROJ PATH [--no-parents]   rm -p PROJ [-r] [-f] PATH   mv -p PROJ [-f] SRC DST\n"
          "  setup -p PROJ LOCAL_DIR [--to PATH] [--install 'CMD'] [--no-replace]\n"
          "  serve -p PROJ --port N [--ready-path /] [--ready-timeout S] [--tag T] -- CMD...\n"
          "  ps -p PROJ [--all]   kill -p PROJ PID|--tag T [--signal N]\n"
          "  attach -p PROJ PID|--tag T [--from-offset N] [--no-follow]\n"
          "  sandbox create|get|list|kill -p PROJ [--wipe-home]   sandbox timeout -p PROJ SECONDS\n"
          "State (store):\n"
          "  history -p PROJ [--limit N] [--follow] [--output]\n"
          "  history add -p PROJ [--exit-code N] [--duration-ms MS] [--stdout S] [--stderr S]\n"
          "              [--record-id ID] [--cache-ttl S] [--cwd D] [--tag T] -- CMD...\n"
          "  project get|delete -p PROJ   project list [PREFIX] [--limit N]\n"
          "  project set -p PROJ KEY=VALUE... [--unset KEY] [--expect-version N]\n"
          "  cache clear -p PROJ [--cwd D] [--env K=V] [--shell S | -- CMD...]\n"
          "  cache get -p PROJ [--cwd D] [--env K=V] [--shell S | -- CMD...]\n"
          "  kv set KEY VALUE [--ttl S] [--expect-version N]   kv get KEY   kv del KEY\n"
          "  kv incr KEY [DELTA]   kv list [PREFIX] [--limit N] [--keys-only]   kv flush\n"
          "Other:\n"
          "  health [--service executor|store]   keygen --tenant NAME   demo [--keep]   help\n"
          "\n"
          "Exit status: the command's for exec/sh (128+N for signal N, 124 on timeout); otherwise\n"
          "0 ok, 1 request failed, 2 usage error, 69 service unreachable.\n",
          out);
}

int cli_run(cli_args *a)
{
    if (a->cmd == CMD_HELP) {
        cli_usage(stdout);
        return 0;
    }
    if (a->cmd == CMD_VERSION) {
        fputs("sbx 0.1.0\n", stdout);
        return 0;
    }
    if (a->cmd == CMD_KEYGEN)
        return cmd_keygen(a);
    sbx_config cfg = {
        .executor = a->executor,
        .store = a->store,
        .api_key = a->api_key,
        .tls_ca = a->tls_ca,
        .tls_cert = a->tls_cert,
        .tls_key = a->tls_key,
        .tls_server_name = a->tls_server_name,
        .deadline_ms = a->deadline_set ? a->deadline_ms : 0,
    };
    sbx_client *c = NULL;
    sbx_error *e = sbx_client_new(&cfg, &c);
    if (e) {
        int rc = cli_usage_error("%s", e->message);
        sbx_error_free(e);
        return rc;
    }
    int rc;
    switch (a->cmd) {
    case CMD_EXEC:
    case CMD_SH: rc = cmd_exec(a, c); break;
    case CMD_WRITE:
    case CMD_READ:
    case CMD_LS:
    case CMD_STAT:
    case CMD_MKDIR:
    case CMD_RM:
    case CMD_MV: rc = cmd_files(a, c); break;
    case CMD_SETUP: rc = cmd_setup(a, c); break;
    case CMD_SERVE: rc = cmd_serve(a, c); break;
    case CMD_PS:
    case CMD_KILL:
    case CMD_ATTACH: rc = cmd_procs(a, c); break;
    case CMD_SANDBOX: rc = cmd_sandbox(a, c); break;
    case CMD_HISTORY: rc = cmd_history(a, c); break;
    case CMD_PROJECT: rc = cmd_project(a, c); break;
    case CMD_CACHE: rc = cmd_cache(a, c); break;
    case CMD_KV: rc = cmd_kv(a, c); break;
    case CMD_HEALTH: rc = cmd_health(a, c); break;
    case CMD_DEMO: rc = cmd_demo(a, c); break;
    default: rc = cli_usage_error("unknown command (see sbx --help)"); break;
    }
    fflush(stdout);
    sbx_client_free(c);
    return rc;
}
