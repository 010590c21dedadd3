/* loop.c: the egress event loop. One thread, one epoll set: the proxies' listeners of every
 * sandbox (level-triggered), every connection (edge-triggered, conn.c), and an eventfd that
 * wakes the loop for finished lookups and for commands from other threads (register a
 * sandbox's listeners, close a stopped sandbox's listeners and connections, quit). Commands run
 * between epoll batches, so no event of the current batch points to freed memory. Timers
 * (handshake, connect attempt, idle, refusal linger) live in one binary min-heap; a relayed
 * connection's idle deadline is checked lazily when its timer fires. Nothing here blocks: a
 * slow client or a slow name server delays only its own connection.
 *
 * Threads: the loop thread; sbx__eg_wake and sbx__eg_run_on_loop from any thread. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "egress_int.h"
#include "log.h"

#define EVENTS_MAX 256
#define ACCEPT_BATCH 64
#define SELF_REFRESH_MS 10000

void sbx__eg_wake(sbx_egress *e)
{
    uint64_t one = 1;
    ssize_t n = write(e->wakefd, &one, sizeof one);
    (void)n; /* EAGAIN: already pending */
}

int sbx__eg_ep_add(sbx_egress *e, int fd, eg_tag *tag, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- timers: a 1-based min-heap of connections by deadline -------------------------------- */

static void heap_swap(sbx_egress *e, size_t a, size_t b)
{
    eg_conn *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->hidx = a;
    e->heap[b]->hidx = b;
}

static void heap_up(sbx_egress *e, size_t i)
{
    while (i > 1 && e->heap[i / 2]->deadline > e->heap[i]->deadline) {
        heap_swap(e, i, i / 2);
        i /= 2;
    }
}

static void heap_down(sbx_egress *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i, m = i;
        if (l <= e->nheap && e->heap[l]->deadline < e->heap[m]->deadline)
            m = l;
        if (l + 1 <= e->nheap && e->heap[l + 1]->deadline < e->heap[m]->deadline)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

void sbx__eg_timer_del(sbx_egress *e, eg_conn *c)
{
    size_t i = c->hidx;
    if (!i)
        return;
    c->hidx = 0;
    if (i != e->nheap) {
        e->heap[i] = e->heap[e->nheap];
        e->heap[i]->hidx = i;
        e->nheap--;
        heap_up(e, i);
        heap_down(e, i);
    } else {
        e->nheap--;
    }
}

void sbx__eg_timer_set(sbx_egress *e, eg_conn *c, uint64_t deadline)
{
    if (c->hidx) {
        c->deadline = deadline;
        heap_up(e, c->hidx);
        heap_down(e, c->hidx);
        return;
    }
    if (e->nheap + 1 >= e->capheap) {
        size_t nc = e->capheap ? e->capheap * 2 : 256;
        eg_conn **nh = realloc(e->heap, nc * sizeof *nh);
        if (!nh) { /* keep the old deadline semantics: fire at once rather than never */
            c->deadline = 0;
            return;
        }
        e->heap = nh;
        e->capheap = nc;
    }
    c->deadline = deadline;
    e->heap[++e->nheap] = c;
    c->hidx = e->nheap;
    heap_up(e, c->hidx);
}

static void fire_timers(sbx_egress *e)
{
    while (e->nheap && e->heap[1]->deadline <= e->now) {
        eg_conn *c = e->heap[1];
        sbx__eg_timer_del(e, c);
        sbx__eg_conn_timeout(e, c);
    }
}

/* ---- accepting ---------------------------------------------------------------------------- */

/* Out of fds: accepts (and resets) one pending connection through the spare fd so the
 * level-triggered listener does not spin. */
static void drop_one(sbx_egress *e, eg_listener *l)
{
    static uint64_t warned;
    if (e->now - warned > 10000) {
        warned = e->now;
        SBX_LOG_WARN(COMP, "out of file descriptors; resetting new proxy connections");
    }
    close(e->spare_fd);
    int tmp = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (tmp >= 0) {
        sbx_relay_set_rst(tmp);
        close(tmp);
        EG_ADD(&l->sb->denied, 1);
        EG_ADD(&e->m_denied, 1);
    }
    e->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept(sbx_egress *e, eg_listener *l)
{
    for (int i = 0; i < ACCEPT_BATCH && l->fd >= 0; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            sbx__eg_conn_new(e, l, fd);
        else if (errno == EINTR || errno == ECONNABORTED)
            continue;
        else if ((errno == EMFILE || errno == ENFILE) && e->spare_fd >= 0)
            drop_one(e, l);
        else
            return;
    }
}

/* ---- commands ----------------------------------------------------------------------------- */

static void add_sb(sbx_egress *e, sbx_egress_sb *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->l[i].fd >= 0 && sbx__eg_ep_add(e, s->l[i].fd, &s->l[i].ep, EPOLLIN) < 0)
            SBX_LOG_ERRNO(SBX_LOG_ERROR, COMP, errno, "cannot watch a proxy listener sandbox=%s",
                          s->key);
    }
    s->registered = true;
}

static void stop_sb(sbx_egress *e, sbx_egress_sb *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->l[i].fd >= 0) {
            sbx_relay_close_fd(e->epfd, s->l[i].fd);
            s->l[i].fd = -1;
        }
    }
    s->closing = true; /* no new lookups while closing */
    while (!eg_list_empty(&s->conns))
        sbx__eg_conn_close(e, EG_ENTRY(s->conns.next, eg_conn, sb_link), true);
    if (s->registered) {
        s->registered = false;
        sbx__eg_sb_unref(s); /* the loop's reference */
    }
}

