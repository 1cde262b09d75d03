/*
 * pool.c - threaded mode: the hand-over between the loop and app threads.
 *
 * The loop thread runs in C without the interpreter lock.  When a request
 * is ready and an app thread is idle, the loop copies what the thread needs
 * (environ values, body) into that thread's worker and wakes it; when every
 * thread is busy, the connection waits in a FIFO (its input stays in its
 * own bounded buffer, unparsed) until one is free.  App threads wait for
 * work inside C with the interpreter lock released.
 *
 * Their response calls take the loop's mutex, queue output on the
 * connection and "kick" it: the connection joins a list the loop works
 * through, woken by an eventfd only when it is not already awake.  The loop
 * does every send, so blocks an app produces while the loop is busy go out
 * together.  Every field shared by the two sides is read and written under
 * the mutex; the loop holds it for a whole turn except while in epoll_wait.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/* The worker of the app thread running this code, set when it joins the
 * pool; NULL on every other thread (the loop's included). */
__thread fw_worker *fw_tls_worker;

int fw_loop_threads(fw_loop *loop)
{
    if (loop->threaded)
        return 0;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -1;
    loop->pool_io.kind = IO_POOL;
    loop->pool_io.fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &loop->pool_io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        loop->pool_io.fd = -1;
        return -1;
    }
    loop->threaded = 1;
    return 0;
}

/* Have the loop look at the kicked list soon.  Under the mutex. */
static void notify(fw_loop *loop)
{
    if (loop->pool_notified)
        return;
    loop->pool_notified = 1;
    uint64_t one = 1;
    ssize_t r = write(loop->pool_io.fd, &one, sizeof one);
    (void)r;                    /* EAGAIN: the counter is set already */
}

/* The connection has news for the loop (output, or its request is over).
 * Under the mutex. */
void pool_kick(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (!(c->flags & C_KICKED)) {
        c->flags |= C_KICKED;
        c->knext = NULL;
        if (loop->kick_tail)
            loop->kick_tail->knext = c;
        else
            loop->kick_head = c;
        loop->kick_tail = c;
    }
    notify(loop);
}

/* ---- the loop's side ---- */

/* Signal `w` when the loop releases the mutex (loop_unlock).  Its wait
 * predicate is set already, under the mutex, so a signal that comes late
 * is at worst a spurious wake-up.  Only the loop's thread calls this. */
static void wake(fw_worker *w)
{
    if (w->wake_queued)
        return;
    w->wake_queued = 1;
    w->next_wake = w->loop->to_wake;
    w->loop->to_wake = w;
}

void pool_wake(fw_worker *list)
{
    while (list != NULL) {
        fw_worker *next = list->next_wake;
        list->wake_queued = 0;
        pthread_cond_signal(&list->cv);
        list = next;
    }
}

/* May this connection's parsed request go to a thread now?  Only when one
 * is idle and nobody waits ahead of it. */
static int has_room(const fw_loop *loop)
{
    return loop->nidle == loop->nworkers ||
           (loop->nqueued < FW_QUEUE_MAX && loop->queued_bytes < FW_QUEUE_BYTES);
}

int pool_may_take(const fw_conn *c)
{
    const fw_loop *loop = c->loop;
    return has_room(loop) &&
           (loop->waitq_head == NULL || (c->flags & C_WAKE));
}

/* Every thread is busy: the connection waits, in arrival order. */
void pool_wait(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->flags & C_WAITQ)
        return;
    c->flags |= C_WAITQ;
    c->waited_ms = loop_now(loop);
    c->wnext = NULL;
    c->wprev = loop->waitq_tail;
    if (loop->waitq_tail)
        loop->waitq_tail->wnext = c;
    else
        loop->waitq_head = c;
    loop->waitq_tail = c;
    loop->nwaitq++;
}

void pool_unwait(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (!(c->flags & C_WAITQ))
        return;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        loop->waitq_head = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    else
        loop->waitq_tail = c->wprev;
    c->wprev = c->wnext = NULL;
    c->flags &= ~C_WAITQ;
    loop->nwaitq--;
}

static int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    char *nb = realloc(*buf, n);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = n;
    return 0;
}

/* Give the worker its request: copies of the values and the body, the
 * keys (the pinned shape's, or copied).  Under the mutex. */
