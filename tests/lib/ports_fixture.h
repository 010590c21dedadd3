/* ports_fixture.h: what the port tests share (ports_fixture.c): a real sandbox (sandbox.h) with
 * a temp home dir, its process table and a port forwarder; small servers written in Python that
 * run inside it; TCP, HTTP and hashing helpers for the host side. The tests need root (they
 * create namespaces): env_setup leaves *state NULL after printing why when they cannot run, and
 * ENV_REQUIRE skips the test then. */
#ifndef SBX_PORTS_FIXTURE_H
#define SBX_PORTS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "portfwd.h"
#include "proc.h"
#include "sandbox.h"
#include "test_main.h"

typedef struct {
    char dir[64];
    char home[128];
    char id[48];
    sbx_sandbox *sb;
    sbx_proctab *pt;
    sbx_portfwd *fwd;
} env;

#define ENV_REQUIRE(e)                                                                             \
    do {                                                                                           \
        if (!(e))                                                                                  \
            skip();                                                                                \
    } while (0)

/* `python3 /home/user/srv.py MODE PORT` (MODE echo | chunked | sink) prints "ready" once it
 * listens; env_setup writes it into the sandbox's home. */
extern const char SRV_PY[];

/* NULL when this host can run sandboxes, else why not. */
const char *env_skip_reason(void);
/* cmocka setup/teardown: a sandbox, its process table and a forwarder in *state. */
int env_setup(void **state);
int env_teardown(void **state);
/* Starts argv in the sandbox (background, output kept); NULL on failure (printed). */
sbx_proc *env_start(env *e, const char *const *argv, const char *tag);
/* Waits until p's stdout contains word; false when it exited or timeout_ms passed. */
bool wait_output(sbx_proc *p, const char *word, int timeout_ms);
/* Starts srv.py MODE PORT and waits for "ready". */
sbx_proc *env_pyserver(env *e, const char *mode, uint16_t port);
/* Exposes port of the sandbox; its host port, or 0 (printed). */
uint16_t env_expose(env *e, uint16_t port);

int write_file(const char *path, const void *data, size_t len);
/* A blocking TCP connection to 127.0.0.1:port, or -errno. */
int tcp_connect(uint16_t port);
int write_all(int fd, const void *buf, size_t len);
/* Reads until EOF (or error) into a malloc'd *out, at most max bytes. Returns bytes read, or
 * -errno when the read failed before EOF (then *out holds what came). */
ssize_t read_all(int fd, char **out, size_t max);

/* A reproducible pseudo-random byte stream (xorshift64*) and a 64-bit hash of a byte stream. */
typedef struct {
    uint64_t h;
    uint64_t n;
} hash64;
void prng_fill(uint64_t *state, void *buf, size_t len);
void hash_init(hash64 *h);
void hash_add(hash64 *h, const void *buf, size_t len);
/* An HTTP/1.0 GET over a fresh connection: the status code (0 if none); the body hashed. */
int http_get_hash(uint16_t port, const char *path, hash64 *body);

#endif
