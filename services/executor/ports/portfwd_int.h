/* portfwd_int.h: what the files of the port forwarder share (private to ports/): the records of
 * sandboxes, listeners and connections, the forwarder itself, and the steps one file offers
 * another. portfwd.c holds the public API (create, expose, close, list); portfwd_ns.c the netns
 * thread of each sandbox and its socket pool; portfwd_relay.c the relay thread (accept, connect,
 * splice, teardown commands). Cross-file functions use the sbx__pf_ prefix.
 *
 * Ownership and locks: f->mu guards the sandbox list, their listener lists and the command
 * queue; each sandbox's pool_mu guards its socket pool. Connections belong to the relay thread
 * alone. Order: f->mu, then a pool_mu (the relay takes pool_mu alone). */
#ifndef SBX_PORTFWD_INT_H
#define SBX_PORTFWD_INT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "portfwd.h"
#include "relay.h"

#define COMP "portfwd"
#define KEY_MAX 64
#define POOL_MAX 64
#define ACCEPT_BATCH 64
#define EVENTS_MAX 256
#define LISTEN_BACKLOG 1024

#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* An intrusive doubly linked list (a circular list with a head node). */
typedef struct dlink {
    struct dlink *prev, *next;
} dlink;

static inline void dl_init(dlink *h)
{
    h->prev = h->next = h;
}
static inline bool dl_empty(const dlink *h)
{
    return h->next == h;
}
static inline void dl_push(dlink *h, dlink *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void dl_del(dlink *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}
#define DL_ENTRY(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* What an epoll cookie points to. */
enum { EP_WAKE = 1, EP_LISTENER, EP_CONN };
typedef struct {
    uint8_t kind;
    uint8_t side; /* EP_CONN: 0 client, 1 sandbox */
} ep_tag;

typedef struct pf_sb pf_sb;

typedef struct pf_listener {
    ep_tag ep;
    int fd;
    uint16_t port, host_port;
    pf_sb *sb;
    struct pf_listener *next; /* sb's list, in expose order */
    /* counters: written by the relay thread, read anywhere */
    uint32_t active;
    uint64_t accepted, refused, failed, bytes_in, bytes_out;
} pf_listener;

enum { C_WAIT_SOCK = 1, C_CONNECTING, C_RELAY, C_DEAD };

typedef struct pf_conn {
    ep_tag ep[2]; /* side 0: the client, side 1: the sandbox */
    sbx_relay rl; /* rl.fd[0] the client, rl.fd[1] the sandbox (relay.h) */
    uint8_t state;
    pf_listener *l;
    pf_sb *sb;
    uint64_t deadline_ms; /* C_CONNECTING */
    dlink sb_link;        /* sb->conns */
    dlink q_link;         /* sb->waitq (C_WAIT_SOCK) or f->connecting (C_CONNECTING) */
    struct pf_conn *zombie_next;
} pf_conn;

struct pf_sb {
    char key[KEY_MAX + 1];
    int netns_fd;
    dev_t ns_dev;
    ino_t ns_ino;
    pf_listener *listeners; /* f->mu */
    unsigned nports;        /* f->mu */
    sbx_portfwd *f;

    /* relay thread only */
    dlink conns;
    dlink waitq;
    unsigned nconns;
    bool on_starved;
    dlink starved_link;

    /* the netns thread and its socket pool (pool_mu) */
    pthread_t thr;
    bool thr_started;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    int pool[POOL_MAX];
    unsigned pool_n, pool_target;
    bool stop, ns_ready, want_wake;
    int ns_err;

    pf_sb *next; /* f->sbs */
};

typedef struct pf_cmd {
    int op; /* CMD_CLOSE_SB, CMD_STOP */
    pf_sb *sb;
    bool done;
    struct pf_cmd *next;
} pf_cmd;
enum { CMD_CLOSE_SB = 1, CMD_STOP };

struct sbx_portfwd {
    sbx_portfwd_cfg cfg;
    char host[INET6_ADDRSTRLEN];
    int family;
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } bind_addr;
    socklen_t bind_len;

    int epfd;
    int wakefd;
    ep_tag wake_ep;
    pthread_t thr;
    bool thr_started;

    pthread_mutex_t mu; /* sbs, listeners, the command queue */
    pthread_cond_t cmd_cv;
    pf_sb *sbs;
    pf_cmd *cmds, **cmds_tail;

    /* relay thread only */
    dlink connecting;
    dlink starved;
    pf_conn *zombies;
    sbx_relay_pipes pipes;
    int spare_fd; /* closed to accept (and drop) a connection when out of fds */
    uint64_t last_fd_warn_ms;
};

/* ---- portfwd_relay.c ---- */
void sbx__pf_block_signals(sigset_t *old);
/* Wakes the relay thread (it then serves starved connections and runs queued commands). */
void sbx__pf_wake(sbx_portfwd *f);
int sbx__pf_ep_add(sbx_portfwd *f, int fd, ep_tag *tag, uint32_t events);
void *sbx__pf_relay_main(void *arg);
/* Queues a command for the relay thread and waits until it ran. */
void sbx__pf_run_on_relay(sbx_portfwd *f, int op, pf_sb *sb);
/* Closes the listeners and connections of a sandbox (the relay thread, or once it is gone). */
void sbx__pf_close_sb_conns(sbx_portfwd *f, pf_sb *sb);
void sbx__pf_free_zombies(sbx_portfwd *f);

/* ---- portfwd_ns.c ---- */
/* Loopback tuning of a socket (no Nagle, no pacing). */
void sbx__pf_tune_socket(int fd);
/* A socket from sb's pool, or -EAGAIN (the netns thread wakes the relay when it has one). */
int sbx__pf_pool_take(pf_sb *sb);
/* The record of a sandbox with its netns thread in the namespace. */
int sbx__pf_sb_new(sbx_portfwd *f, const char *key, int netns_fd, const struct stat *nst,
                   pf_sb **out);
void sbx__pf_sb_free(pf_sb *sb);

#endif
