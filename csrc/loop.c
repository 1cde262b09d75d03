/*
 * loop.c - the epoll loop: listening sockets, accept, timers, wake-up.
 *
 * Connections are registered once, edge-triggered for both directions, so a
 * request costs no epoll_ctl calls.  Timers are per-kind FIFO lists: every
 * kind has one fixed duration, so appending keeps each list sorted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#ifndef FW_EXTERNAL_CLOCK
/* The coarse clock is read through the vDSO without a syscall, cheap enough
 * to read whenever a deadline is set.  (A test build may supply its own.) */
int64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Precise: a response is held at most FW_HOLD_US, far below the coarse
 * clock's tick. */
int64_t loop_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
#else
int64_t loop_clock_us(void)
{
    return loop_clock_ms() * 1000;
}
#endif

int64_t fw_clock_ms(void)
{
    return loop_clock_ms();
}

/* The time now, also kept as loop->now.  Every deadline is computed from a
 * fresh reading: the app may have run for a long time since the last one. */
int64_t loop_now(fw_loop *loop)
{
    int64_t t = loop_clock_ms();
    if (t > loop->now)
        loop->now = t;
    return loop->now;
}

void loop_log(fw_loop *loop, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fw_py_log(loop->userdata, level, msg);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

fw_loop *fw_loop_new(const fw_config *cfg, void *userdata)
{
    fw_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->cfg = *cfg;
    loop->userdata = userdata;
    loop->spool_dir = dup_or_null(cfg->spool_dir ? cfg->spool_dir : "/tmp");
    loop->server_name = dup_or_null(cfg->server_name ? cfg->server_name
                                                     : "fastwsgi");
    loop->cfg.spool_dir = loop->spool_dir;
    loop->cfg.server_name = loop->server_name;
    loop->wakeup.kind = IO_WAKEUP;
    loop->wakeup.fd = -1;
    loop->pool_io.fd = -1;
    pthread_mutex_init(&loop->mu, NULL);
    loop->timeout_ms[T_HEAD] = cfg->header_timeout_ms;
    loop->timeout_ms[T_IDLE] = cfg->keepalive_timeout_ms;
    loop->timeout_ms[T_BODY] = cfg->body_timeout_ms;
    loop->timeout_ms[T_WRITE] = cfg->write_timeout_ms;
    loop->timeout_ms[T_LINGER] = FW_LINGER_MS;
    /* The environ block holds the head's bytes at most three times
     * (PATH_INFO, REQUEST_URI, an absolute target's Host) plus a prefix per
     * field and the fixed keys; build_env checks it. */
    loop->env_cap = 3 * (size_t)cfg->limits.head + 8 * FW_MAX_FIELDS + 1024 +
                    FW_TLS_DN_MAX;
    loop->env = malloc(loop->env_cap);
    loop->keys = malloc(loop->env_cap);
    loop->rbuf = malloc(FW_RBUF_SIZE);
    loop->wbuf = malloc(FW_WBUF_SIZE);
    loop->batch_env = malloc(FW_BATCH_ENV);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->env == NULL || loop->keys == NULL || loop->rbuf == NULL || loop->wbuf == NULL ||
        loop->batch_env == NULL || loop->spool_dir == NULL || loop->server_name == NULL ||
        loop->epfd < 0) {
        fw_loop_free(loop);
        return NULL;
    }
    int sl = snprintf(loop->server_line, sizeof loop->server_line,
                      "Server: %.64s\r\n", loop->server_name);
    loop->server_line_len = sl > 0 ? (size_t)sl : 0;
    loop->now = loop_clock_ms();
    /* /dev/urandom rather than getrandom(): the oldest glibc the wheels
     * are built against has no wrapper for it. */
    int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = rfd >= 0 ? read(rfd, &loop->hash_seed, sizeof loop->hash_seed)
                           : -1;
    if (rfd >= 0)
        close(rfd);
    if (got != (ssize_t)sizeof loop->hash_seed) {
        /* No entropy yet (early boot): still not guessable offline. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        loop->hash_seed = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
                          ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)loop;
    }
    response_date_refresh(loop, (int64_t)time(NULL));
    return loop;
}

/* Free the closed connections, except those an app thread or the
 * kicked list still refers to: they wait for a later turn. */
static void free_zombies(fw_loop *loop)
{
    fw_conn *keep = NULL;
    while (loop->zombies) {
        fw_conn *c = loop->zombies;
        loop->zombies = c->next;
        if (c->flags & (C_JOB | C_KICKED)) {
            c->next = keep;
            keep = c;
        } else {
            free(c);
        }
    }
    loop->zombies = keep;
}

void fw_loop_free(fw_loop *loop)
{
    if (loop == NULL)
        return;
    while (loop->conns)
        conn_close(loop->conns);
    /* No app thread is left (the caller waited for them): all go. */
    while (loop->zombies) {
        fw_conn *c = loop->zombies;
        loop->zombies = c->next;
        free(c);
    }
    for (int i = 0; i < loop->nlisteners; i++)
        if (loop->listeners[i].fd >= 0)
            close(loop->listeners[i].fd);
    alog_free(loop);            /* after the connections' last lines */
    tls_loop_free(loop);
    for (int i = 0; i < loop->ntaken; i++)
        close(loop->taken[i].fd);
    free(loop->taken);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->env);
    free(loop->keys);
    for (int i = 0; i < FW_SHAPES; i++)
        free(loop->shapes[i].keys);
    free(loop->rbuf);
    free(loop->fbuf);
    free(loop->wbuf);
    free(loop->batch_env);
    free(loop->spool_dir);
    free(loop->server_name);
    pool_free(loop);
    pthread_mutex_destroy(&loop->mu);
    free(loop);
}

/* Level-triggered, and without EPOLLEXCLUSIVE where workers share the
 * socket: the kernel would wake the first worker registered whenever it
 * sleeps (so one worker took nearly every connection), and a worker it
 * chose could not leave the connection to another.  Every sleeping worker
 * is woken instead, and share.c decides which one takes it. */
static uint32_t listen_events(fw_loop *loop)
{
    (void)loop;
    return EPOLLIN;
}

int fw_loop_listen(fw_loop *loop, int fd, int index)
{
    /* Listeners are numbered in the order they are added: the number is
     * what fw_py_request reports and Python's environ templates follow. */
    if (loop->nlisteners >= FW_MAX_LISTENERS || index != loop->nlisteners) {
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    /* Wake up only once the request's first bytes are there: the accept
     * is then followed by a read that finds data, saving a loop turn. */
    int secs = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
    /* Accepted sockets inherit it: one setsockopt here, none per client. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fw_io *io = &loop->listeners[loop->nlisteners];
    io->kind = IO_LISTENER;
    io->fd = fd;
    struct epoll_event ev = {.events = listen_events(loop), .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    loop->nlisteners++;
    return 0;
}

void fw_loop_beat(fw_loop *loop, fw_beat *slot)
{
    loop->beat = slot;
}

int fw_loop_wakeup_fd(fw_loop *loop, int fd)
{
    loop->wakeup.fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &loop->wakeup};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int fw_loop_connections(fw_loop *loop)
{
    return loop->nconns;
}

/* ---- timers ---- */

void loop_timer_clear(fw_loop *loop, fw_conn *c)
{
    int k = c->timer;
    if (k == T_NONE)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        loop->thead[k] = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        loop->ttail[k] = c->tprev;
    c->tprev = c->tnext = NULL;
    c->timer = T_NONE;
}

/*
 * Put c on the list of `kind` with the given deadline.  A list is kept in
 * deadline order: most deadlines are "now + the kind's duration" and go at
 * the tail; one that runs from an earlier moment (a head that started
 * before) walks back to its place.
 */
void loop_timer_at(fw_loop *loop, fw_conn *c, int kind, int64_t deadline)
{
    loop_timer_clear(loop, c);
    if (kind == T_NONE || loop->timeout_ms[kind] <= 0)
        return;
    c->timer = (uint8_t)kind;
    c->deadline = deadline;
    fw_conn *after = loop->ttail[kind];
    while (after && after->deadline > deadline)
        after = after->tprev;
    c->tprev = after;
    c->tnext = after ? after->tnext : loop->thead[kind];
    if (c->tnext)
        c->tnext->tprev = c;
    else
        loop->ttail[kind] = c;
    if (after)
        after->tnext = c;
    else
        loop->thead[kind] = c;
}

/* The kind's full duration from now. */
void loop_timer_set(fw_loop *loop, fw_conn *c, int kind)
{
    loop_timer_at(loop, c, kind, loop_now(loop) + loop->timeout_ms[kind]);
}

static int next_timeout(fw_loop *loop)
{
    int64_t soonest = -1;
    for (int k = 1; k < T_KINDS; k++) {
        fw_conn *c = loop->thead[k];
        if (c && (soonest < 0 || c->deadline < soonest))
            soonest = c->deadline;
    }
    if (loop->accept_paused &&
        (soonest < 0 || loop->accept_resume < soonest))
        soonest = loop->accept_resume;
    if (loop->stopping == 1 &&
        (soonest < 0 || loop->stop_deadline < soonest))
        soonest = loop->stop_deadline;
    if (loop->threaded && loop->q_head != NULL && loop->nidle > 0)
        return 1;               /* a queued request may need a thread woken */
    if (loop->threaded) {
        int64_t expiry = pool_next_expiry(loop);
        if (expiry >= 0 && (soonest < 0 || expiry < soonest))
            soonest = expiry;
    }
    if (loop->alog_waiting && (soonest < 0 || soonest > loop_now(loop) + 20))
        soonest = loop_now(loop) + 20;  /* access log lines for the writer */
    if (soonest < 0)
        return -1;
    int64_t wait = soonest - loop_now(loop);
    /* the coarse clock ticks every few ms: round up, never spin */
    return wait <= 0 ? 1 : (int)(wait > 60000 ? 60000 : wait + 1);
}

/* Deadlines are expired against the time epoll last reported events: one
 * that passed while the app ran may have met its event meanwhile, which
 * the next epoll_wait (at once, the deadline being past) reports first. */
static void expire_timers(fw_loop *loop, int64_t polled)
{
    for (int k = 1; k < T_KINDS; k++) {
        fw_conn *c;
        while ((c = loop->thead[k]) != NULL && c->deadline <= polled) {
            loop_timer_clear(loop, c);
            conn_timeout(c);
        }
    }
}

/* ---- accept ---- */

static void listeners_enable(fw_loop *loop, int on)
{
    for (int i = 0; i < loop->nlisteners; i++) {
        fw_io *io = &loop->listeners[i];
        if (io->fd < 0)
            continue;
        struct epoll_event ev = {.events = listen_events(loop), .data.ptr = io};
        epoll_ctl(loop->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, io->fd,
                  &ev);
    }
}

/* Accepts what is pending, up to `max` connections; once stopping, only
 * a retiring worker does (until its listeners close).  All of it, not a
 * few: a connection left in the backlog waits for the app calls of the
 * whole turn, and under a burst (a load balancer opening its pool, a
 * benchmark's 500 clients) the last ones waited for a dozen turns while
 * the first were served again and again.  Workers sharing the socket
 * race for the backlog; one that finds a less loaded worker asleep
 * leaves the rest to it. */
static void accept_some(fw_loop *loop, fw_io *lis, int max)
{
    int index = (int)(lis - loop->listeners);
    for (int n = 0; n < max && (!loop->stopping || loop->gentle); n++) {
        if (n > 0 && share_leave_to_other(loop))
            return;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int fd = accept4(lis->fd, (struct sockaddr *)&sa, &salen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Level-triggered listeners would spin: step back.  One
                 * line per episode, not one per retry. */
                if (loop->accept_failures++ == 0)
                    loop_log(loop, FW_LOG_ERROR,
                             "accept: %s; pausing new connections, retrying "
                             "every 100 ms", strerror(errno));
                listeners_enable(loop, 0);
                loop->accept_paused = 1;
                loop->accept_resume = loop_now(loop) + 100;
            } else if (errno != EAGAIN) {
                loop_log(loop, FW_LOG_ERROR, "accept: %s", strerror(errno));
            } else if (loop->accept_failures) {
                /* Everything waiting was accepted: the episode is over. */
                loop_log(loop, FW_LOG_WARNING,
                         "accepting connections again after %ld failed "
                         "attempts", loop->accept_failures);
                loop->accept_failures = 0;
            }
            return;
        }
        fw_conn *c = conn_new(loop, fd, index, &sa, salen);
        if (c == NULL) {
            close(fd);
            continue;
        }
        conn_run(c);
    }
}

/* ---- run / stop ---- */

static void close_idle(fw_loop *loop)
{
    fw_conn *c = loop->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_HEAD && !(c->flags & C_IN_APP) &&
            c->in.len == c->in.off && conn_out_pending(c) == 0)
            conn_close(c);
    }
}

