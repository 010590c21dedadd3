/* watch.c: one watch of a sandbox directory (see watch.h for what it promises and why it is
 * safe): its inotify instance, the directories it follows (a map from watch descriptor to the
 * directory's path below the watched one), the walk that adds a directory and, recursively, the
 * ones below it (each watched before it is listed, so nothing created in between is missed),
 * and the translation of the kernel's events into changes for the queue (watch_queue.c),
 * including directory renames inside the tree (their watches renamed), out of it (their
 * watches removed) and into it (watched).
 *
 * Threads: the watch's one thread; the budget counter is shared (atomics). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "files_int.h"
#include "watch_int.h"

#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK | IN_ONLYDIR | IN_MASK_CREATE)
#define READ_BUF (64 * 1024)
#define DRAIN_READS 64 /* reads per sbx_watch_next before it returns what is due */

typedef struct wnode {
    int wd;
    char *rel; /* below the watched directory: "" for itself, else "a/b" */
} wnode;

struct sbx_watch {
    sbx_files *fs; /* our own handle on the sandbox root */
    int ifd;
    char *inroot;  /* the client's path, absolute, as resolved (no lexical folding) */
    char *display; /* the normalised path events are reported under */
    bool recursive;
    sbx_watch_budget *budget;
    wnode **nodes; /* open addressing by wd */
    size_t nslots, ndirs;
    int root_wd;
    bool gone;
    int err; /* sticky: a failure while following new directories */
    char errmsg[256];
    /* a directory's RENAME_FROM waiting for its RENAME_TO */
    bool move_pending;
    uint32_t move_cookie;
    char *move_rel;
    sbx__wq q;
    uint8_t *buf;
};

/* ---------------------------------------------------------------- the directory map */

static size_t wd_home(const sbx_watch *w, int wd)
{
    return ((size_t)(unsigned)wd * 2654435761u) & (w->nslots - 1);
}

static wnode **node_slot(sbx_watch *w, int wd)
{
    if (!w->nslots)
        return NULL;
    for (size_t i = wd_home(w, wd);; i = (i + 1) & (w->nslots - 1)) {
        if (!w->nodes[i])
            return NULL;
        if (w->nodes[i]->wd == wd)
            return &w->nodes[i];
    }
}

static void slot_place(wnode **slots, size_t nslots, wnode *n)
{
    size_t i = ((size_t)(unsigned)n->wd * 2654435761u) & (nslots - 1);
    while (slots[i])
        i = (i + 1) & (nslots - 1);
    slots[i] = n;
}

static int node_put(sbx_watch *w, int wd, const char *rel)
{
    if ((w->ndirs + 1) * 2 > w->nslots) {
        size_t n = w->nslots ? w->nslots * 2 : 64;
        wnode **ns = calloc(n, sizeof *ns);
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < w->nslots; i++)
            if (w->nodes[i])
                slot_place(ns, n, w->nodes[i]);
        free(w->nodes);
        w->nodes = ns;
        w->nslots = n;
    }
    wnode *nd = malloc(sizeof *nd);
    char *r = strdup(rel);
    if (!nd || !r) {
        free(nd);
        free(r);
        return -ENOMEM;
    }
    nd->wd = wd;
    nd->rel = r;
    slot_place(w->nodes, w->nslots, nd);
    w->ndirs++;
    return 0;
}

