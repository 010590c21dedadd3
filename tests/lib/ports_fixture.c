/* ports_fixture.c: what the port tests share (see ports_fixture.h): a real sandbox with a temp
 * home, its process table and a forwarder; Python servers run inside it; TCP, HTTP and hashing
 * helpers for the host side. */
#include "ports_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "devserver.h"
#include "log.h"

/* Servers for the tests, run inside the sandbox as `python3 /home/user/srv.py MODE PORT`.
 * They print "ready" once listening. */
const char SRV_PY[] =
    "import socket, sys, threading, time\n"
    "mode, port = sys.argv[1], int(sys.argv[2])\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port))\n"
    "ls.listen(256)\n"
    "print('ready', flush=True)\n"
    "def echo(c):\n"
    "    while True:\n"
    "        b = c.recv(65536)\n"
    "        if not b: break\n"
    "        c.sendall(b)\n"
    "    c.shutdown(socket.SHUT_WR)\n"
    "    c.close()\n"
    "def chunked(c):\n"
    "    req = b''\n"
    "    while b'\\r\\n\\r\\n' not in req:\n"
    "        b = c.recv(4096)\n"
    "        if not b: return\n"
    "        req += b\n"
    "    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\n'\n"
    "              b'Transfer-Encoding: chunked\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "    for i in range(5):\n"
    "        data = (b'chunk-%d;' % i) * (i * 300 + 1)\n"
    "        c.sendall(b'%x\\r\\n%s\\r\\n' % (len(data), data))\n"
    "        time.sleep(0.1)\n"
    "    c.sendall(b'0\\r\\n\\r\\n')\n"
    "    c.close()\n"
    "def sink(c):\n"
    "    time.sleep(1.0)\n"
    "    n = 0\n"
    "    while True:\n"
    "        b = c.recv(1 << 20)\n"
    "        if not b: break\n"
    "        n += len(b)\n"
    "    c.sendall(b'%d\\n' % n)\n"
    "    c.close()\n"
    "h = {'echo': echo, 'chunked': chunked, 'sink': sink}[mode]\n"
    "while True:\n"
    "    c, _ = ls.accept()\n"
    "    threading.Thread(target=h, args=(c,), daemon=True).start()\n";

int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            close(fd);
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return 0;
}

/* A reproducible pseudo-random byte stream (xorshift64*) and a 64-bit hash of a byte stream. */
void prng_fill(uint64_t *state, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        uint64_t v = x * 0x2545F4914F6CDD1DULL;
        size_t n = len < 8 ? len : 8;
        memcpy(p, &v, n);
        p += n;
        len -= n;
    }
}

