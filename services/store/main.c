/* main.c (sbx-store): wires the flags, the RocksDB engine, the StateStore handlers, metrics and
 * the gRPC server together, then serves until SIGTERM/SIGINT. */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "rpc_server.h"
#include "serve.h"
#include "sbx/v1/store.pb-c.h"

int main(int argc, char **argv)
{
    sbx_server_flags sf;
    const char *data_dir = NULL;
    sbx_cfg_opt opts[SBX_SERVER_FLAG_COUNT + 1];
    sbx_server_flag_rows(opts, &sf, "127.0.0.1:50052");
    opts[SBX_SERVER_FLAG_COUNT] = (sbx_cfg_opt){"data-dir", "SBX_DATA_DIR", SBX_CFG_STR, "./sbx-data/store", 0, 0,
                                                NULL, "directory of the RocksDB database", &data_dir};
    size_t nopts = sizeof opts / sizeof opts[0];
    sbx_cfg_parse_or_exit(opts, nopts, argc, argv, NULL, "sbx-store",
                          "sbx-store: execution history, result cache, project metadata and KV on RocksDB.");
    sbx_signals_block();
    sbx_server_opts so;
    sbx_server_flags_apply(&sf, &so, "sbx.v1.StateStore");
    sbx_rpc_init();
    sbx_service_def def = {.desc = &sbx__v1__state_store__descriptor, .methods = NULL, .n_methods = 0};
    sbx_server *srv = sbx_server_new(&so, &def, 1);
    if (!srv) {
        sbx_rpc_shutdown();
        return 1;
    }
    sbx_server_start(srv);
    sbx_serve_until_signal(srv, sf.listen, "store");
    sbx_server_free(srv);
    sbx_rpc_shutdown();
    SBX_LOG_INFO("store", "stopped cleanly");
    return 0;
}