static int assign(fw_worker *w, fw_conn *c, const char *env, size_t env_len,
                  const char *keys, size_t keys_len, uint64_t gen, int shape,
                  const char *body, size_t body_len, int body_fd, int flags)
{
    if (grow(&w->env, &w->env_cap, env_len + 1) < 0 ||
        (shape < 0 && grow(&w->keys, &w->keys_cap, keys_len + 1) < 0) ||
        grow(&w->body, &w->body_cap, body_len + 1) < 0)
        return -1;
    fw_job *j = &w->job;
    memcpy(w->env, env, env_len);
    w->env[env_len] = '\0';
    j->env = w->env;
    j->env_len = env_len;
    if (shape >= 0) {
        j->keys = keys;         /* the slot's own, pinned */
    } else {
        memcpy(w->keys, keys, keys_len);
        w->keys[keys_len] = '\0';
        j->keys = w->keys;
    }
    j->keys_len = keys_len;
    j->keys_gen = gen;
    w->shape = shape;
    if (body_len)
        memcpy(w->body, body, body_len);
    j->body = w->body;
    j->body_len = body_len;
    j->body_fd = body_fd;
    j->flags = flags;
    j->conn = c;
    c->job = w;
    w->started_us = clock_us();
    return 0;
}

/* A queued request the thread could not take: its request ends here. */
static void unpin(fw_loop *loop, int shape)
{
    if (shape >= 0)
        loop->shapes[shape].refs--;
}

/*
 * Hand a request to an app thread (pool_may_take said there is room).
 * When every thread is idle, one is woken for it at once.  Otherwise it
 * joins the queue the busy threads take from as they finish: waking a
 * thread costs a context switch and a contest for the interpreter lock,
 * and for an app that answers in microseconds the threads already
 * running take the whole queue sooner.  A request still queued after
 * FW_QUEUE_WAKE_US (the busy threads are blocked: the app waits on I/O)
 * gets an idle thread woken for it (pool_run), and so does one at once
 * when the recent calls say a busy thread would be long to come (an app
 * that sleeps, or waits on a database).  The
 * values and the body are copied; the keys are the shape's, pinned until
 * the request is over, or copied for FW_SHAPE_ONCE.  Returns -1 when
 * memory ran out (the caller answers 500).
 */
int pool_dispatch(fw_conn *c, const char *env, size_t env_len,
                  const char *keys, size_t keys_len, const char *body,
                  size_t body_len, int body_fd, int in_flags, int shape)
{
    fw_loop *loop = c->loop;
    int pinned = shape >= 0 && shape < FW_SHAPES ? shape : -1;
    uint64_t gen = 0;           /* 0: the keys name nothing, never cached */
    if (pinned >= 0) {
        fw_shape *s = &loop->shapes[pinned];
        keys = s->keys;
        keys_len = s->len;
        gen = s->gen;
    }
    if (body_len || body_fd >= 0)
        in_flags |= FW_IN_BODY;
    int flags = in_flags | (c->listener << 8) | (shape << 16);
    fw_worker *w = loop->nidle == loop->nworkers ? loop->idle : NULL;
    if (w != NULL) {
        if (assign(w, c, env, env_len, keys, keys_len, gen, pinned, body,
                   body_len, body_fd, flags) < 0)
            return -1;
        loop->idle = w->next_idle;
        loop->nidle--;
        w->next_idle = NULL;
        w->assigned = 1;
        wake(w);
    } else {
        size_t own_keys = pinned >= 0 ? 0 : keys_len + 1;
        size_t size = sizeof(fw_queued) + env_len + 1 + own_keys + body_len + 1;
        fw_queued *q = malloc(size);
        if (q == NULL)
            return -1;
        char *p = (char *)(q + 1);
        memcpy(p, env, env_len);
        q->env = p;
        p += env_len + 1;
        if (pinned < 0) {
            memcpy(p, keys, keys_len);
            q->keys = p;
            p += keys_len + 1;
        } else {
            q->keys = keys;
        }
        if (body_len)
            memcpy(p, body, body_len);
        q->body = p;
        q->next = NULL;
        q->conn = c;
        q->size = size;
        q->env_len = env_len;
        q->keys_len = keys_len;
        q->body_len = body_len;
        q->body_fd = body_fd;
        q->flags = flags;
        q->shape = pinned;
        q->gen = gen;
        q->since_us = clock_us();
        if (loop->q_tail)
            loop->q_tail->next = q;
        else
            loop->q_head = q;
        loop->q_tail = q;
        loop->nqueued++;
        loop->queued_bytes += size;
        c->job = NULL;          /* no thread has it yet */
    }
    if (pinned >= 0)
        loop->shapes[pinned].refs++;
    c->flags |= C_IN_APP | C_JOB;
    c->flags &= ~C_WAKE;
    return 0;
}