/* Forgets a directory (its watch is gone or removed) and gives its budget back. */
static void node_del(sbx_watch *w, wnode **s)
{
    wnode *nd = *s;
    size_t mask = w->nslots - 1;
    size_t i = (size_t)(s - w->nodes);
    w->nodes[i] = NULL;
    for (size_t j = (i + 1) & mask; w->nodes[j]; j = (j + 1) & mask) {
        size_t home = wd_home(w, w->nodes[j]->wd);
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        w->nodes[i] = w->nodes[j];
        w->nodes[j] = NULL;
        i = j;
    }
    free(nd->rel);
    free(nd);
    w->ndirs--;
    __atomic_sub_fetch(&w->budget->used, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- paths */

/* base + "/" + name, either side possibly empty (malloc'd or NULL). */
static char *join(const char *base, const char *name)
{
    size_t bl = strlen(base), nl = strlen(name);
    char *s = malloc(bl + nl + 2);
    if (!s)
        return NULL;
    memcpy(s, base, bl);
    size_t o = bl;
    if (bl && nl && base[bl - 1] != '/')
        s[o++] = '/';
    memcpy(s + o, name, nl + 1);
    return s;
}

/* The path of rel below the watched directory as the client sees it, or as it resolves. */
static char *path_of(const sbx_watch *w, const char *rel, bool display)
{
    return join(display ? w->display : w->inroot, rel);
}

static bool under(const char *rel, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(rel, dir, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
}

/* ---------------------------------------------------------------- adding directories */

static void set_err(sbx_watch *w, int rc, const char *fmt, const char *arg)
{
    if (w->err)
        return;
    w->err = rc;
    snprintf(w->errmsg, sizeof w->errmsg, fmt, arg);
}

/* Takes one directory of the budget: false (and the sticky error) when it is spent. */
static bool budget_take(sbx_watch *w)
{
    sbx_watch_budget *b = w->budget;
    if (__atomic_add_fetch(&b->used, 1, __ATOMIC_RELAXED) <= b->max)
        return true;
    __atomic_sub_fetch(&b->used, 1, __ATOMIC_RELAXED);
    char msg[160];
    snprintf(msg, sizeof msg, "%d (%s)", b->max, b->limit_name ? b->limit_name : "the limit");
    set_err(w, -ENOSPC,
            "recursive watch: the sandbox's watches already follow %s directories, its limit", msg);
    return false;
}

/* Puts an inotify watch on the O_PATH directory fd (the caller runs as the sandbox user, see
 * watch.h). Returns the wd, 0 when the directory is watched already, or -errno. */
static int add_watch_fd(sbx_watch *w, int fd)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
    int rc = wd < 0 ? -errno : wd;
    if (rc == -EEXIST)
        return 0;
    if (rc == -ENOSPC) {
        char lim[64] = "?";
        FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "re");
        if (f) {
            if (!fgets(lim, sizeof lim, f))
                snprintf(lim, sizeof lim, "?");
            fclose(f);
            lim[strcspn(lim, "\n")] = 0;
        }
        set_err(w, -ENOSPC,
                "the executor's user has as many inotify watches as the kernel allows "
                "(fs.inotify.max_user_watches=%s)",
                lim);
    }
    return rc;
}

/* Lists directory fd (O_PATH) as the sandbox user: each entry reported as CREATE when
 * `report`, each subdirectory appended to *todo when recursive. */
static int list_dir(sbx_watch *w, int fd, const char *rel, bool report, char ***todo, size_t *nt,
                    size_t *ct)
{
    sbx__creds c;
    int rc = sbx__files_creds_enter(w->fs, &c);
    if (rc < 0)
        return rc;
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = dfd < 0 ? -errno : 0;
    sbx__files_creds_leave(&c);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return rc ? rc : -errno;
    }
    int64_t at = sbx_wall_ms();
    uint64_t now = sbx_mono_ms();
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        bool is_dir = de->d_type == DT_DIR;
        struct stat st;
        if (de->d_type == DT_UNKNOWN &&
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            is_dir = S_ISDIR(st.st_mode);
        char *crel = join(rel, de->d_name);
        if (!crel) {
            rc = -ENOMEM;
            break;
        }
        if (report) {
            char *p = path_of(w, crel, true);
            rc = p ? sbx__wq_push(&w->q, SBX_WATCH_CREATE, p, is_dir, 0, at, now) : -ENOMEM;
            free(p);
        }
        if (rc == 0 && is_dir && w->recursive) {
            if (*nt == *ct) {
                size_t n = *ct ? *ct * 2 : 16;
                char **nv = realloc(*todo, n * sizeof *nv);
                if (!nv) {
                    free(crel);
                    rc = -ENOMEM;
                    break;
                }
                *todo = nv;
                *ct = n;
            }
            (*todo)[(*nt)++] = crel;
            crel = NULL;
        }
        free(crel);
    }
    closedir(d);
    return rc;
}

/* Watches one directory: its wd is mapped to rel. Returns 1 when watched now (list it), 0 when
 * skipped (gone, not a directory, a symlink, unreadable, a pseudo filesystem, watched already)
 * or -errno. *fdp keeps the O_PATH fd for the listing. */
