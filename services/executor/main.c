/* main.c (sbx-executor): wires the flags, the sandbox runtime, the SandboxExecutor handlers and
 * the gRPC server together, then serves until SIGTERM/SIGINT. */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "rpc_server.h"
#include "serve.h"
#include "sbx/v1/executor.pb-c.h"

int main(int argc, char **argv)
{
    sbx_server_flags sf;
    const char *data_dir = NULL, *store = NULL, *store_key = NULL, *port_bind = NULL;
    sbx_cfg_opt opts[SBX_SERVER_FLAG_COUNT + 4];
    sbx_server_flag_rows(opts, &sf, "127.0.0.1:50051");
    opts[SBX_SERVER_FLAG_COUNT] = (sbx_cfg_opt){"data-dir", "SBX_DATA_DIR", SBX_CFG_STR, "./sbx-data/executor", 0, 0,
                                                NULL, "directory for sandbox homes and the outbox", &data_dir};
    opts[SBX_SERVER_FLAG_COUNT + 1] = (sbx_cfg_opt){"store", "SBX_STORE", SBX_CFG_STR, "127.0.0.1:50052", 0, 0, NULL,
                                                    "sbx-store address where finished commands are recorded", &store};
    opts[SBX_SERVER_FLAG_COUNT + 2] = (sbx_cfg_opt){"store-api-key", "SBX_STORE_API_KEY", SBX_CFG_STR, NULL, 0, 0,
                                                    NULL, "API key (a @service principal) for calls to the store",
                                                    &store_key};
    opts[SBX_SERVER_FLAG_COUNT + 3] = (sbx_cfg_opt){"port-bind", "SBX_PORT_BIND", SBX_CFG_STR, "127.0.0.1", 0, 0, NULL,
                                                    "host address that forwarded sandbox ports listen on", &port_bind};
    size_t nopts = sizeof opts / sizeof opts[0];
    sbx_cfg_parse_or_exit(opts, nopts, argc, argv, NULL, "sbx-executor",
                          "sbx-executor: isolated Linux sandboxes that run commands, hold files and forward ports.");
    sbx_signals_block();
    sbx_server_opts so;
    sbx_server_flags_apply(&sf, &so, "sbx.v1.SandboxExecutor");
    sbx_rpc_init();
    sbx_service_def def = {.desc = &sbx__v1__sandbox_executor__descriptor, .methods = NULL, .n_methods = 0};
    sbx_server *srv = sbx_server_new(&so, &def, 1);
    if (!srv) {
        sbx_rpc_shutdown();
        return 1;
    }
    sbx_server_start(srv);
    sbx_serve_until_signal(srv, sf.listen, "executor");
    sbx_server_free(srv);
    sbx_rpc_shutdown();
    SBX_LOG_INFO("executor", "stopped cleanly");
    return 0;
}