/* The oldest queued request, taken off the queue.  Under the mutex. */
static fw_queued *pop_queued(fw_loop *loop)
{
    fw_queued *q = loop->q_head;
    loop->q_head = q->next;
    if (loop->q_head == NULL)
        loop->q_tail = NULL;
    loop->nqueued--;
    loop->queued_bytes -= q->size;
    return q;
}

/* A queued request no thread will run: its spooled body is closed, its
 * shape unpinned, and its client, if still there, answered `status`.
 * Returns 1 when it was answered.  Under the mutex. */
static int drop_queued(fw_loop *loop, fw_queued *q, int status)
{
    fw_conn *c = q->conn;
    int answered = 0;
    if (q->body_fd >= 0)
        close(q->body_fd);
    unpin(loop, q->shape);
    c->flags &= ~(C_JOB | C_IN_APP);
    if (c->state != CS_CLOSED) {
        response_error(c, status);
        c->resp = RS_DONE;
        answered = 1;
    }
    pool_kick(c);
    free(q);
    return answered;
}

/* The next queued request for a thread that is done, if any.  A request
 * whose client went away meanwhile is dropped.  Under the mutex. */
static int take_queued(fw_worker *w)
{
    fw_loop *loop = w->loop;
    while (loop->q_head != NULL) {
        fw_queued *q = pop_queued(loop);
        if (loop->waitq_head != NULL)
            notify(loop);       /* room in the queue: the loop parses more */
        fw_conn *c = q->conn;
        if (c->state != CS_CLOSED &&
            assign(w, c, q->env, q->env_len, q->keys, q->keys_len,
                   q->gen, q->shape, q->body, q->body_len, q->body_fd,
                   q->flags) == 0) {
            free(q);
            return 1;
        }
        drop_queued(loop, q, 500);
    }
    return 0;
}

/* A thread waiting for this connection's output to drain may go on. */
void pool_writable(fw_conn *c)
{
    fw_worker *w = c->job;
    if (w != NULL && w->waiting)
        wake(w);
}

/* Are the app calls long enough that a queued request is better given to
 * an idle thread woken for it than left for a busy thread to take?  The
 * first of the `busy` threads would come for it some call_us / busy from
 * now. */
static int calls_are_long(const fw_loop *loop, int busy)
{
    return loop->call_us >= (int64_t)FW_WAKE_COST_US * (busy > 0 ? busy : 1);
}

/* Connections waiting for a thread get the room there is, first come
 * first. */
static void resume_waiting(fw_loop *loop)
{
    while (has_room(loop) && loop->waitq_head != NULL) {
        fw_conn *c = loop->waitq_head;
        pool_unwait(c);
        c->flags |= C_WAKE;
        conn_run(c);
        c->flags &= ~C_WAKE;
    }
}

/* Idle threads take the requests that waited in the queue too long, or
 * all of them when the busy threads' calls are long: the first of the
 * busy threads would come for a request some call_us / busy from now. */
static void wake_for_stale(fw_loop *loop)
{
    if (loop->q_head == NULL || loop->nidle == 0)
        return;
    int64_t now = clock_us();
    int patient = !calls_are_long(loop, loop->nworkers - loop->nidle);
    while (loop->q_head != NULL && loop->idle != NULL &&
           (!patient || now - loop->q_head->since_us >= FW_QUEUE_WAKE_US)) {
        fw_worker *w = loop->idle;
        if (!take_queued(w))
            break;
        loop->idle = w->next_idle;
        loop->nidle--;
        w->next_idle = NULL;
        w->assigned = 1;
        wake(w);
    }
}

/* With a request timeout: requests that waited for an app thread longer
 * than it get 503 and a close, oldest first (both queues are in arrival
 * order).  Every thread is stuck or far behind; the client would wait
 * with no end, as long as the threads do.  Under the mutex. */
static void expire_waiting(fw_loop *loop)
{
    int64_t limit = loop->cfg.request_timeout_ms;
    if (limit <= 0 || (loop->q_head == NULL && loop->waitq_head == NULL))
        return;
    int64_t now = loop_now(loop);
    int expired = 0;
    while (loop->q_head != NULL && now - loop->q_head->since_us / 1000 >= limit) {
        fw_queued *q = pop_queued(loop);
        expired += drop_queued(loop, q, 503);
    }
    while (loop->waitq_head != NULL && now - loop->waitq_head->waited_ms >= limit) {
        fw_conn *c = loop->waitq_head;
        pool_unwait(c);
        response_error(c, 503);     /* its request, unread, is not served */
        c->state = CS_APP;
        c->resp = RS_DONE;
        pool_kick(c);
        expired++;
    }
    if (expired)
        loop_log(loop, FW_LOG_WARNING, "%d request(s) waited past the request timeout "
                 "(%lld ms) for an app thread (all %d busy): answered 503 and closed",
                 expired, (long long)limit, loop->nworkers);
}