static int watch_one(sbx_watch *w, const char *rel, bool top, int *fdp)
{
    *fdp = -1;
    char *p = path_of(w, rel, false);
    if (!p)
        return -ENOMEM;
    sbx__creds c;
    int rc = sbx__files_creds_enter(w->fs, &c);
    if (rc < 0) {
        free(p);
        return rc;
    }
    /* below the top, never through a final symlink: a directory event names a real directory */
    int fd = sbx__files_open_in_root(w->fs, p, O_PATH | O_DIRECTORY | (top ? 0 : O_NOFOLLOW));
    free(p);
    rc = fd < 0 ? fd : sbx__files_check_fs(fd);
    if (rc == 0 && !budget_take(w))
        rc = -ENOSPC;
    int wd = rc == 0 ? add_watch_fd(w, fd) : -1;
    sbx__files_creds_leave(&c);
    if (rc == 0) {
        if (wd > 0 && (rc = node_put(w, wd, rel)) < 0)
            inotify_rm_watch(w->ifd, wd);
        if (wd <= 0 || rc < 0)
            __atomic_sub_fetch(&w->budget->used, 1, __ATOMIC_RELAXED);
        if (rc == 0)
            rc = wd > 0 ? 1 : wd;
        if (top && wd > 0)
            w->root_wd = wd;
    }
    if (rc == 1) {
        *fdp = fd;
        return 1;
    }
    if (fd >= 0)
        close(fd);
    if (top || rc == -ENOSPC || rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE)
        return rc;
    return 0; /* raced away or not ours to watch: skipped like an unreadable dir in find */
}

/* Watches rel and (recursive) every directory below it, each before it is listed; with
 * `report` the entries found are reported as CREATE. */
static int add_tree(sbx_watch *w, const char *rel, bool top, bool report)
{
    char **todo = NULL;
    size_t nt = 0, ct = 0, i = 0;
    char *first = strdup(rel);
    int rc = first ? 0 : -ENOMEM;
    if (rc == 0) {
        todo = malloc(16 * sizeof *todo);
        if (!todo) {
            free(first);
            rc = -ENOMEM;
        } else {
            ct = 16;
            todo[nt++] = first;
        }
    }
    for (; rc == 0 && i < nt; i++) {
        int fd;
        int r = watch_one(w, todo[i], top && i == 0, &fd);
        if (r < 0) {
            rc = r;
        } else if (r == 1) {
            bool list = report || w->recursive;
            r = list ? list_dir(w, fd, todo[i], report, &todo, &nt, &ct) : 0;
            close(fd);
            if (r < 0 && r != -ENOENT && r != -EACCES && r != -ENOTDIR)
                rc = r;
        }
        free(todo[i]);
        todo[i] = NULL;
    }
    for (; i < nt; i++)
        free(todo[i]);
    free(todo);
    return rc;
}

/* Removes the watches of rel and every directory below it (moved out of the tree). */
static void remove_tree(sbx_watch *w, const char *rel)
{
    for (size_t i = 0; i < w->nslots;) {
        wnode *nd = w->nodes[i];
        if (nd && under(nd->rel, rel) && nd->wd != w->root_wd) {
            inotify_rm_watch(w->ifd, nd->wd);
            node_del(w, &w->nodes[i]); /* a later member may have moved into slot i */
            continue;
        }
        i++;
    }
}

/* A directory renamed inside the tree: its watches follow it. */
static void rename_tree(sbx_watch *w, const char *from, const char *to)
{
    size_t fl = strlen(from);
    for (size_t i = 0; i < w->nslots; i++) {
        wnode *nd = w->nodes[i];
        if (!nd || !under(nd->rel, from))
            continue;
        char *n = join(to, nd->rel + fl + (nd->rel[fl] == '/'));
        if (!n)
            continue; /* out of memory: the old name stays */
        free(nd->rel);
        nd->rel = n;
    }
}

/* A directory's RENAME_FROM that no RENAME_TO followed: it left the tree. */
static void settle_move(sbx_watch *w)
{
    if (!w->move_pending)
        return;
    remove_tree(w, w->move_rel);
    free(w->move_rel);
    w->move_rel = NULL;
    w->move_pending = false;
}

