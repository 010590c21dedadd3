/* fuzz_wire.c: the executor's side of the sandbox init protocol (services/executor/wire.c).
 * An init runs inside a sandbox a hostile user controls, so every packet it sends is untrusted.
 * Each input becomes one SOCK_SEQPACKET packet on a socketpair, received with sbx_wire_recv
 * exactly as sandbox.c's service thread does (MSG_DONTWAIT, a SBX_WIRE_MAX buffer), optionally
 * with descriptors attached. A decoded message is then read the way sandbox.c reads it
 * (handle_message, Ready, Started, Result) and sent back through sbx_wire_send, which must
 * reproduce the same message. Descriptors must never leak: a rejected packet's are closed.
 *
 * Input: byte 0 = flags, the rest = the packet.
 *   bits 0-2  descriptors attached (0..7; more than SBX_WIRE_MAX_FDS must be dropped)
 *   bit 3     rewrite the 4-byte length prefix to match (reaches the protobuf decoder)
 *   bit 4     receive into a buffer smaller than the packet (MSG_TRUNC)
 *   bit 5     prepend the length prefix instead of overwriting the first 4 bytes */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_pb.h"
#include "wire.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_wire: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u * 1024u)

static int sv[2] = {-1, -1};
static int devnull = -1;
static uint8_t *rx;

static void setup(void)
{
    if (rx)
        return;
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    int sz = 4 * 1024 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(devnull >= 0);
    rx = malloc(SBX_WIRE_MAX);
    CHECK(rx);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void send_raw(const uint8_t *p, size_t n, size_t nfds)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    union {
        char b[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        int fds[8];
        for (size_t i = 0; i < nfds; i++)
            fds[i] = devnull;
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t w = sendmsg(sv[0], &mh, MSG_NOSIGNAL);
    CHECK(w == (ssize_t)n);
}

/* What sandbox.c reads of a message from the init, field by field. */
static void consume(const Sbxinit__InitMsg *m, size_t nfds)
{
    volatile uint64_t sink = m->id;
    switch (m->body_case) {
    case SBXINIT__INIT_MSG__BODY_EXITED: {
        const Sbxinit__Exited *e = m->exited;
        CHECK(e);
        sink += (uint64_t)e->pid + (uint64_t)e->exit_code + (uint64_t)e->signal + e->timed_out +
                e->core_dumped + e->duration_us;
        if (e->rusage)
            sink += e->rusage->utime_us + e->rusage->stime_us + e->rusage->maxrss_kb;
        break;
    }
    case SBXINIT__INIT_MSG__BODY_STARTED: {
        const Sbxinit__Started *st = m->started;
        CHECK(st && st->what);
        size_t want = 1u + (st->has_stdin ? 1u : 0u) + (st->has_stderr ? 1u : 0u);
        sink += want == nfds;
        sink += strcmp(st->what, "exec") == 0 || strcmp(st->what, "cwd") == 0;
        break;
    }
    case SBXINIT__INIT_MSG__BODY_READY: {
        const Sbxinit__Ready *r = m->ready;
        CHECK(r && r->err_what);
        sink += strlen(r->err_what) + (uint64_t)r->init_pid + (uint64_t)r->err;
        for (size_t i = 0; i < r->n_enforced; i++) {
            CHECK(r->enforced[i]);
            sink += strcmp(r->enforced[i], "userns") == 0;
        }
        break;
    }
    case SBXINIT__INIT_MSG__BODY_RESULT:
        CHECK(m->result);
        sink += (uint64_t)m->result->err;
        break;
    default:
        break;
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    setup();
    uint8_t flags = data[0];
    size_t nfds_sent = flags & 7;
    const uint8_t *body = data + 1;
    size_t blen = size - 1;

    uint8_t *pkt = malloc(blen + 4);
    CHECK(pkt);
    size_t plen;
    if (flags & 0x20) {
        memcpy(pkt + 4, body, blen);
        plen = blen + 4;
    } else {
        memcpy(pkt, body, blen);
        plen = blen;
    }
    if ((flags & 0x08) && plen >= 4) {
        size_t l = plen - 4;
        pkt[0] = (uint8_t)l;
        pkt[1] = (uint8_t)(l >> 8);
        pkt[2] = (uint8_t)(l >> 16);
        pkt[3] = (uint8_t)(l >> 24);
    }
    if (plen == 0 && nfds_sent == 0) {
        /* a zero-length packet: the peer's end of stream as far as sbx_wire_recv can tell */
        nfds_sent = 1;
    }
    int before = nfds_sent ? count_fds() : 0;
    send_raw(pkt, plen, nfds_sent);

    size_t cap = (flags & 0x10) && plen > 1 ? plen / 2 : SBX_WIRE_MAX;
    Sbxinit__InitMsg *m = (Sbxinit__InitMsg *)(uintptr_t)1;
    int fds[SBX_WIRE_MAX_FDS];
    size_t nfds = 99;
    int rc = sbx_wire_recv(sv[1], rx, cap, MSG_DONTWAIT, &m, fds, &nfds);
    CHECK(rc == 0 || rc == -EPROTO || rc == -EPIPE);
    CHECK(nfds <= SBX_WIRE_MAX_FDS);
    if (rc != 0) {
        CHECK(m == NULL);
        CHECK(nfds == 0);
    } else {
        CHECK(m);
        CHECK(plen >= 4 && plen <= cap);
        CHECK(nfds == (nfds_sent < SBX_WIRE_MAX_FDS ? nfds_sent : SBX_WIRE_MAX_FDS));
        for (size_t i = 0; i < nfds; i++)
            CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC);
        consume(m, nfds);

        /* the executor re-sends nothing it receives, but both ends share the framing: what
           decoded must encode and decode to the same bytes */
        size_t n1 = sbxinit__init_msg__get_packed_size(m);
        if (n1 + 4 <= SBX_WIRE_MAX) {
            CHECK(sbx_wire_send(sv[0], m, NULL, 0) == 0);
            Sbxinit__InitMsg *m2 = NULL;
            int fds2[SBX_WIRE_MAX_FDS];
            size_t nfds2 = 0;
            int rc2 = sbx_wire_recv(sv[1], rx, SBX_WIRE_MAX, MSG_DONTWAIT, &m2, fds2, &nfds2);
            /* protobuf-c's field-0 asymmetry (fuzz_pb.h) is the one allowed failure */
            CHECK(rc2 == 0 || (rc2 == -EPROTO && fuzz_pb_has_field0(&m->base)));
            if (rc2 == 0) {
                CHECK(m2 && nfds2 == 0);
                size_t n2 = sbxinit__init_msg__get_packed_size(m2);
                CHECK(n1 == n2);
                uint8_t *b1 = malloc(n1 + 1), *b2 = malloc(n2 + 1);
                CHECK(b1 && b2);
                sbxinit__init_msg__pack(m, b1);
                sbxinit__init_msg__pack(m2, b2);
                CHECK(memcmp(b1, b2, n1) == 0);
                free(b1);
                free(b2);
                sbxinit__init_msg__free_unpacked(m2, NULL);
            }
        }
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        sbxinit__init_msg__free_unpacked(m, NULL);
    }
    /* nothing left queued: one packet in, one packet out */
    uint8_t probe;
    CHECK(recv(sv[1], &probe, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);
    if (nfds_sent)
        CHECK(count_fds() == before); /* every received descriptor closed */
    free(pkt);
    return 0;
}
