/* wire.c: packet framing for the sandbox init protocol (see wire.h). Each message travels as
 * one SOCK_SEQPACKET packet, so descriptors can never be attributed to the wrong message. */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sbx_wire_send(int sock, const Sbxinit__InitMsg *msg, const int *fds, size_t nfds)
{
    size_t len = sbxinit__init_msg__get_packed_size(msg);
    if (len + 4 > SBX_WIRE_MAX)
        return -EMSGSIZE;
    if (nfds > SBX_WIRE_MAX_FDS)
        return -EINVAL;
    uint8_t stackbuf[512];
    uint8_t *buf = len + 4 <= sizeof stackbuf ? stackbuf : malloc(len + 4);
    if (!buf)
        return -ENOMEM;
    buf[0] = (uint8_t)len;
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 24);
    sbxinit__init_msg__pack(msg, buf + 4);

    struct iovec iov = {.iov_base = buf, .iov_len = len + 4};
    union {
        char b[CMSG_SPACE(sizeof(int) * SBX_WIRE_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    int rc = n < 0 ? -errno : 0;
    if (buf != stackbuf)
        free(buf);
    return rc;
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

int sbx_wire_recv(int sock, void *buf, size_t cap, int flags, Sbxinit__InitMsg **out, int *fds,
                  size_t *nfds)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union {
        char b[CMSG_SPACE(sizeof(int) * SBX_WIRE_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    *out = NULL;
    *nfds = 0;
    ssize_t n;
    do {
        n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int tmp[SBX_WIRE_MAX_FDS * 2];
        if (k > sizeof tmp / sizeof tmp[0])
            k = sizeof tmp / sizeof tmp[0];
        memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (*nfds < SBX_WIRE_MAX_FDS)
                fds[(*nfds)++] = tmp[i];
            else
                close(tmp[i]);
        }
    }
    if (n == 0) {
        close_all(fds, *nfds);
        *nfds = 0;
        return -EPIPE;
    }
    const uint8_t *b = buf;
    if (n < 4 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        goto out_proto;
    size_t len = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    if (len != (size_t)n - 4)
        goto out_proto;
    *out = sbxinit__init_msg__unpack(NULL, len, b + 4);
    if (!*out)
        goto out_proto;
    return 0;

out_proto:
    close_all(fds, *nfds);
    *nfds = 0;
    return -EPROTO;
}