/* When the oldest request waiting for a thread reaches the request
 * timeout (ms on the loop's clock), or -1. */
int64_t pool_next_expiry(const fw_loop *loop)
{
    int64_t limit = loop->cfg.request_timeout_ms, at = -1;
    if (limit <= 0)
        return -1;
    if (loop->q_head != NULL)
        at = loop->q_head->since_us / 1000 + limit;
    if (loop->waitq_head != NULL &&
        (at < 0 || loop->waitq_head->waited_ms + limit < at))
        at = loop->waitq_head->waited_ms + limit;
    return at;
}

/* The loop's share of a turn: what app threads kicked, the queue, the
 * connections waiting for room. */
void pool_run(fw_loop *loop)
{
    uint64_t junk;
    if (loop->pool_notified) {
        ssize_t r = read(loop->pool_io.fd, &junk, sizeof junk);
        (void)r;
        loop->pool_notified = 0;
    }
    expire_waiting(loop);       /* (what it answers is kicked: sent below) */
    while (loop->kick_head != NULL) {
        fw_conn *c = loop->kick_head;
        loop->kick_head = c->knext;
        if (loop->kick_head == NULL)
            loop->kick_tail = NULL;
        c->knext = NULL;
        c->flags &= ~C_KICKED;
        if (c->state == CS_CLOSED)
            continue;
        if (!(c->flags & C_JOB) && c->state == CS_APP &&
            c->resp == RS_NONE && !(c->flags & C_DEAD)) {
            /* The thread ended the request without a response. */
            loop_log(loop, FW_LOG_ERROR, "no response was produced");
            response_error(c, 500);
            c->resp = RS_DONE;
        }
        conn_run(c);
    }
    wake_for_stale(loop);
    resume_waiting(loop);
}

/* ---- the app threads' side ---- */

fw_job *fw_pool_join(fw_loop *loop)
{
    fw_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        free(w);
        return NULL;
    }
    w->loop = loop;
    w->shape = -1;
    w->job.body_fd = -1;
    pthread_mutex_lock(&loop->mu);
    w->next_all = loop->workers;
    loop->workers = w;
    loop->nworkers++;
    pthread_mutex_unlock(&loop->mu);
    fw_tls_worker = w;
    return &w->job;
}

/* Under the mutex: the thread's request is over. */
static void finish_job(fw_worker *w)
{
    fw_loop *loop = w->loop;
    fw_conn *c = w->job.conn;
    if (c == NULL)
        return;
    w->job.conn = NULL;
    c->job = NULL;
    int64_t took = clock_us() - w->started_us;
    loop->call_us += (took - loop->call_us) / 8;
    c->flags &= ~(C_JOB | C_IN_APP);
    if (c->state != CS_CLOSED && c->resp == RS_STREAM)
        response_abort(c);      /* left unfinished: the close delimits it */
    unpin(loop, w->shape);
    w->shape = -1;
    pool_kick(c);
}

int fw_pool_next(fw_loop *loop, fw_job *job)
{
    pthread_mutex_lock(&loop->mu);
    return pool_next_locked(loop, (fw_worker *)job);
}

/* fw_pool_next with the mutex taken; releases it. */
int pool_next_locked(fw_loop *loop, fw_worker *w)
{
    finish_job(w);
    /* The thread that just finished would take the next request without
     * sleeping, and get the interpreter lock back at once: ahead of the
     * threads whose (older) requests wait for that lock.  With short
     * calls that overtaking costs microseconds and saves a context
     * switch; with long ones (an app that computes) it made one request
     * in a hundred wait a hundred times its turn.  Then the thread sleeps
     * like the others and the loop hands the request over, so that it
     * queues for the lock behind them. */
    int others = loop->nworkers - loop->nidle - 1;
    if (!loop->pool_stop && (others == 0 || !calls_are_long(loop, others + 1)) &&
        take_queued(w)) {
        pthread_mutex_unlock(&loop->mu);
        return 1;               /* no sleep: the next one was waiting */
    }
    w->next_idle = loop->idle;
    loop->idle = w;
    loop->nidle++;
    if (loop->waitq_head != NULL)
        notify(loop);
    while (!w->assigned && !loop->pool_stop)
        pthread_cond_wait(&w->cv, &loop->mu);
    if (!w->assigned) {
        /* Stopping: leave the idle list. */
        fw_worker **p = &loop->idle;
        while (*p && *p != w)
            p = &(*p)->next_idle;
        if (*p) {
            *p = w->next_idle;
            loop->nidle--;
        }
        pthread_mutex_unlock(&loop->mu);
        return 0;
    }
    w->assigned = 0;
    pthread_mutex_unlock(&loop->mu);
    return 1;
}