/* Accept, without serving yet, what the kernel queued before a graceful
 * stop: this may run in a signal handler in the middle of a callback, so
 * the descriptors wait in `taken` for serve_taken at a safe point. */
static void take_queued(fw_loop *loop, fw_io *lis)
{
    if (loop->taken == NULL) {
        loop->taken = malloc(FW_TAKE_MAX * sizeof *loop->taken);
        if (loop->taken == NULL)
            return;
    }
    while (loop->ntaken < FW_TAKE_MAX) {
        fw_taken *t = &loop->taken[loop->ntaken];
        socklen_t salen = sizeof t->sa;
        int fd = accept4(lis->fd, (struct sockaddr *)&t->sa, &salen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        t->fd = fd;
        t->listener = (int)(lis - loop->listeners);
        t->salen = (unsigned)salen;
        loop->ntaken++;
    }
}

static void serve_taken(fw_loop *loop)
{
    for (int i = 0; i < loop->ntaken; i++) {
        fw_taken *t = &loop->taken[i];
        fw_conn *c = conn_new(loop, t->fd, t->listener, &t->sa, t->salen);
        if (c == NULL) {
            close(t->fd);
            continue;
        }
        conn_run(c);
    }
    loop->ntaken = 0;
}

/* Stop accepting at once; the kernel refuses what comes next. */
static void close_listeners(fw_loop *loop)
{
    /* A retiring worker takes what is queued before it closes: a socket
     * of its own (SO_REUSEPORT) would drop it, and on a shared socket the
     * kernel may have woken this worker alone for it (EPOLLEXCLUSIVE).
     * No wake-up is lost after the last accept: this process is not in
     * epoll_wait, so the kernel wakes another. */
    if (loop->gentle)
        for (int i = 0; i < loop->nlisteners; i++)
            if (loop->listeners[i].fd >= 0 && loop->running)
                accept_some(loop, &loop->listeners[i], 4096);
    for (int i = 0; i < loop->nlisteners; i++) {
        if (loop->listeners[i].fd >= 0) {
            if (loop->stopping == 1 && !loop->gentle && loop->running)
                take_queued(loop, &loop->listeners[i]);
            /* Out of epoll before the close: the master and the other
             * workers keep the socket open, and while any descriptor of it
             * is, epoll keeps watching it for this process.  A worker
             * still draining its connections would then be woken for new
             * ones it no longer accepts. */
            epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->listeners[i].fd, NULL);
            close(loop->listeners[i].fd);
            loop->listeners[i].fd = -1;
        }
    }
    loop->accept_paused = 0;
}

