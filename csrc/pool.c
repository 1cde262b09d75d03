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

/* May this connection's parsed request go to a thread now?  Only when one
 * is idle and nobody waits ahead of it. */
int pool_may_take(const fw_conn *c)
{
    const fw_loop *loop = c->loop;
    return loop->nidle > 0 &&
           (loop->waitq_head == NULL || (c->flags & C_WAKE));
}

/* Every thread is busy: the connection waits, in arrival order. */
void pool_wait(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->flags & C_WAITQ)
        return;
    c->flags |= C_WAITQ;
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

/*
 * Hand a request to an idle thread (pool_may_take said there is one).  The
 * values and the body are copied into the worker; the keys are the shape's,
 * pinned until the thread is done, or copied for FW_SHAPE_ONCE.  Returns -1
 * when memory ran out (the caller answers 500).
 */
int pool_dispatch(fw_conn *c, const char *env, size_t env_len,
                  const char *keys, size_t keys_len, const char *body,
                  size_t body_len, int body_fd, int in_flags, int shape)
{
    fw_loop *loop = c->loop;
    fw_worker *w = loop->idle;
    if (w == NULL)
        return -1;
    int pinned = shape >= 0 && shape < FW_SHAPES;
    if (grow(&w->env, &w->env_cap, env_len + 1) < 0 ||
        (!pinned && grow(&w->keys, &w->keys_cap, keys_len + 1) < 0) ||
        grow(&w->body, &w->body_cap, body_len + 1) < 0)
        return -1;
    memcpy(w->env, env, env_len);
    w->env[env_len] = '\0';
    fw_job *j = &w->job;
    j->env = w->env;
    j->env_len = env_len;
    if (pinned) {
        fw_shape *s = &loop->shapes[shape];
        s->refs++;
        j->keys = s->keys;
        j->keys_len = s->len;
        j->keys_gen = s->gen;
        w->shape = shape;
    } else {
        memcpy(w->keys, keys, keys_len);
        w->keys[keys_len] = '\0';
        j->keys = w->keys;
        j->keys_len = keys_len;
        j->keys_gen = 0;        /* names nothing: never cached */
        w->shape = -1;
    }
    if (body_len)
        memcpy(w->body, body, body_len);
    j->body = w->body;
    j->body_len = body_len;
    j->body_fd = body_fd;
    if (body_len || body_fd >= 0)
        in_flags |= FW_IN_BODY;
    j->flags = in_flags | (c->listener << 8) | (shape << 16);
    j->conn = c;
    c->job = w;
    c->flags |= C_IN_APP | C_JOB;
    c->flags &= ~C_WAKE;
    loop->idle = w->next_idle;
    loop->nidle--;
    w->next_idle = NULL;
    w->assigned = 1;
    pthread_cond_signal(&w->cv);
    return 0;
}

/* A thread waiting for this connection's output to drain may go on. */
void pool_writable(fw_conn *c)
{
    fw_worker *w = c->job;
    if (w != NULL && w->waiting)
        pthread_cond_signal(&w->cv);
}

/* Connections waiting for a thread get the idle ones, first come first. */
static void resume_waiting(fw_loop *loop)
{
    while (loop->nidle > 0 && loop->waitq_head != NULL) {
        fw_conn *c = loop->waitq_head;
        pool_unwait(c);
        c->flags |= C_WAKE;
        conn_run(c);
        c->flags &= ~C_WAKE;
    }
}

/* The loop's share of a turn: what app threads kicked, then the queue. */
void pool_run(fw_loop *loop)
{
    uint64_t junk;
    if (loop->pool_notified) {
        ssize_t r = read(loop->pool_io.fd, &junk, sizeof junk);
        (void)r;
        loop->pool_notified = 0;
    }
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
    c->flags &= ~(C_JOB | C_IN_APP);
    if (c->state != CS_CLOSED && c->resp == RS_STREAM)
        response_abort(c);      /* left unfinished: the close delimits it */
    if (w->shape >= 0) {
        loop->shapes[w->shape].refs--;
        w->shape = -1;
    }
    pool_kick(c);
}

int fw_pool_next(fw_loop *loop, fw_job *job)
{
    fw_worker *w = (fw_worker *)job;
    pthread_mutex_lock(&loop->mu);
    finish_job(w);
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
    if (loop->pool_io.fd >= 0 && loop->threaded)
        close(loop->pool_io.fd);
    loop->pool_io.fd = -1;
}