/* ---------------------------------------------------------------- events */

static int push(sbx_watch *w, sbx_watch_kind k, const char *rel, bool is_dir, uint32_t cookie,
                int64_t at, uint64_t now)
{
    char *p = path_of(w, rel, true);
    int rc = p ? sbx__wq_push(&w->q, k, p, is_dir, cookie, at, now) : -ENOMEM;
    free(p);
    return rc;
}

/* Events about the watched directory itself or one of its followed directories. */
static void self_event(sbx_watch *w, const struct inotify_event *ev, int64_t at, uint64_t now)
{
    if (ev->wd != w->root_wd || w->gone)
        return;
    if (ev->mask & IN_DELETE_SELF)
        push(w, SBX_WATCH_DELETE, "", true, 0, at, now);
    else if (ev->mask & IN_MOVE_SELF)
        push(w, SBX_WATCH_RENAME_FROM, "", true, 0, at, now);
    else
        return;
    w->gone = true;
}

static int moved_to(sbx_watch *w, const struct inotify_event *ev, const char *rel)
{
    if (!(ev->mask & IN_ISDIR) || !w->recursive)
        return 0;
    if (w->move_pending && w->move_cookie == ev->cookie) {
        rename_tree(w, w->move_rel, rel);
        free(w->move_rel);
        w->move_rel = NULL;
        w->move_pending = false;
        return 0;
    }
    return add_tree(w, rel, false, false);
}

static int one_event(sbx_watch *w, const struct inotify_event *ev, int64_t at, uint64_t now)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        sbx__wq_overflow(&w->q, at);
        return 0;
    }
    bool pairs = (ev->mask & IN_MOVED_TO) && w->move_pending && w->move_cookie == ev->cookie;
    if (!pairs)
        settle_move(w);
    wnode **s = node_slot(w, ev->wd);
    if (!s)
        return 0; /* a watch removed before its last events were read */
    if (ev->mask & IN_IGNORED) {
        if (ev->wd == w->root_wd)
            w->gone = true;
        node_del(w, s);
        return 0;
    }
    if (!ev->len || !ev->name[0]) {
        self_event(w, ev, at, now);
        return 0;
    }
    bool is_dir = ev->mask & IN_ISDIR;
    char *rel = join((*s)->rel, ev->name);
    if (!rel)
        return -ENOMEM;
    int rc = 0;
    if (ev->mask & IN_CREATE) {
        rc = push(w, SBX_WATCH_CREATE, rel, is_dir, 0, at, now);
        if (rc == 0 && is_dir && w->recursive)
            rc = add_tree(w, rel, false, true);
    }
    if (rc == 0 && (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB)))
        rc = push(w, SBX_WATCH_MODIFY, rel, is_dir, 0, at, now);
    if (rc == 0 && (ev->mask & IN_DELETE))
        rc = push(w, SBX_WATCH_DELETE, rel, is_dir, 0, at, now);
    if (rc == 0 && (ev->mask & IN_MOVED_FROM)) {
        rc = push(w, SBX_WATCH_RENAME_FROM, rel, is_dir, ev->cookie, at, now);
        if (is_dir && w->recursive) {
            w->move_pending = true;
            w->move_cookie = ev->cookie;
            w->move_rel = rel;
            rel = NULL;
        }
    }
    if (rc == 0 && (ev->mask & IN_MOVED_TO)) {
        rc = push(w, SBX_WATCH_RENAME_TO, rel, is_dir, ev->cookie, at, now);
        if (rc == 0)
            rc = moved_to(w, ev, rel);
    }
    free(rel);
    return rc == -ENOSPC ? 0 : rc; /* the budget: sticky in w->err */
}

