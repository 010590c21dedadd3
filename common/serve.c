/* serve.c: shared start-up and graceful-stop code of the service binaries. */
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "route.h"

void sbx_server_flag_rows(sbx_cfg_opt *r, sbx_server_flags *f, const char *default_listen)
{
    sbx_cfg_opt rows[SBX_SERVER_FLAG_COUNT] = {
        {"listen", "SBX_LISTEN", SBX_CFG_STR, default_listen, 0, 0, NULL,
         "HOST:PORT to serve gRPC on (port 0 = ephemeral; the bound address is printed)",
         &f->listen},
        {"api-keys", "SBX_API_KEYS", SBX_CFG_STR, NULL, 0, 0, NULL,
         "API keys file (TENANT:SHA256HEX lines, @service:SHA256HEX for services); without it only "
         "loopback listening is allowed",
         &f->api_keys},
        {"tls-cert", "SBX_TLS_CERT", SBX_CFG_STR, NULL, 0, 0, NULL,
         "PEM server certificate (enables TLS)", &f->tls_cert},
        {"tls-key", "SBX_TLS_KEY", SBX_CFG_STR, NULL, 0, 0, NULL, "PEM private key of --tls-cert",
         &f->tls_key},
        {"tls-client-ca", "SBX_TLS_CLIENT_CA", SBX_CFG_STR, NULL, 0, 0, NULL,
         "PEM CA bundle: require and verify client certificates (mTLS)", &f->tls_client_ca},
        {"log-level", "SBX_LOG_LEVEL", SBX_CFG_ENUM, "info", 0, 0, "debug|info|warn|error|off",
         "log verbosity", &f->log_level},
        {"poll-threads", "SBX_POLL_THREADS", SBX_CFG_INT, "1", 1, 64, NULL,
         "completion-queue polling threads (1 measured fastest on 2 cores)", &f->poll_threads},
        {"max-workers", "SBX_MAX_WORKERS", SBX_CFG_INT, "256", 4, 4096, NULL,
         "cap on worker threads for blocking and streaming handlers", &f->max_workers},
        {"max-message", "SBX_MAX_MESSAGE", SBX_CFG_SIZE, "16M", 65536, 1LL << 30, NULL,
         "largest gRPC message accepted or sent (bigger ones get RESOURCE_EXHAUSTED)",
         &f->max_message},
        {"grace-ms", "SBX_GRACE_MS", SBX_CFG_INT, "10000", 0, 600000, NULL,
         "on SIGTERM, how long in-flight calls may finish before they are cancelled", &f->grace_ms},
    };
    memcpy(r, rows, sizeof rows);
}

void sbx_server_flags_apply(const sbx_server_flags *f, sbx_server_opts *o, const char *health_name)
{
    sbx_log_set_level(sbx_log_parse_level(f->log_level));
    sbx_server_opts_default(o);
    o->listen = f->listen;
    o->api_keys_file = f->api_keys;
    o->tls_cert = f->tls_cert;
    o->tls_key = f->tls_key;
    o->tls_client_ca = f->tls_client_ca;
    o->poll_threads = (int)f->poll_threads;
    o->max_workers = (int)f->max_workers;
    o->max_message_bytes = (int)f->max_message;
    o->grace_ms = (int)f->grace_ms;
    o->health_name = health_name;
}

sbx_server *sbx_server_new(const sbx_server_opts *o, const sbx_service_def *services,
                           size_t n_services)
{
    sbx_service_def *all = calloc(n_services + 1, sizeof *all);
    if (!all)
        return NULL;
    all[0] = sbx_health_service(o->health_name);
    for (size_t i = 0; i < n_services; i++)
        all[i + 1] = services[i];
    sbx_server *s = sbx_server_new_bare(o, all, n_services + 1);
    free(all);
    return s;
}

int sbx_check_addr_flag(const char *prog, const char *flag, const char *value, bool listening)
{
    if (!value || sbx_addr_ok(value, listening))
        return 0;
    fprintf(stderr, "%s: %s: bad address \"%s\" (want HOST:PORT%s)\n", prog, flag, value,
            listening ? ", port 0 = any free port" : "");
    return 2;
}

void sbx_listen_addr(const char *listen, int port, char *out, size_t outlen)
{
    const char *colon = strrchr(listen, ':');
    int hl = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(out, outlen, "%.*s:%d", hl, listen, port);
}

int sbx_serve_until_signal(sbx_server *s, const char *listen, const char *prog)
{
    char addr[300];
    sbx_listen_addr(listen, sbx_server_port(s), addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    SBX_LOG_INFO(prog, "serving addr=%s", addr);
    int sig = sbx_signals_wait();
    SBX_LOG_INFO(prog, "stopping: health NOT_SERVING, finishing in-flight calls signal=%d", sig);
    sbx_server_shutdown(s);
    return sig;
}
