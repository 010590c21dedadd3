/* egress.h: network egress of sandboxes through filtering proxies, the only door of sbx_egress.
 * A sandbox has no network but its loopback; once it has a non-empty policy the executor opens,
 * inside the sandbox's network namespace, an HTTP proxy on 127.0.0.1:3128 (CONNECT and
 * absolute-URI requests) and a SOCKS5 proxy on 127.0.0.1:1080 (names resolved here: socks5h).
 * Each request is checked against the sandbox's policy (allow_out / deny_out patterns, deny
 * wins), the operator's global deny list and the always-blocked ranges (loopback, RFC 1918,
 * unique-local, link-local, multicast, reserved, this host's and the services' own addresses,
 * minus what --egress-allow-private opens); names are resolved on resolver threads and the
 * proxy connects to the very address it checked (no DNS rebinding). Allowed connections are
 * relayed with the splice relay of ports/relay.h on one event-loop thread.
 *
 * Pieces: policy.c (patterns: parse and match), ranges.c (the blocked ranges and their
 * exceptions), http.c / socks.c (the two request formats and their replies), resolver.c (name
 * resolution threads), loop.c (the event loop: listeners, commands, timers), conn.c (one
 * connection from request to relay), egress.c (this API: service, sandboxes, metrics).
 *
 * Threads: every function is thread-safe. The service owns one loop thread and a few resolver
 * threads (signals blocked); opening a sandbox's proxies runs a short-lived thread that enters
 * its network namespace.
 *
 * Errors: functions return 0 or a negative errno unless stated; messages go to err buffers. */
#ifndef SBX_EGRESS_H
#define SBX_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_EGRESS_MAX_PATTERNS 256 /* per list */
#define SBX_EGRESS_PATTERN_MAX 253  /* bytes per pattern */
#define SBX_EGRESS_HTTP_PROXY "http://127.0.0.1:3128"
#define SBX_EGRESS_SOCKS_PROXY "socks5h://127.0.0.1:1080"

/* ---- policies (policy.c) ------------------------------------------------------------------ */

/* An immutable, reference-counted egress policy: allow_out and deny_out patterns. Patterns:
 * "host" (that name), "*.host" (its subdomains), an IPv4/IPv6 address, a CIDR, or "*" (every
 * destination that is not blocked); each optionally ":PORT" (IPv6 in brackets then:
 * "[2001:db8::1]:443", "[2001:db8::/32]:443"). Names are matched case-insensitively, without a
 * trailing dot. */
typedef struct sbx_egress_policy sbx_egress_policy;

/* Parses the two lists. field prefixes the lists' names in errors ("network" gives
 * "network.allow_out[2]: \"*.\" is not a pattern: ..."). On success *out has one reference.
 * Errors: -EINVAL (a bad pattern, more than SBX_EGRESS_MAX_PATTERNS; why in err), -ENOMEM. */
int sbx_egress_policy_new(const char *const *allow, size_t n_allow, const char *const *deny,
                          size_t n_deny, const char *field, sbx_egress_policy **out, char *err,
                          size_t errlen);
/* Parses "PATTERN,PATTERN,..." (a flag's value; empty items are errors, NULL or "" = an empty
 * list) into allow (as_deny false) or deny patterns. flag names the flag in errors. */
int sbx_egress_policy_from_list(const char *csv, bool as_deny, const char *flag,
                                sbx_egress_policy **out, char *err, size_t errlen);
sbx_egress_policy *sbx_egress_policy_ref(sbx_egress_policy *p);
void sbx_egress_policy_unref(sbx_egress_policy *p); /* NULL is harmless */
/* No allow_out pattern (nothing can be reached). NULL counts as empty. */
bool sbx_egress_policy_empty(const sbx_egress_policy *p);
/* The patterns as given: count of a list (deny false: allow_out) and its i-th text (owned by p). */
size_t sbx_egress_policy_count(const sbx_egress_policy *p, bool deny);
const char *sbx_egress_policy_text(const sbx_egress_policy *p, bool deny, size_t i);
/* Same patterns in the same order. */
bool sbx_egress_policy_equal(const sbx_egress_policy *a, const sbx_egress_policy *b);

/* ---- the service (egress.c) --------------------------------------------------------------- */

typedef struct sbx_egress sbx_egress;