/* The request of the thread behind `job` ran past the request timeout:
 * its client gets 503 and the connection closes; the thread's later calls
 * fail as if the client had gone.  (The thread itself cannot be stopped.)
 * Returns 1 when that happened, 0 when the request was over or answered. */
/* Has the thread's request run `age_us` without starting its response?
 * (A response under way, a stream for instance, shows progress itself.)
 * Under the mutex. */
static int overdue(const fw_worker *w, int64_t now, int64_t age_us)
{
    const fw_conn *c = w->job.conn;
    return c != NULL && c->state != CS_CLOSED && c->resp == RS_NONE &&
           !(c->flags & (C_EXPIRED | C_DEAD)) && now - w->started_us >= age_us;
}

int fw_pool_overdue(fw_loop *loop, int64_t age_us, fw_job **out, int max)
{
    int n = 0;
    int64_t now = clock_us();
    pthread_mutex_lock(&loop->mu);
    for (fw_worker *w = loop->workers; w && n < max; w = w->next_all)
        if (overdue(w, now, age_us))
            out[n++] = &w->job;
    pthread_mutex_unlock(&loop->mu);
    return n;
}

uint64_t fw_pool_conn_id(fw_loop *loop, fw_job *job)
{
    pthread_mutex_lock(&loop->mu);
    uint64_t id = job->conn ? job->conn->id : 0;
    pthread_mutex_unlock(&loop->mu);
    return id;
}

int fw_pool_expire(fw_loop *loop, fw_job *job, int64_t age_us)
{
    int done = 0;
    fw_worker *w = (fw_worker *)job;
    pthread_mutex_lock(&loop->mu);
    /* Checked again: the thread may have moved on to another request. */
    if (overdue(w, clock_us(), age_us)) {
        fw_conn *c = w->job.conn;
        c->flags |= C_EXPIRED;
        response_error(c, 503);
        c->resp = RS_DONE;
        pool_kick(c);
        done = 1;
    }
    pthread_mutex_unlock(&loop->mu);
    return done;
}

void fw_pool_stop(fw_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    loop->pool_stop = 1;
    for (fw_worker *w = loop->workers; w; w = w->next_all)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&loop->mu);
}

void fw_pool_leave(fw_loop *loop, fw_job *job)
{
    fw_worker *w = (fw_worker *)job;
    pthread_mutex_lock(&loop->mu);
    finish_job(w);
    loop->nworkers--;
    pthread_mutex_unlock(&loop->mu);
    fw_tls_worker = NULL;
}

/* Wait until the connection's output is below the low-water mark and no
 * file or in-place body is pending, or the connection is gone.  Under the
 * mutex, on the thread whose request it is. */
int pool_drain(fw_conn *c)
{
    fw_worker *w = c->job;
    pool_kick(c);
    for (;;) {
        if (c->state == CS_CLOSED || (c->flags & C_DEAD) || stop_passed(c))
            return -1;
        if (conn_out_pending(c) < FW_OUT_LOW && c->file == NULL &&
            c->ext == NULL)
            return 1;
        w->waiting = 1;
        pthread_cond_wait(&w->cv, &c->loop->mu);
        w->waiting = 0;
    }
}

/* Called by fw_loop_free once no thread is in the pool any more. */
void pool_free(fw_loop *loop)
{
    fw_worker *w = loop->workers;
    while (w) {
        fw_worker *next = w->next_all;
        pthread_cond_destroy(&w->cv);
        free(w->env);
        free(w->keys);
        free(w->body);
        free(w);
        w = next;
    }
    loop->workers = NULL;
    while (loop->q_head != NULL) {
        fw_queued *q = loop->q_head;
        loop->q_head = q->next;
        if (q->body_fd >= 0)
            close(q->body_fd);
        free(q);
    }
    loop->q_tail = NULL;
    if (loop->pool_io.fd >= 0 && loop->threaded)
        close(loop->pool_io.fd);
    loop->pool_io.fd = -1;
}