/* Reads what the kernel has (bounded) and queues it. 0 or -errno. */
static int drain(sbx_watch *w)
{
    for (int r = 0; r < DRAIN_READS; r++) {
        ssize_t n = read(w->ifd, w->buf, READ_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        int64_t at = sbx_wall_ms();
        uint64_t now = sbx_mono_ms();
        for (ssize_t o = 0; o < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(w->buf + o);
            int rc = one_event(w, ev, at, now);
            if (rc < 0)
                return rc;
            o += (ssize_t)(sizeof *ev + ev->len);
        }
    }
    settle_move(w); /* nothing more to read: an unpaired RENAME_FROM left the tree */
    return 0;
}

/* ---------------------------------------------------------------- the door */

int sbx_watch_open(sbx_files *fs, const char *path, const char *display, const sbx_watch_opts *o,
                   sbx_watch **out, char *err, size_t errlen)
{
    *out = NULL;
    char full[SBX__PATHBUF];
    int rc = sbx__files_full_path(fs, "path", path, full, err, errlen);
    if (rc < 0)
        return rc;
    sbx_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->ifd = -1;
    w->root_wd = -1;
    w->recursive = o->recursive;
    w->budget = o->budget;
    sbx__wq_init(&w->q, o->coalesce_ms ? o->coalesce_ms : SBX_WATCH_COALESCE_MS_DEFAULT,
                 o->max_queued ? o->max_queued : SBX_WATCH_QUEUE_DEFAULT);
    w->inroot = strdup(full);
    w->display = strdup(display);
    w->buf = malloc(READ_BUF);
    if (!w->inroot || !w->display || !w->buf) {
        sbx_watch_close(w);
        return -ENOMEM;
    }
    if ((rc = sbx_files_dup(fs, &w->fs)) < 0) {
        sbx_watch_close(w);
        return sbx__files_fail(err, errlen, rc, "watch: sandbox root");
    }
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd < 0) {
        rc = -errno;
        sbx_watch_close(w);
        if (rc == -EMFILE)
            sbx__files_seterr(err, errlen,
                              "the executor's user has as many inotify instances as the kernel "
                              "allows (fs.inotify.max_user_instances)");
        else
            sbx__files_fail(err, errlen, rc, "watch: inotify");
        return rc;
    }
    rc = add_tree(w, "", true, false);
    if (rc == 0 && w->err)
        rc = w->err;
    if (rc < 0) {
        if (w->err)
            sbx__files_seterr(err, errlen, "%s", w->errmsg);
        else if (rc == -ENOTDIR)
            sbx__files_seterr(err, errlen, "path: not a directory");
        else if (rc == -EPERM)
            sbx__files_seterr(err, errlen, "path: on a kernel pseudo filesystem (not watchable)");
        else
            sbx__files_fail(err, errlen, rc, "path");
        sbx_watch_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int sbx_watch_next(sbx_watch *w, sbx_watch_event *ev, int timeout_ms, char *err, size_t errlen)
{
    uint64_t deadline = timeout_ms >= 0 ? sbx_mono_ms() + (uint64_t)timeout_ms : UINT64_MAX;
    for (;;) {
        int rc = w->gone ? 0 : drain(w);
        if (rc < 0)
            return sbx__files_fail(err, errlen, rc, "watch: inotify");
        if (w->err) {
            sbx__files_seterr(err, errlen, "%s", w->errmsg);
            return w->err;
        }
        uint64_t now = sbx_mono_ms();
        if (sbx__wq_pop(&w->q, now, w->gone, ev))
            return 1;
        if (w->gone)
            return -ENOENT;
        if (now >= deadline)
            return 0;
        uint64_t due = sbx__wq_next_due(&w->q);
        uint64_t until = due && due < deadline ? due : deadline;
        int wait = until == UINT64_MAX ? -1 : until > now ? (int)(until - now) : 0;
        struct pollfd pf = {.fd = w->ifd, .events = POLLIN};
        if (poll(&pf, 1, wait) < 0 && errno != EINTR)
            return sbx__files_fail(err, errlen, -errno, "watch: poll");
    }
}

size_t sbx_watch_dirs(const sbx_watch *w)
{
    return w->ndirs;
}

void sbx_watch_close(sbx_watch *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nslots; i++) {
        if (!w->nodes[i])
            continue;
        free(w->nodes[i]->rel);
        free(w->nodes[i]);
        __atomic_sub_fetch(&w->budget->used, 1, __ATOMIC_RELAXED);
    }
    free(w->nodes);
    if (w->ifd >= 0)
        close(w->ifd); /* removes every watch */
    sbx_files_free(w->fs);
    sbx__wq_free(&w->q);
    free(w->move_rel);
    free(w->inroot);
    free(w->display);
    free(w->buf);
    free(w);
}