/* Runs queued commands; false on CMD_QUIT. */
static bool run_commands(sbx_egress *e)
{
    bool go_on = true;
    pthread_mutex_lock(&e->cmd_mu);
    eg_cmd *c = e->cmds;
    e->cmds = NULL;
    e->cmds_tail = &e->cmds;
    pthread_mutex_unlock(&e->cmd_mu);
    while (c) {
        eg_cmd *next = c->next;
        if (c->op == CMD_ADD_SB)
            add_sb(e, c->sb);
        else if (c->op == CMD_STOP_SB)
            stop_sb(e, c->sb);
        else
            go_on = false;
        pthread_mutex_lock(&e->cmd_mu);
        c->done = true;
        pthread_cond_broadcast(&e->cmd_cv);
        pthread_mutex_unlock(&e->cmd_mu);
        c = next;
    }
    return go_on;
}

void sbx__eg_run_on_loop(sbx_egress *e, int op, sbx_egress_sb *sb)
{
    eg_cmd cmd = {.op = op, .sb = sb};
    pthread_mutex_lock(&e->cmd_mu);
    *e->cmds_tail = &cmd;
    e->cmds_tail = &cmd.next;
    pthread_mutex_unlock(&e->cmd_mu);
    sbx__eg_wake(e);
    pthread_mutex_lock(&e->cmd_mu);
    while (!cmd.done)
        pthread_cond_wait(&e->cmd_cv, &e->cmd_mu);
    pthread_mutex_unlock(&e->cmd_mu);
}

static void free_zombies(sbx_egress *e)
{
    while (e->zombies) {
        eg_conn *c = e->zombies;
        e->zombies = c->zombie_next;
        free(c);
    }
}

static void take_lookups(sbx_egress *e)
{
    eg_lookup *l = sbx__eg_resolver_take(e->res);
    while (l) {
        eg_lookup *next = l->next;
        sbx__eg_conn_resolved(e, l);
        l = next;
    }
}

void *sbx__eg_loop_main(void *arg)
{
    sbx_egress *e = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct epoll_event evs[EVENTS_MAX];
    bool running = true;
    e->now = sbx_mono_ms();
    while (running) {
        int timeout = SELF_REFRESH_MS;
        if (e->nheap) {
            uint64_t d = e->heap[1]->deadline;
            uint64_t left = d > e->now ? d - e->now : 0;
            timeout = left < SELF_REFRESH_MS ? (int)left : SELF_REFRESH_MS;
        }
        int n = epoll_wait(e->epfd, evs, EVENTS_MAX, timeout);
        e->now = sbx_mono_ms();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            SBX_LOG_ERRNO(SBX_LOG_ERROR, COMP, errno, "epoll_wait failed");
            break;
        }
        bool woken = false;
        for (int i = 0; i < n; i++) {
            eg_tag *t = evs[i].data.ptr;
            if (t->kind == EP_CONN) {
                eg_conn *c =
                    (eg_conn *)((char *)t - offsetof(eg_conn, ep) - t->side * sizeof(eg_tag));
                sbx__eg_conn_event(e, c, t->side, evs[i].events);
            } else if (t->kind == EP_LISTEN) {
                on_accept(e, (eg_listener *)t);
            } else {
                uint64_t v;
                ssize_t r = read(e->wakefd, &v, sizeof v);
                (void)r;
                woken = true;
            }
        }
        if (woken) {
            take_lookups(e);
            running = run_commands(e);
        }
        fire_timers(e);
        if (e->now - e->self_at >= SELF_REFRESH_MS) {
            e->self_at = e->now;
            sbx__eg_rules_self(&e->rules);
        }
        free_zombies(e);
    }
    free_zombies(e);
    return NULL;
}