typedef struct sbx_egress_cfg {
    const char *allow_private;        /* --egress-allow-private "CIDR[:PORT],..." (NULL = none) */
    const char *deny;                 /* --egress-deny "PATTERN,..." (NULL = none) */
    const char *const *service_addrs; /* "HOST:PORT" the executor and stores listen on: never
                                         reachable (unless opened with their port) */
    size_t n_service_addrs;
    uint32_t max_conns;      /* live connections per sandbox; 0 = 256 */
    uint32_t idle_timeout_s; /* a relayed connection without traffic is closed; 0 = 300 */
    uint32_t handshake_ms;   /* request + resolution + connect; 0 = 30000 */
    uint32_t connect_ms;     /* one connect attempt; 0 = 10000 */
    uint32_t resolvers;      /* name resolution threads; 0 = 8 */
    uint32_t pipe_bytes;     /* relay buffer per direction; 0 = 256 KiB */
    uint16_t http_port;      /* port of the HTTP proxy in the sandbox; 0 = 3128 */
    uint16_t socks_port;     /* port of the SOCKS5 proxy; 0 = 1080 */
    bool ephemeral_ports;    /* tests: bind port 0 (read with sbx_egress_sb_ports) */
} sbx_egress_cfg;

/* Starts the service (loop and resolver threads). Errors: -EINVAL with why in err (a bad
 * --egress-allow-private / --egress-deny item, naming the flag), -errno. */
int sbx_egress_new(const sbx_egress_cfg *cfg, sbx_egress **out, char *err, size_t errlen);
/* Closes every proxy and connection, stops the threads, frees e. Sandbox records must have been
 * freed before. NULL is harmless. */
void sbx_egress_free(sbx_egress *e);

/* Prometheus text: connections by decision, bytes each way, live connections, lookups. */
void sbx_egress_metrics_write(FILE *out, void *e);

/* ---- one sandbox (egress.c) --------------------------------------------------------------- */

typedef struct sbx_egress_sb sbx_egress_sb;

/* A sandbox's egress record with policy p (a new reference is taken; NULL = empty). key and
 * label (e.g. the sandbox id and "tenant/project") name it in logs; both are copied. Nothing is
 * opened yet. Returns NULL when out of memory. The caller owns the record (sbx_egress_sb_free). */
sbx_egress_sb *sbx_egress_sb_new(sbx_egress *e, const char *key, const char *label,
                                 sbx_egress_policy *p);
/* The sandbox is running with network namespace netns_fd (borrowed; -1 = the caller's own,
 * for tests): opens the proxies when the policy is not empty. Errors: -EADDRINUSE (a process of
 * the sandbox holds a proxy port), -EPERM/-EINVAL (setns), -EMFILE..., -ESHUTDOWN (stopped). */
int sbx_egress_sb_start(sbx_egress_sb *s, int netns_fd);
/* Replaces the policy (new connections use it; open ones are not cut). Opens the proxies when
 * the new policy is the first non-empty one; once open they stay open until the sandbox stops
 * (an empty policy then refuses everything). netns_fd as for start. Same errors; on error the
 * old policy stays. */
int sbx_egress_sb_set_policy(sbx_egress_sb *s, sbx_egress_policy *p, int netns_fd);
/* The sandbox stopped: closes its proxies and connections (returns once nothing of the loop
 * refers to it). Counters and policy stay readable. Idempotent. */
void sbx_egress_sb_stop(sbx_egress_sb *s);
/* Stops and frees. NULL is harmless. */
void sbx_egress_sb_free(sbx_egress_sb *s);

/* The policy in force (a new reference: unref it). */
sbx_egress_policy *sbx_egress_sb_policy(sbx_egress_sb *s);
/* Whether the proxies are open (commands should get the proxy environment). */
bool sbx_egress_sb_proxied(sbx_egress_sb *s);

typedef struct sbx_egress_counters {
    uint64_t allowed;   /* connections the policy allowed */
    uint64_t denied;    /* refused: policy, blocked ranges, limits */
    uint64_t failed;    /* allowed but not resolved / not reachable, or malformed requests */
    uint64_t bytes_out; /* relayed from the sandbox */
    uint64_t bytes_in;  /* relayed to the sandbox */
    uint32_t active;    /* live connections */
} sbx_egress_counters;
void sbx_egress_sb_counters(sbx_egress_sb *s, sbx_egress_counters *c);
/* The bound ports of the proxies (0 when not open); for tests with ephemeral_ports. */
void sbx_egress_sb_ports(sbx_egress_sb *s, uint16_t *http, uint16_t *socks);

/* The environment commands get while the proxies are open: NULL-terminated "K=V" strings
 * (static). */
extern const char *const sbx_egress_env[];

#ifdef __cplusplus
}
#endif
#endif
