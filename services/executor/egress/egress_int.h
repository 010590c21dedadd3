/* egress_int.h: what the files of sbx_egress share (private to egress/): patterns, policies,
 * the operator's rules and the verdicts (policy.c, ranges.c, verdict.c), the request parsers
 * (http.c, socks.c), the resolver (resolver.c), and the service, sandbox and connection records
 * of the loop (loop.c, conn.c, egress.c). Cross-file functions use the sbx__eg_ prefix.
 *
 * Ownership and locks: a sandbox record's mu guards its policy and open/stopped flags; its
 * counters are atomics; everything else of a sandbox, every connection and lookup result
 * belongs to the loop thread. The resolver's mu guards its job queues. Order: a sandbox's mu,
 * then the service's cmd_mu. */
#ifndef SBX_EGRESS_INT_H
#define SBX_EGRESS_INT_H

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"
#include "relay.h"

#define COMP "egress"
#define EG_NAME_MAX 253
#define EG_RULE_MAX 200
#define EG_ADDRS_MAX 8

#define EG_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define EG_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_RELAXED)
#define EG_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* ---- patterns and policies (policy.c) ---- */

enum { PAT_ANY = 1, PAT_NAME, PAT_SUFFIX, PAT_NET };

/* A normalised address: IPv4 (4 bytes) or IPv6 (16); IPv4-mapped IPv6 becomes IPv4. */
typedef struct eg_addr {
    uint8_t family; /* AF_INET / AF_INET6 */
    uint8_t b[16];
} eg_addr;

typedef struct eg_pat {
    uint8_t kind;
    uint8_t prefix; /* PAT_NET: bits */
    uint16_t port;  /* 0 = any */
    eg_addr net;    /* PAT_NET: the network (host bits cleared) */
    char *name;     /* PAT_NAME: "host"; PAT_SUFFIX: ".host" (lowercase) */
    char *text;     /* as given */
} eg_pat;

enum { EG_ALLOW_LIST = 0, EG_DENY_LIST = 1 };

struct sbx_egress_policy {
    int refs;
    eg_pat *pat[2]; /* EG_ALLOW_LIST, EG_DENY_LIST */
    size_t n[2];
};

/* Parses one pattern (port_allowed false: no ":PORT"). 0, or -EINVAL with why. */
int sbx__eg_pat_parse(const char *text, eg_pat *out, char *why, size_t len);
void sbx__eg_pat_clear(eg_pat *p);
/* Lowercases a requested host name in place and drops one trailing dot; true when it is a valid
 * DNS name (labels of [a-z0-9_-], 1..63 bytes, 1..253 in all). */
bool sbx__eg_name_normalize(char *name);
/* a from a socket address (IPv4-mapped IPv6 becomes IPv4); false for other families. */
bool sbx__eg_addr_from_sa(const struct sockaddr *sa, eg_addr *a);
/* a parsed from a numeric IPv4 / IPv6 text (no brackets). */
bool sbx__eg_addr_parse(const char *s, eg_addr *a);
bool sbx__eg_addr_in(const eg_addr *a, const eg_addr *net, unsigned prefix);
void sbx__eg_addr_str(const eg_addr *a, char *buf, size_t len);
/* The first pattern of list matching a name (name kinds; ANY too when with_any). */
const eg_pat *sbx__eg_match_name(const sbx_egress_policy *p, int list, const char *name,
                                 uint16_t port, bool with_any);
/* The first pattern of list matching an address (PAT_NET; ANY too when with_any). */
const eg_pat *sbx__eg_match_addr(const sbx_egress_policy *p, int list, const eg_addr *a,
                                 uint16_t port, bool with_any);
/* Whether list has an address or "*" pattern that allows port (so resolving can help). */
bool sbx__eg_has_addr_pattern(const sbx_egress_policy *p, int list, uint16_t port);

/* ---- the operator's rules (ranges.c) ---- */

typedef struct eg_svc {
    eg_addr a;
    bool wild; /* listens on every address: any of this host's addresses with this port */
    uint16_t port;
} eg_svc;

typedef struct eg_rules {
    sbx_egress_policy *deny; /* --egress-deny (deny list), never NULL */
    eg_pat *open;            /* --egress-allow-private (PAT_NET) */
    size_t n_open;
    eg_svc *svc; /* the services' listen addresses */
    size_t n_svc;
    eg_addr *self; /* this host's interface addresses */
    size_t n_self;
} eg_rules;

/* Why a is never a destination by itself ("loopback", "private (RFC 1918)", ...) or NULL when
 * it is public. Pure. */
const char *sbx__eg_special(const eg_addr *a);
/* Parses --egress-allow-private into r->open (flag names it in errors). */
int sbx__eg_rules_open(eg_rules *r, const char *csv, char *err, size_t errlen);
/* Resolves the service addresses into r->svc. */
int sbx__eg_rules_services(eg_rules *r, const char *const *addrs, size_t n, char *err,
                           size_t errlen);
/* Re-reads this host's interface addresses into r->self (the loop thread, every few seconds). */
void sbx__eg_rules_self(eg_rules *r);
void sbx__eg_rules_free(eg_rules *r);

