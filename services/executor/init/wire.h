/* wire.h: framing of the executor <-> sandbox init protocol (init.proto) over a SOCK_SEQPACKET
 * socket: one packet = 4-byte little-endian length + packed sbxinit.InitMsg, with any file
 * descriptors attached to the same packet as SCM_RIGHTS. Used by sbx-init and the runtime
 * (runtime/service.c). */
#ifndef SBX_WIRE_H
#define SBX_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "init.pb-c.h"

/* Largest packet either end sends or accepts (argv + env of one command must fit). */
#define SBX_WIRE_MAX (1024u * 1024u)
/* Most descriptors one packet carries. */
#define SBX_WIRE_MAX_FDS 4

/* Sends one message with nfds descriptors (the caller keeps ownership of them). Blocks until
 * the packet is queued. Returns 0, -EMSGSIZE when the packed message exceeds SBX_WIRE_MAX, or
 * -errno of sendmsg (-EPIPE when the peer is gone). */
int sbx_wire_send(int sock, const Sbxinit__InitMsg *msg, const int *fds, size_t nfds);

/* Receives one packet into buf (cap bytes, at least SBX_WIRE_MAX for init requests) and
 * unpacks it. On success *out owns the message (free it with sbxinit__init_msg__free_unpacked(
 * *out, NULL)) and fds[0..*nfds) the received descriptors (close-on-exec; the caller owns
 * them). flags are recvmsg flags (MSG_DONTWAIT). Returns 0, -EAGAIN, -EPIPE at end of stream,
 * -EPROTO for a malformed or truncated packet (any descriptors that came with it are closed),
 * or another -errno. */
int sbx_wire_recv(int sock, void *buf, size_t cap, int flags, Sbxinit__InitMsg **out, int *fds,
                  size_t *nfds);

#endif