/* This may run from a signal handler in Python, in the middle of any
 * callback: only flags change, and the listeners close (accept_some checks
 * `stopping` before each accept), so that new clients are refused at once
 * rather than queued behind an app call and reset later.  The loop acts
 * on the flags at a safe point. */
void fw_loop_stop(fw_loop *loop, int how)
{
    if (loop->stopping == 0 && how != FW_STOP_NOW) {
        loop->stopping = 1;
        loop->gentle = how == FW_STOP_RETIRE;
        loop->stop_deadline = loop_now(loop) + loop->cfg.graceful_timeout_ms;
    } else if (loop->stopping == 1 && how == FW_STOP_RETIRE) {
        /* already stopping, as gently or less */
    } else if (loop->stopping == 1 && loop->gentle && how == FW_STOP_GRACEFUL) {
        loop->gentle = 0;
    } else {
        loop->stopping = 2;
        loop->gentle = 0;
    }
    if (loop->beat)
        loop->beat->state = FW_BEAT_STOPPING;
    /* A retiring worker closes them at a safe point in stop_due, after
     * taking what is queued on them. */
    if (!loop->gentle)
        close_listeners(loop);
}

static void drain_wakeup(fw_loop *loop)
{
    char junk[64];
    while (read(loop->wakeup.fd, junk, sizeof junk) > 0)
        ;
    fw_py_wakeup(loop->userdata);
}