void hash_init(hash64 *h)
{
    h->h = 0xcbf29ce484222325ULL, h->n = 0;
}
void hash_add(hash64 *h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t x = h->h;
    for (size_t i = 0; i < len; i++)
        x = (x ^ p[i]) * 0x100000001b3ULL;
    h->h = x;
    h->n += len;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

const char *env_skip_reason(void)
{
    sbx_sandbox_caps caps;
    if (geteuid() != 0)
        return "needs root (namespaces, cgroups, uid ranges)";
    if (sbx_sandbox_caps_detect(SBX_INIT_BUILD_PATH, &caps) < 0 || !caps.namespaces)
        return "the kernel cannot create user/pid/mount/net namespaces here";
    return NULL;
}

int env_setup(void **state)
{
    static int seq;
    *state = NULL;
    const char *why = env_skip_reason();
    if (why) {
        printf("SKIP: %s\n", why);
        return 0;
    }
    env *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    sbx_log_set_level(SBX_LOG_WARN);
    snprintf(e->dir, sizeof e->dir, "/tmp/sbx-pf-XXXXXX");
    if (!mkdtemp(e->dir))
        return -1;
    chmod(e->dir, 0711); /* the sandbox's own root must reach its home below it */
    snprintf(e->home, sizeof e->home, "%s/home", e->dir);
    snprintf(e->id, sizeof e->id, "pf-%d-%d", (int)getpid(), seq++);
    sbx_sandbox_cfg cfg = {.id = e->id,
                           .init_path = SBX_INIT_BUILD_PATH,
                           .home_dir = e->home,
                           .uid_base =
                               0x10000000u + (uint32_t)((getpid() * 4 + seq) % 20000) * 65536u};
    int rc = sbx_sandbox_create(&cfg, &e->sb);
    if (rc < 0) {
        fprintf(stderr, "sbx_sandbox_create: %s\n", strerror(-rc));
        return -1;
    }
    if (sbx_proctab_create(e->sb, NULL, &e->pt) < 0)
        return -1;
    char path[256];
    snprintf(path, sizeof path, "%s/srv.py", e->home);
    if (write_file(path, SRV_PY, sizeof SRV_PY - 1) < 0)
        return -1;
    if (sbx_portfwd_create(NULL, &e->fwd) < 0)
        return -1;
    *state = e;
    return 0;
}

int env_teardown(void **state)
{
    env *e = *state;
    if (!e)
        return 0;
    sbx_portfwd_destroy(e->fwd);
    sbx_proctab_destroy(e->pt);
    sbx_sandbox_destroy(e->sb);
    nftw(e->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    return 0;
}

/* Starts argv in the sandbox (background, output kept). */
sbx_proc *env_start(env *e, const char *const *argv, const char *tag)
{
    sbx_proc_req req = {.spawn = {.argv = argv}, .tag = tag};
    sbx_proc *p = NULL;
    const char *what = NULL;
    int rc = sbx_proc_start(e->pt, &req, &p, &what);
    if (rc < 0)
        fprintf(stderr, "sbx_proc_start: %s (%s)\n", strerror(-rc), what ? what : "");
    return p;
}

/* Waits until p's stdout contains word. */
bool wait_output(sbx_proc *p, const char *word, int timeout_ms)
{
    uint64_t end = sbx_mono_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    for (;;) {
        uint64_t off = 0;
        ssize_t n = sbx_proc_read(p, SBX_STREAM_STDOUT, &off, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = '\0';
            if (strstr(buf, word))
                return true;
        }
        sbx_proc_status st;
        sbx_proc_status_get(p, &st);
        if (!st.running) {
            char err[2048];
            sbx_devserver_tail(p, 20, err, sizeof err);
            fprintf(stderr, "server exited: %s\n", err);
            return false;
        }
        uint64_t now = sbx_mono_ms();
        if (now >= end)
            return false;
        sbx_proc_wait(p, st.out_end, st.err_end, (int)(end - now));
    }
}

/* Starts srv.py MODE PORT and waits for "ready". */
sbx_proc *env_pyserver(env *e, const char *mode, uint16_t port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    const char *argv[] = {"python3", "/home/user/srv.py", mode, ps, NULL};
    sbx_proc *p = env_start(e, argv, mode);
    if (p && !wait_output(p, "ready", 10000)) {
        sbx_proc_unref(p);
        return NULL;
    }
    return p;
}

uint16_t env_expose(env *e, uint16_t port)
{
    uint16_t hp = 0;
    int rc = sbx_portfwd_expose_pid(e->fwd, e->id, sbx_sandbox_init_pid(e->sb), port, &hp);
    if (rc < 0)
        fprintf(stderr, "expose: %s\n", strerror(-rc));
    return hp;
}

/* A blocking TCP connection to 127.0.0.1:port, or -errno. */
int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until EOF (or error) into a growing buffer, at most max bytes. Returns bytes read, or
 * -errno when the read failed before EOF (then *out holds what came). */
ssize_t read_all(int fd, char **out, size_t max)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    ssize_t rc = 0;
    for (;;) {
        if (n == cap && cap < max) {
            cap = cap * 2 > max ? max : cap * 2;
            buf = realloc(buf, cap + 1);
        }
        if (n == cap)
            break;
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    return rc < 0 ? rc : (ssize_t)n;
}

/* An HTTP/1.0 GET over a fresh connection; returns the status code (0 if none) and hashes the
 * body. */
int http_get_hash(uint16_t port, const char *path, hash64 *body)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return 0;
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    if (write_all(fd, req, (size_t)n) < 0) {
        close(fd);
        return 0;
    }
    static __thread char buf[1 << 16];
    size_t hdr = 0;
    char head[4096];
    bool in_body = false;
    int status = 0;
    hash_init(body);
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            break;
        size_t off = 0;
        if (!in_body) {
            size_t take = (size_t)r < sizeof head - 1 - hdr ? (size_t)r : sizeof head - 1 - hdr;
            memcpy(head + hdr, buf, take);
            hdr += take;
            head[hdr] = '\0';
            char *end = strstr(head, "\r\n\r\n");
            if (!end)
                continue;
            sscanf(head, "HTTP/%*d.%*d %d", &status);
            size_t hlen = (size_t)(end - head) + 4;
            off = hlen - (hdr - take);
            in_body = true;
        }
        hash_add(body, buf + off, (size_t)r - off);
    }
    close(fd);
    return status;
}