/* ---- verdicts (verdict.c) ---- */

enum { EG_DENY = 0, EG_ALLOW = 1, EG_RESOLVE = 2 };

/* Name stage of a request for name (normalised; NULL for an address literal) and port: EG_DENY
 * (rule says why), or EG_RESOLVE (*by_name: an allow_out name pattern matched, rule names it). A
 * name no pattern can allow is refused without being resolved. */
int sbx__eg_verdict_name(const eg_rules *r, const sbx_egress_policy *p, const char *name,
                         uint16_t port, bool *by_name, char *rule, size_t len);
/* Address stage for one address the request resolved to: EG_ALLOW or EG_DENY with the rule. */
int sbx__eg_verdict_addr(const eg_rules *r, const sbx_egress_policy *p, const eg_addr *a,
                         uint16_t port, bool by_name, char *rule, size_t len);

/* ---- requests (http.c, socks.c) ---- */

enum { EG_HTTP_CONNECT = 1, EG_HTTP_FORWARD, EG_SOCKS };
#define EG_HEAD_MAX (16 * 1024)

typedef struct eg_http_req {
    int kind;
    char host[EG_NAME_MAX + 1]; /* a normalised name, or an address literal (no brackets) */
    bool literal;
    uint16_t port;
    size_t head_len; /* bytes of the request (head) in the buffer */
    /* EG_HTTP_FORWARD: where the parts of the request line are in the buffer */
    size_t method_len, path_off, path_len, auth_off, auth_len, ver_off;
} eg_http_req;

/* Parses an HTTP proxy request head in buf[0..len): 0 = incomplete, > 0 = its length, < 0 =
 * refused with *status (400, 431) and why. */
int sbx__eg_http_parse(const char *buf, size_t len, size_t max, eg_http_req *r, int *status,
                       char *why, size_t wlen);
/* The head an EG_HTTP_FORWARD request is sent upstream with (malloc'd, *out the caller's). */
int sbx__eg_http_rewrite(const char *buf, const eg_http_req *r, char **out, size_t *outlen);
/* The proxy's own response: 200 for a tunnel, else status with the one-line body. Returns its
 * length (snprintf semantics). */
int sbx__eg_http_reply(int status, const char *line, char *out, size_t len);

/* SOCKS5 greeting: 0 incomplete, > 0 bytes used (*noauth: "no authentication" offered), < 0 not
 * SOCKS5. */
int sbx__eg_socks_greeting(const uint8_t *b, size_t n, bool *noauth);
/* SOCKS5 request: 0 incomplete, > 0 bytes used (r->kind EG_SOCKS), < 0 refused (*rep: the reply
 * code to send, 0 = just close). */
int sbx__eg_socks_request(const uint8_t *b, size_t n, eg_http_req *r, int *rep);
/* A reply with code rep (0 success, 2 not allowed by ruleset, ...); returns 10. */
size_t sbx__eg_socks_reply(uint8_t out[10], int rep);

/* ---- name resolution (resolver.c) ---- */

struct eg_conn;
typedef struct eg_lookup {
    char name[EG_NAME_MAX + 1];
    struct eg_conn *conn; /* the loop's: NULL once the connection went away */
    struct addrinfo *res; /* the result, or NULL with gai_err */
    int gai_err;
    struct eg_lookup *next;
} eg_lookup;

typedef struct eg_resolver eg_resolver;
/* Starts threads that resolve submitted lookups and post them back, writing to wakefd (an
 * eventfd the loop polls). */
int sbx__eg_resolver_new(unsigned threads, int wakefd, eg_resolver **out);
/* Stops and joins the threads; frees every lookup still queued or finished. */
void sbx__eg_resolver_free(eg_resolver *r);
void sbx__eg_resolver_submit(eg_resolver *r, eg_lookup *l);
/* The lookups finished since the last call (a list through ->next), oldest first. */
eg_lookup *sbx__eg_resolver_take(eg_resolver *r);
void sbx__eg_lookup_free(eg_lookup *l);

/* ---- the loop (loop.c, conn.c, egress.c) ---- */