/* Where Python reads them: a plain copy, once a turn (a reader may see
 * one turn's counters half-copied; each field is whole). */
static void publish_metrics(fw_loop *loop)
{
    loop->m.connections = loop->nconns;
    loop->m.threads = loop->nworkers;
    loop->m.busy = loop->nworkers - loop->nidle;
    memcpy(loop->mdst, &loop->m, offsetof(fw_counters, status));
}

/* One turn: wait up to timeout_ms (-1: until the next deadline), handle
 * what epoll reports, answer the batch, expire timers. */
int loop_turn(fw_loop *loop, int timeout_ms)
{
    struct epoll_event events[FW_MAX_EVENTS];
    loop_lock(loop);
    conn_release_deferred(loop);    /* none is left by a turn; a guard */
    int wait = next_timeout(loop);
    loop_unlock(loop);
    if (timeout_ms >= 0 && (wait < 0 || timeout_ms < wait))
        wait = timeout_ms;
    fw_beat *beat = loop->beat;
    if (beat) {
        share_publish(loop);
        beat->requests = loop->served;
        beat->waiting = 1;
    }
    int n = epoll_wait(loop->epfd, events, FW_MAX_EVENTS, wait);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    loop_lock(loop);
    int64_t polled = loop_now(loop);
    if (beat) {
        beat->turn_ms = polled;
        beat->waiting = 0;
    }
    int64_t sec = (int64_t)time(NULL);
    if (sec != loop->date_sec)
        response_date_refresh(loop, sec);
    for (int i = 0; i < n; i++) {
        fw_io *io = events[i].data.ptr;
        if (io->kind == IO_CONN) {
            conn_event((fw_conn *)io, events[i].events);
        } else if (io->kind == IO_LISTENER) {
            if (io->fd < 0 || (loop->stopping && !loop->gentle)) {
                /* closed meanwhile */
            } else if (share_leave_to_other(loop)) {
                /* Not watched for a while: level-triggered, it would be
                 * reported again at once. */
                listeners_enable(loop, 0);
                loop->accept_paused = 1;
                loop->accept_resume = loop_now(loop) + FW_SHARE_PAUSE_MS;
            } else {
                accept_some(loop, io, FW_ACCEPT_TURN);
            }
        } else if (io->kind == IO_POOL) {
            /* pool_run below, every turn */
        } else {
            drain_wakeup(loop);
        }
    }
    /* Answer what the events gathered before anything else runs:
     * timers, and freeing the connections closed meanwhile. */
    conn_batch_flush(loop);
    conn_release_deferred(loop);
    if (loop->threaded)
        pool_run(loop);
    /* A full event array may have left ready connections unreported:
     * then expire only what was due at the turn before, which any event
     * that came in time has been reported by now. */
    expire_timers(loop, n < FW_MAX_EVENTS ? polled : loop->polled_before);
    loop->polled_before = polled;
    if (loop->accept_paused && loop->now >= loop->accept_resume) {
        loop->accept_paused = 0;
        listeners_enable(loop, 1);
    }
    free_zombies(loop);
    if (loop->alog)
        loop->alog_waiting = alog_turn(loop);
    if (loop->mdst)
        publish_metrics(loop);
    share_update(loop);
    /* Enough requests (max_requests): hand over like a reload would. */
    if (loop->cfg.max_requests > 0 && !loop->stopping &&
        loop->served >= (uint64_t)loop->cfg.max_requests)
        fw_loop_stop(loop, FW_STOP_RETIRE);
    loop_unlock(loop);
    return 0;
}

