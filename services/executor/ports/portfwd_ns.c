/* portfwd_ns.c: the netns thread of each sandbox with exposed ports (see portfwd_int.h). The
 * thread setns(CLONE_NEWNET)s into the sandbox's network namespace once and keeps a small pool
 * of unconnected sockets made there (a socket stays in the namespace it was created in); the
 * relay thread takes one per accepted connection and connects it. When the pool runs dry the
 * relay asks for a wake-up, which this thread sends once it has made a socket.
 *
 * Threads: one per sandbox (signals blocked); the relay thread takes sockets. Lock: the
 * sandbox's pool_mu. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "portfwd_int.h"

/* Both legs are loopback: no Nagle (we relay whatever arrives at once), and no pacing. A
 * pacing congestion control (BBR is a common default) arms a timer per burst, which on a relay
 * costs more than it saves; cubic on loopback just sends. */
void sbx__pf_tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5) < 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
}

static int ns_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    sbx__pf_tune_socket(fd);
    return fd;
}

static void *ns_main(void *arg)
{
    pf_sb *sb = arg;
    sbx__pf_block_signals(NULL);
    int rc = setns(sb->netns_fd, CLONE_NEWNET) < 0 ? -errno : 0;
    pthread_mutex_lock(&sb->pool_mu);
    sb->ns_err = rc;
    sb->ns_ready = true;
    pthread_cond_broadcast(&sb->pool_cv);
    if (rc < 0) {
        pthread_mutex_unlock(&sb->pool_mu);
        return NULL;
    }
    for (;;) {
        while (!sb->stop && sb->pool_n >= sb->pool_target)
            pthread_cond_wait(&sb->pool_cv, &sb->pool_mu);
        if (sb->stop)
            break;
        pthread_mutex_unlock(&sb->pool_mu);
        int fd = ns_socket();
        if (fd < 0) {
            SBX_LOG_ERRNO(SBX_LOG_WARN, COMP, fd, "socket in sandbox failed key=%s", sb->key);
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&sb->pool_mu);
        if (fd < 0)
            continue;
        sb->pool[sb->pool_n++] = fd;
        if (sb->want_wake) {
            sb->want_wake = false;
            pthread_mutex_unlock(&sb->pool_mu);
            sbx__pf_wake(sb->f);
            pthread_mutex_lock(&sb->pool_mu);
        }
    }
    pthread_mutex_unlock(&sb->pool_mu);
    return NULL;
}

/* Takes a socket from sb's pool: fd, or -EAGAIN (the netns thread will wake the relay thread
 * when it has one). */
int sbx__pf_pool_take(pf_sb *sb)
{
    int fd = -EAGAIN;
    pthread_mutex_lock(&sb->pool_mu);
    if (sb->pool_n > 0) {
        fd = sb->pool[--sb->pool_n];
        if (sb->pool_n <= sb->pool_target / 2)
            pthread_cond_signal(&sb->pool_cv);
    } else {
        sb->want_wake = true;
        pthread_cond_signal(&sb->pool_cv);
    }
    pthread_mutex_unlock(&sb->pool_mu);
    return fd;
}

void sbx__pf_sb_free(pf_sb *sb)
{
    if (!sb)
        return;
    if (sb->thr_started) {
        pthread_mutex_lock(&sb->pool_mu);
        sb->stop = true;
        pthread_cond_broadcast(&sb->pool_cv);
        pthread_mutex_unlock(&sb->pool_mu);
        pthread_join(sb->thr, NULL);
    }
    for (unsigned i = 0; i < sb->pool_n; i++)
        close(sb->pool[i]);
    pf_listener *l = sb->listeners;
    while (l) {
        pf_listener *next = l->next;
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        l = next;
    }
    if (sb->netns_fd >= 0)
        close(sb->netns_fd);
    pthread_mutex_destroy(&sb->pool_mu);
    pthread_cond_destroy(&sb->pool_cv);
    free(sb);
}

/* Creates the record of a sandbox and starts its netns thread (waits until it is in the
 * namespace). */
int sbx__pf_sb_new(sbx_portfwd *f, const char *key, int netns_fd, const struct stat *nst,
                   pf_sb **out)
{
    pf_sb *sb = calloc(1, sizeof *sb);
    if (!sb)
        return -ENOMEM;
    snprintf(sb->key, sizeof sb->key, "%s", key);
    sb->f = f;
    sb->ns_dev = nst->st_dev;
    sb->ns_ino = nst->st_ino;
    sb->pool_target = f->cfg.spare_sockets;
    dl_init(&sb->conns);
    dl_init(&sb->waitq);
    pthread_mutex_init(&sb->pool_mu, NULL);
    pthread_cond_init(&sb->pool_cv, NULL);
    sb->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 3);
    if (sb->netns_fd < 0) {
        int rc = -errno;
        sbx__pf_sb_free(sb);
        return rc;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = -pthread_create(&sb->thr, &attr, ns_main, sb);
    pthread_attr_destroy(&attr);
    if (rc < 0) {
        sbx__pf_sb_free(sb);
        return rc;
    }
    sb->thr_started = true;
    pthread_mutex_lock(&sb->pool_mu);
    while (!sb->ns_ready)
        pthread_cond_wait(&sb->pool_cv, &sb->pool_mu);
    rc = sb->ns_err;
    pthread_mutex_unlock(&sb->pool_mu);
    if (rc < 0) {
        SBX_LOG_ERRNO(SBX_LOG_WARN, COMP, rc, "setns into sandbox failed key=%s", key);
        sbx__pf_sb_free(sb);
        return rc;
    }
    *out = sb;
    return 0;
}