/* An intrusive circular list with a head node. */
typedef struct eg_link {
    struct eg_link *prev, *next;
} eg_link;
static inline void eg_list_init(eg_link *h)
{
    h->prev = h->next = h;
}
static inline bool eg_list_empty(const eg_link *h)
{
    return h->next == h;
}
static inline void eg_list_push(eg_link *h, eg_link *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void eg_list_del(eg_link *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}
#define EG_ENTRY(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

enum { EP_WAKE = 1, EP_LISTEN, EP_CONN };
typedef struct eg_tag {
    uint8_t kind;
    uint8_t side; /* EP_CONN: 0 the sandbox's client, 1 upstream */
} eg_tag;

typedef struct eg_listener {
    eg_tag ep;
    int fd;
    uint8_t proto; /* EG_HTTP_CONNECT (the HTTP proxy) or EG_SOCKS */
    struct sbx_egress_sb *sb;
} eg_listener;

#define EG_LOOKUPS_PER_SB 3 /* a sandbox's names being resolved at once; more wait */

struct sbx_egress_sb {
    sbx_egress *e;
    int refs; /* atomic: the owner, and the loop while the proxies are open */
    char key[72];
    char label[200];

    pthread_mutex_t mu;
    sbx_egress_policy *policy; /* mu; never NULL */
    bool open, stopped;        /* mu */
    uint16_t http_port, socks_port;

    /* counters (atomics) */
    uint64_t allowed, denied, failed, bytes_out, bytes_in;
    uint32_t active;

    /* loop thread only */
    eg_listener l[2];
    bool registered, closing;
    uint64_t limit_logged;   /* when the connection limit was last logged */
    uint64_t log_window;     /* decision lines: the current one-second window, */
    unsigned log_n, log_cut; /* lines written in it, and lines left out */
    eg_link conns;
    unsigned nconns;
    eg_link lookup_wait; /* connections waiting for a lookup slot */
    unsigned lookups;
};

enum {
    S_HEAD = 1,   /* reading the request */
    S_LOOKUP,     /* waiting for the name's addresses */
    S_CONNECTING, /* connecting upstream */
    S_FLUSH,      /* writing the reply / the rewritten head before relaying */
    S_RELAY,      /* splice relay */
    S_REFUSE,     /* writing a refusal, then closing */
    S_LINGER,     /* refusal sent: draining the client until it closes */
    S_DEAD,
};

typedef struct eg_conn {
    eg_tag ep[2];
    sbx_relay rl; /* rl.fd[0]: the sandbox's client; rl.fd[1]: upstream */
    uint8_t state, proto, socks_stage;
    struct sbx_egress_sb *sb;
    sbx_egress_policy *policy; /* the policy the request was decided with */
    eg_http_req req;
    bool by_name, counted;
    char rule[EG_RULE_MAX];
    char addr[48]; /* the address connected to */
    char *in;      /* the request as read (EG_HEAD_MAX) */
    uint32_t in_len, in_used;
    char *wbuf[2]; /* pending writes to side s (reply / head) */
    uint32_t wlen[2], woff[2];
    struct sockaddr_storage cand[EG_ADDRS_MAX]; /* addresses that passed the verdict */
    uint8_t ncand, icand;
    int last_err;
    eg_lookup *lookup;
    uint64_t t_start, t_last, deadline, hs_deadline;
    size_t hidx; /* in the timer heap; 0 = not in it */
    uint64_t bytes[2];
    eg_link sb_link, wait_link;
    struct eg_conn *zombie_next;
} eg_conn;

typedef struct eg_cmd {
    int op; /* CMD_ADD_SB, CMD_STOP_SB, CMD_QUIT */
    struct sbx_egress_sb *sb;
    bool done;
    struct eg_cmd *next;
} eg_cmd;
enum { CMD_ADD_SB = 1, CMD_STOP_SB, CMD_QUIT };

struct sbx_egress {
    sbx_egress_cfg cfg;
    eg_rules rules;
    int epfd, wakefd;
    eg_tag wake_ep;
    pthread_t thr;
    bool thr_started;
    eg_resolver *res;

    pthread_mutex_t cmd_mu;
    pthread_cond_t cmd_cv;
    eg_cmd *cmds, **cmds_tail;

    /* loop thread only */
    sbx_relay_pipes pipes;
    eg_conn **heap; /* timers: a binary min-heap on deadline, 1-based */
    size_t nheap, capheap;
    eg_conn *zombies;
    uint64_t now, self_at;
    int spare_fd;
    unsigned total, max_total;

    /* metrics (atomics) */
    uint64_t m_allowed, m_denied, m_failed, m_bytes_out, m_bytes_in, m_lookups, m_lookup_fails;
    uint32_t m_active;
};

/* loop.c */
void *sbx__eg_loop_main(void *arg);
void sbx__eg_wake(sbx_egress *e);
/* Queues a command for the loop and waits until it ran (or runs it here if the loop is gone). */
void sbx__eg_run_on_loop(sbx_egress *e, int op, struct sbx_egress_sb *sb);
int sbx__eg_ep_add(sbx_egress *e, int fd, eg_tag *tag, uint32_t events);
void sbx__eg_timer_set(sbx_egress *e, eg_conn *c, uint64_t deadline);
void sbx__eg_timer_del(sbx_egress *e, eg_conn *c);
void sbx__eg_sb_unref(struct sbx_egress_sb *s);

/* conn.c */
void sbx__eg_conn_new(sbx_egress *e, eg_listener *l, int fd);
void sbx__eg_conn_event(sbx_egress *e, eg_conn *c, int side, uint32_t ev);
void sbx__eg_conn_timeout(sbx_egress *e, eg_conn *c);
void sbx__eg_conn_resolved(sbx_egress *e, eg_lookup *l);
/* Closes c (reset: RST both sides); logs and frees it after the current batch. */
void sbx__eg_conn_close(sbx_egress *e, eg_conn *c, bool reset);
/* A lookup slot of sb freed: starts the next waiting connection's lookup. */
void sbx__eg_lookup_next(sbx_egress *e, struct sbx_egress_sb *sb);

#endif