/* Closes what is left once a stop is due; returns 1 when the loop ends. */
static int stop_due(fw_loop *loop)
{
    if (!loop->stopping)
        return 0;
    close_listeners(loop);
    if (loop->stopping == 1)
        serve_taken(loop);
    /* What was taken at the listeners' close may sit in the batch: answer
     * it now, for no event will come for bytes already read. */
    conn_batch_flush(loop);
    conn_release_deferred(loop);
    if (loop->stopping == 1 && !loop->gentle)
        close_idle(loop);
    if (loop->nconns == 0 || loop->stopping == 2 ||
        loop_now(loop) >= loop->stop_deadline) {
        while (loop->conns)
            conn_close(loop->conns);
        free_zombies(loop);
        return 1;
    }
    return 0;
}

int fw_loop_run(fw_loop *loop)
{
    loop->running = 1;
    if (loop->beat) {
        loop->beat->turn_ms = loop_now(loop);
        loop->beat->state = loop->stopping ? FW_BEAT_STOPPING : FW_BEAT_SERVING;
    }
    for (;;) {
        loop_lock(loop);
        int done = !loop->running || stop_due(loop);
        loop_unlock(loop);
        if (done)
            break;
        if (loop_turn(loop, -1) < 0) {
            loop->running = 0;
            return -1;
        }
    }
    loop->running = 0;
    if (loop->beat) {
        loop->beat->requests = loop->served;
        loop->beat->state = FW_BEAT_STOPPING;
    }
    if (loop->mdst)
        publish_metrics(loop);
    return 0;
}
