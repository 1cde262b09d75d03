/*
 * conn.c - one connection's state machine.
 *
 * read -> parse head -> receive body -> hand over to Python -> write ->
 * keep-alive or close.  Input and output use the loop's shared buffers while
 * a connection is being served, and a connection keeps its own buffer only
 * when bytes are left over (a partial request, unsent output), so an idle
 * keep-alive connection holds no buffer at all.
 *
 * Here: a new connection and its close, reading, the PROXY header, the
 * head, the deadlines and the driver (conn_run).  The rest of a request's
 * path has files of its own: send.c (output), environ.c (the environ and
 * its shapes), body.c (request bodies), batch.c (handing requests to
 * Python, in batches or one by one, and the deferred answers).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"

/* Set while this thread is inside an inline app call (one of the
 * fw_py_* callbacks that hand over requests or ask for output): response
 * calls from any other thread that is not an app thread of the pool are
 * refused before the connection pointer is even read. */
__thread int fw_tls_in_call;

/* ---- creation and teardown ---- */

static void format_peer(fw_conn *c, const void *sap, unsigned salen)
{
    const struct sockaddr *sa = sap;
    c->raddr[0] = '\0';
    c->rport[0] = '\0';
    if (salen >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = sap;
        inet_ntop(AF_INET, &in->sin_addr, c->raddr, sizeof c->raddr);
        snprintf(c->rport, sizeof c->rport, "%u", ntohs(in->sin_port));
        c->flags |= C_TCP;
    } else if (salen >= sizeof(struct sockaddr_in6) &&
               sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sap;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->raddr, sizeof c->raddr);
        snprintf(c->rport, sizeof c->rport, "%u", ntohs(in6->sin6_port));
        c->flags |= C_TCP;
    }
}

fw_conn *conn_new(fw_loop *loop, int fd, int listener, const void *sa,
                  unsigned salen)
{
    fw_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->io.kind = IO_CONN;
    c->io.fd = fd;
    c->loop = loop;
    c->listener = listener;
    c->id = ++loop->next_id;
    c->state = CS_HEAD;
    c->flags = C_READABLE | C_WRITABLE;
    /* TCP_NODELAY comes from the listening socket.  epoll hears of the
     * connection only if it outlives its first turn (conn_run), so a
     * request answered on a closing connection costs no epoll_ctl. */
    c->flags |= C_UNWATCHED;
    /* The handshake is timed as the head is: both come from the accept. */
    c->head_since = loop_now(loop);
    if (loop->tls_ctx[listener] && tls_start(c, loop->tls_ctx[listener]) < 0) {
        free(c);
        return NULL;
    }
    format_peer(c, sa, salen);
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->nconns++;
    loop_timer_set(loop, c, T_HEAD);
    return c;
}

/* Give a buffer back: the loop's shared one is marked free, an own one
 * is freed. */
static void buf_release(fw_buf *b, int borrowed, int *busy)
{
    if (borrowed)
        *busy = 0;
    else
        free(b->data);
    memset(b, 0, sizeof *b);
}

void conn_close(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->state == CS_CLOSED)
        return;
    /* Inline, Python keeps a streamed response's state until told; a
     * thread finds out from its next call, or is woken if it waits. */
    int streaming = c->resp == RS_STREAM;
    int python_holds = streaming && !(c->flags & C_JOB);
    if (loop->alog)
        alog_end(c);            /* a response that closes, or one cut short */
    if (loop->mdst)
        metrics_end(c);
    c->state = CS_CLOSED;
    pool_unwait(c);
    if (c->flags & C_JOB)
        pool_writable(c);
    loop_timer_clear(loop, c);
    if (c->out_mode == OUT_CLOSE && (streaming || output_waits(c)))
        c->flags |= C_RESET;    /* a FIN would look like the body's end */
    if (c->io.fd >= 0 && (c->flags & C_RESET)) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (c->tls) {
        /* A clean end says close_notify first (a cut one must not look
         * like a whole response to the client either). */
        if (c->io.fd >= 0 && !(c->flags & (C_RESET | C_DEAD)))
            tls_close_notify(c);
        tls_free(c);
    }
    if (c->io.fd >= 0)
        close(c->io.fd);
    c->io.fd = -1;
    buf_release(&c->in, c->flags & C_IN_BORROWED, &loop->rbuf_busy);
    buf_release(&c->out, c->flags & C_OUT_BORROWED, &loop->wbuf_busy);
    c->flags &= ~(C_IN_BORROWED | C_OUT_BORROWED);
    body_free(c->body);
    c->body = NULL;
    free(c->file);              /* the file descriptor is Python's */
    c->file = NULL;
    free(c->ext);               /* and so is the memory it points to */
    c->ext = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = loop->zombies;
    loop->zombies = c;
    loop->nconns--;
    c->resp = RS_NONE;
    if (python_holds)
        fw_py_closed(loop->userdata, c->id);
}

/* ---- buffers and reading ---- */

/* After serving: what is left in a shared buffer moves to an own one. */
static void unborrow(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->flags & C_IN_BORROWED) {
        size_t left = c->in.len - c->in.off;
        char *own = NULL;
        if (left) {
            size_t cap = left > FW_OWN_IN_MIN ? left : FW_OWN_IN_MIN;
            own = malloc(cap);
            if (own == NULL) {
                c->flags |= C_DEAD;
            } else {
                memcpy(own, c->in.data + c->in.off, left);
                c->in.cap = cap;
            }
        }
        loop->rbuf_busy = 0;
        c->flags &= ~C_IN_BORROWED;
        c->in.data = own;
        c->in.off = 0;
        c->in.len = own ? left : 0;
        if (own == NULL)
            c->in.cap = 0;
    } else if (c->in.data && c->in.off == c->in.len) {
        free(c->in.data);
        memset(&c->in, 0, sizeof c->in);
    }
    conn_out_settle(c);
}

uint64_t fw_conn_id(fw_conn *c)
{
    return c->id;
}

fw_extra *fw_request_extra(fw_conn *c)
{
    return &c->loop->extra;
}

/* Read what the socket has.  Returns bytes read, 0 when nothing new. */
static ssize_t conn_read(fw_conn *c)
{
    fw_loop *loop = c->loop;
    fw_buf *b = &c->in;
    if (b->data == NULL) {
        if (loop->rbuf_busy)
            return 0;           /* cannot happen: one conn runs at a time */
        loop->rbuf_busy = 1;
        c->flags |= C_IN_BORROWED;
        b->data = loop->rbuf;
        b->cap = FW_RBUF_SIZE;
        b->off = b->len = 0;
    }
    if (b->off == b->len) {
        b->off = b->len = 0;
    } else if (b->off > 0 && b->cap - b->len < 4096) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap == b->len) {
        /* Grow within the head limit; the parser rejects anything beyond. */
        size_t cap = b->cap * 2;
        size_t most = (size_t)loop->cfg.limits.head + FW_RBUF_SIZE;
        if (cap > most)
            cap = most;
        if (cap <= b->cap)
            return 0;
        char *nd = malloc(cap);
        if (nd == NULL) {
            c->flags |= C_DEAD;
            return 0;
        }
        memcpy(nd, b->data, b->len);
        if (c->flags & C_IN_BORROWED) {
            loop->rbuf_busy = 0;
            c->flags &= ~C_IN_BORROWED;
        } else {
            free(b->data);
        }
        b->data = nd;
        b->cap = cap;
    }
    size_t room = b->cap - b->len;
    for (;;) {
        /* Lingering discards what comes: a TLS client's records are
         * dropped undeciphered. */
        int tls = c->tls && c->state != CS_LINGER;
        ssize_t n = tls ? tls_read(c, b->data + b->len, room)
                        : recv(c->io.fd, b->data + b->len, room, 0);
        if (n > 0) {
            b->len += (size_t)n;
            c->loop->m.bytes_in += (uint64_t)n;
            /* A short read drained the socket: with edge triggering the
             * next bytes bring a new event, so no EAGAIN round trip.  Not
             * after a hang-up: that edge has come already, and only reading
             * on to EOF or the error finds it.  Not over TLS: a read
             * returns one record, and others may wait in the socket or in
             * OpenSSL. */
            if (!tls && (size_t)n < room && !(c->flags & C_HUP))
                c->flags &= ~C_READABLE;
            return n;
        }
        if (n == 0) {
            c->flags = (c->flags & ~C_READABLE) | C_PEER_EOF;
            return 0;
        }
        if (errno == EINTR)
            continue;
        c->flags &= ~C_READABLE;
        if (errno != EAGAIN) {
            if (c->tls_want & TLS_PLAIN_HTTP)
                tls_plain_refusal(c);
            c->flags |= C_DEAD;
        }
        return 0;
    }
}

/* ---- requests ---- */

/* The response is finished: back to reading, or on to closing. */
static void request_done(fw_conn *c)
{
    if (c->loop->alog)
        alog_end(c);
    if (c->loop->mdst)
        metrics_end(c);
    c->resp = RS_NONE;
    c->flags |= C_SERVED;
    c->flags &= ~(C_REQ_HEAD | C_REQ_HTTP10);
    c->state = CS_HEAD;
    c->scanned = 0;
}

/* Answer with an error status and close (after lingering). */
void fail(fw_conn *c, int status)
{
    /* At debug level only (a flood of bad requests must not become a
     * flood of log calls): who was refused and with what. */
    if (c->loop->mdst)
        metrics_refused(c->loop, status);
    if (c->loop->cfg.log_refusals)
        loop_log(c->loop, FW_LOG_DEBUG, "refused a request from %s%s%s: %d %s",
                 c->raddr[0] ? c->raddr : "a unix socket peer", c->rport[0] ? ":" : "",
                 c->rport, status, response_reason(status));
    response_error(c, status);
    c->state = CS_APP;
    c->resp = RS_DONE;
}

/* Start on a parsed head.  Returns 0 to go on, -1 to stop processing. */
static int on_head(fw_conn *c, int hlen)
{
    fw_loop *loop = c->loop;
    const fw_head *h = &loop->head;
    const char *buf = c->in.data + c->in.off;
    int in_flags = 0;
    c->flags &= ~(C_KEEPALIVE | C_REQ_HEAD | C_REQ_HTTP10);
    c->head_since = 0;          /* the head is complete: no more timing */
    if (h->flags & FW_REQ_KEEPALIVE)
        c->flags |= C_KEEPALIVE;
    if (h->flags & FW_REQ_HEAD) {
        c->flags |= C_REQ_HEAD;
        in_flags |= FW_IN_HEAD;
    }
    if (!(h->flags & FW_REQ_HTTP11)) {
        c->flags |= C_REQ_HTTP10;
        in_flags |= FW_IN_HTTP10;
    }
    if (loop->alog)
        alog_begin(c, buf, h);  /* the head's bytes are reused after this */
    if (loop->mdst) {
        if (c->req_us == 0)
            loop->m.active++;
        c->req_us = metrics_now_us();
    }
    size_t keys_len;
    long env_len = build_env(c, buf, h, &in_flags, &keys_len);
    if (env_len < 0) {
        fail(c, (int)-env_len);
        return -1;
    }
    c->in.off += (size_t)hlen;
    int chunked = h->flags & FW_REQ_CHUNKED;
    int64_t cl = h->content_length;
    if (!chunked && cl > loop->cfg.max_body_size) {
        fail(c, 413);           /* before reading a byte of the body */
        return -1;
    }
    size_t avail = c->in.len - c->in.off;
    if (!chunked && cl <= 0) {
        int fresh;
        int shape = shape_of(loop, loop->keys, keys_len, &fresh);
        if (enqueue(c, env_len, in_flags, shape, fresh) == 0)
            return 0;
        dispatch_shaped(c, loop->env, (size_t)env_len, loop->keys, keys_len,
                        NULL, 0, -1, in_flags, shape, fresh);
        return 0;
    }
    if (!chunked && (int64_t)avail >= cl &&
        cl <= loop->cfg.spool_threshold) {
        /* The whole body is already here: hand it over in place. */
        const char *body = c->in.data + c->in.off;
        c->in.off += (size_t)cl;
        dispatch(c, loop->env, (size_t)env_len, loop->keys, keys_len, body,
                 (size_t)cl, -1, in_flags);
        return 0;
    }
    fw_body *b = calloc(1, sizeof *b);
    char *env = malloc((size_t)env_len + 1);
    char *keys = malloc(keys_len + 1);
    if (b == NULL || env == NULL || keys == NULL) {
        free(b);
        free(env);
        free(keys);
        fail(c, 500);
        return -1;
    }
    memcpy(env, loop->env, (size_t)env_len + 1);
    memcpy(keys, loop->keys, keys_len + 1);
    b->env = env;
    b->env_len = (size_t)env_len;
    b->keys = keys;
    b->keys_len = keys_len;
    b->in_flags = in_flags;
    b->chunked = chunked != 0;
    b->expected = chunked ? -1 : cl;
    b->fd = -1;
    c->body = b;
    c->state = CS_BODY;
    if ((h->flags & FW_REQ_CONTINUE) && avail == 0)
        conn_out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    loop_timer_set(loop, c, T_BODY);
    return 0;
}

/* Whether the connection's own peer is one --proxy-allow-from names (unix
 * socket peers always are: the socket file's permissions say who). */
static int proxy_peer_allowed(const fw_loop *loop, const fw_conn *c)
{
    if (loop->cfg.proxy_allow_any || c->raddr[0] == '\0')
        return 1;
    unsigned char a[16];
    int fam = strchr(c->raddr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, c->raddr, a) != 1)
        return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && memcmp(a, mapped, 12) == 0) {
        memmove(a, a + 12, 4);  /* an IPv4 peer of a dual-stack socket */
        fam = AF_INET;
    }
    for (int i = 0; i < loop->cfg.proxy_allow_count; i++) {
        const fw_net *n = &loop->cfg.proxy_allow[i];
        int bits = n->bits;
        if (n->family != fam || bits < 0 || bits > (fam == AF_INET ? 32 : 128))
            continue;
        int whole = bits / 8, rest = bits % 8;
        if (memcmp(a, n->addr, (size_t)whole) != 0)
            continue;
        if (rest && ((a[whole] ^ n->addr[whole]) & (0xff00 >> rest) & 0xff))
            continue;
        return 1;
    }
    return 0;
}

/* The PROXY header a load balancer sends first: the client it names
 * becomes REMOTE_ADDR.  Returns 1 when read, 0 when more must come, -1
 * when it is missing or malformed (the connection is closed without a
 * word: there is no HTTP client to answer yet). */
static int read_proxy_header(fw_conn *c, size_t avail)
{
    fw_loop *loop = c->loop;
    fw_proxy px;
    int r = fw_parse_proxy(c->in.data + c->in.off, avail, &px);
    if (r == 0) {
        if (c->head_since == 0)
            c->head_since = loop_now(loop);  /* header_timeout covers it */
        return 0;
    }
    if (r < 0) {
        if (loop->cfg.log_refusals)
            loop_log(loop, FW_LOG_DEBUG, "closed a connection from %s%s%s: no valid "
                     "PROXY header", c->raddr[0] ? c->raddr : "a unix socket peer",
                     c->rport[0] ? ":" : "", c->rport);
        c->flags |= C_DEAD;
        return -1;
    }
    c->in.off += (size_t)r;
    c->flags |= C_PROXY_DONE;
    if (!proxy_peer_allowed(loop, c)) {
        /* As gunicorn answers a PROXY header from a peer outside
         * proxy_allow_ips: 403, so that a misconfigured balancer shows. */
        fail(c, 403);
        return -1;
    }
    if (px.family) {
        memcpy(c->raddr, px.addr, sizeof c->raddr);
        memcpy(c->rport, px.port, sizeof c->rport);
    } else {
        c->flags |= C_PROXY_ANON;
    }
    return 1;
}

/* Parse and answer what is buffered.  Returns 1 if progress was made. */
static int process_input(fw_conn *c)
{
    fw_loop *loop = c->loop;
    int progress = 0;
    while (!(c->flags & (C_DEAD | C_CLOSE_AFTER)) &&
           conn_out_pending(c) < FW_OUT_HIGH) {
        size_t avail = c->in.len - c->in.off;
        if (c->state == CS_HEAD) {
            if (avail == 0)
                break;
            if (loop->cfg.proxy_protocol && !(c->flags & C_PROXY_DONE)) {
                int r = read_proxy_header(c, avail);
                if (r < 0 && !(c->flags & C_DEAD))
                    progress = 1;   /* refused with a 403 to send */
                if (r <= 0)
                    break;
                continue;
            }
            int r = fw_parse_head(c->in.data + c->in.off, avail,
                                  &loop->cfg.limits, &loop->head,
                                  &c->scanned);
            if (r == 0) {
                /* A partial head: its deadline runs from its first bytes
                 * (set_rest_timer arms it; a complete head never needs
                 * it, which saves the list churn). */
                if (c->head_since == 0)
                    c->head_since = loop_now(loop);
                break;
            }
            if (r > 0 && loop->threaded && !pool_may_take(c)) {
                /* Every app thread is busy: the request waits, unparsed,
                 * and is parsed again once a thread is free. */
                pool_wait(c);
                break;
            }
            progress = 1;
            if (r < 0) {
                fail(c, -r);
                break;
            }
            if (on_head(c, r) < 0)
                break;
        } else if (c->state == CS_BODY) {
            if (!c->body->ready) {
                if (avail == 0)
                    break;
                progress = 1;
                int r = body_feed(c);
                if (r < 0) {
                    body_free(c->body);
                    c->body = NULL;
                    fail(c, -r);
                    break;
                }
                c->flags |= C_BODY_MOVED;
                if (r == 0)
                    break;
                c->body->ready = 1;
            }
            if (loop->threaded && !pool_may_take(c)) {
                pool_wait(c);   /* the whole body is here; it waits */
                break;
            }
            progress = 1;
            body_dispatch(c);
        } else {
            break;
        }
        if (c->state == CS_APP && c->resp == RS_DONE &&
            !(c->flags & (C_CLOSE_AFTER | C_JOB)))
            request_done(c);
        if (c->state != CS_HEAD)
            break;              /* streaming: wait for the output to drain */
    }
    return progress;
}

/* ---- the driver ---- */

/*
 * The deadline a connection waits on once it is left alone, decided here
 * and nowhere else.  While output waits, the write deadline rules, and
 * only output actually sent moves it (conn_flush): no input can.  A head
 * is timed from its first bytes, however many more trickle in; a body
 * from its last piece; an idle connection from the end of its response.
 */
static void set_rest_timer(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->state == CS_QUEUED) {
        /* Answered within this turn; what is buffered waits for that. */
    } else if (output_waits(c)) {
        if (c->timer != T_WRITE)
            write_deadline(c);
    } else if (c->flags & C_WAITQ) {
        /* The request came in time; the wait for a thread is ours. */
        if (c->timer != T_NONE)
            loop_timer_clear(loop, c);
    } else if (c->state == CS_HEAD) {
        if (c->in.len == c->in.off && (c->flags & C_SERVED)) {
            if (c->timer != T_IDLE)
                loop_timer_set(loop, c, T_IDLE);
        } else {
            if (c->head_since == 0)
                c->head_since = loop_now(loop);
            int64_t due = c->head_since + loop->timeout_ms[T_HEAD];
            if (c->timer != T_HEAD || c->deadline != due)
                loop_timer_at(loop, c, T_HEAD, due);
        }
    } else if (c->state == CS_BODY) {
        if (c->timer != T_BODY || (c->flags & C_BODY_MOVED))
            loop_timer_set(loop, c, T_BODY);
    } else if (c->state == CS_APP && c->timer != T_NONE) {
        /* Nothing waits to be sent (that case is above): a write deadline
         * left from output sent since would cut an app that is merely
         * slow to produce more (a stream's next event, a pipelined
         * request's long call). */
        loop_timer_clear(loop, c);
    }
    c->flags &= ~C_BODY_MOVED;
}

/* Whether a closing connection lingers: after an error, so that the
 * client sees the response (its unread input would turn the close into a
 * reset). */
static int error_linger(const fw_conn *c)
{
    return (c->flags & (C_ERROR_CLOSE | C_PEER_EOF | C_DEAD)) == C_ERROR_CLOSE;
}

/* Start closing: linger after errors so the client sees the response.
 * Over TLS the end is said with close_notify first; when the socket has
 * no room for it yet, the connection lingers until it has (a close now
 * would lose it, and the client could not tell the end from a cut). */
static void begin_close(fw_conn *c)
{
    int waits = !(c->flags & (C_DEAD | C_RESET)) && tls_close_notify(c);
    if (waits || error_linger(c)) {
        if (waits)
            c->flags &= ~C_WRITABLE;    /* the next EPOLLOUT sends it */
        else
            shutdown(c->io.fd, SHUT_WR);
        c->state = CS_LINGER;
        c->in.off = c->in.len;
        c->scanned = 0;
        loop_timer_set(c->loop, c, T_LINGER);
        return;
    }
    conn_close(c);
}


/* Whether queued output may wait: while the connection's next request
 * waits in the batch (answered within this turn), or, before parsing, when
 * more of its input is buffered (the next request may join it).  Its
 * response then joins this output, and one send carries both: pipelined
 * requests cost one send, not one each.  `more_input` is 0 where nothing
 * parses afterwards, so that output never waits on a partial request. */
static int flush_later(const fw_conn *c, int more_input)
{
    if (conn_out_pending(c) >= FW_OUT_HIGH || c->ext || c->file)
        return 0;
    if (c->state == CS_QUEUED)
        return 1;
    /* Only where parsing comes next: a response that closes the
     * connection, or one an app thread still owns, goes out now. */
    return more_input && c->in.off < c->in.len &&
           !(c->flags & (C_CLOSE_AFTER | C_JOB)) &&
           (c->state == CS_HEAD || (c->state == CS_APP && c->resp == RS_DONE));
}

void conn_run(fw_conn *c)
{
    fw_loop *loop = c->loop;
    for (long rounds = 0; rounds < (1L << 20); rounds++) {
        if (c->state == CS_CLOSED)
            return;
        if (c->state == CS_LINGER) {
            /* A close_notify that waited for room goes out first; then
             * the connection closes, or lingers on after an error. */
            if ((c->tls_want & TLS_NOTIFY_WAITS) && (c->flags & C_WRITABLE)) {
                if (tls_close_notify(c)) {
                    c->flags &= ~C_WRITABLE;
                } else if (!error_linger(c)) {
                    conn_close(c);
                    return;
                } else {
                    shutdown(c->io.fd, SHUT_WR);
                }
            }
            /* Discard what the client still sends, so that the response
             * is not lost to a reset; but only so much, and only until
             * the deadline, read afresh: a flood must not hold the loop.
             * (A client that shut down its side may still read: its end
             * does not cut a close_notify that waits.) */
            c->in.off = c->in.len;
            ssize_t n = (c->flags & C_READABLE) ? conn_read(c) : 0;
            if (n > 0)
                c->scanned += (size_t)n;
            c->in.off = c->in.len;
            int eof = (c->flags & C_PEER_EOF) &&
                      !(c->tls_want & TLS_NOTIFY_WAITS);
            if (eof || (c->flags & C_DEAD) ||
                c->scanned >= FW_LINGER_MAX || loop_now(loop) >= c->deadline) {
                conn_close(c);
                return;
            }
            if (!(c->flags & C_READABLE))
                break;
            continue;
        }
        if (!flush_later(c, 1) && !defer(c))
            conn_flush(c);
        if (c->flags & C_DEAD) {
            conn_close(c);
            return;
        }
        if (c->state == CS_APP) {
            if (c->flags & C_JOB) {
                if ((c->flags & C_EXPIRED) && conn_out_pending(c) == 0) {
                    /* Its 503 is out; the thread keeps running without
                     * it.  Closed as after any error (the client's unread
                     * input must not turn the 503 into a reset). */
                    begin_close(c);
                    if (c->state != CS_LINGER)
                        return;
                    continue;
                }
                /* An app thread has it: wake it if it waits for room. */
                if (conn_out_pending(c) < FW_OUT_LOW && !c->file && !c->ext)
                    pool_writable(c);
                break;
            }
            if (c->resp == RS_STREAM && !c->file && !c->ext &&
                conn_out_pending(c) < FW_OUT_LOW) {
                c->flags |= C_IN_APP;
                send_deferred(loop, 0);
                fw_tls_in_call++;
                fw_py_writable(loop->userdata, c, c->id);
                fw_tls_in_call--;
                c->flags &= ~C_IN_APP;
                if (c->state == CS_CLOSED)
                    return;
                continue;       /* flush what it produced */
            }
            if (c->resp == RS_DONE && !c->file && !c->ext) {
                if (c->flags & C_CLOSE_AFTER) {
                    if (conn_out_pending(c) == 0) {
                        begin_close(c);
                        if (c->state != CS_LINGER)
                            return;
                        continue;
                    }
                    break;
                }
                request_done(c);
                continue;
            }
            break;
        }
        if (c->flags & C_WAITQ)
            break;              /* nothing is parsed until a thread is free */
        if (process_input(c))
            continue;
        if (c->state == CS_HEAD || c->state == CS_BODY) {
            if (c->flags & C_PEER_EOF) {
                /* Nothing more will come: a partial request is dropped,
                 * once what is queued is sent (output deferred while
                 * requests were parsed goes now). */
                if (!flush_later(c, 0))
                    conn_flush(c);
                if (!output_waits(c)) {
                    conn_close(c);
                    return;
                }
                break;
            }
            if ((c->flags & C_READABLE) && conn_out_pending(c) < FW_OUT_HIGH &&
                conn_read(c) > 0)
                continue;
            if (c->flags & C_DEAD)
                continue;
            if (c->flags & C_PEER_EOF)
                continue;
        }
        break;
    }
    if (c->state == CS_CLOSED)
        return;
    if (!flush_later(c, 0) && !defer(c))
        conn_flush(c);
    c->flags &= ~C_ANSWERED;
    if (c->flags & C_DEAD) {
        conn_close(c);
        return;
    }
    if (c->flags & C_DEFERRED) {
        /* The rest (timers, epoll) once it is sent; the shared buffers
         * are given back now. */
        unborrow(c);
        return;
    }
    /* Retiring, a connection whose last answer promised keep-alive stays
     * until its next request (answered with close) or its idle deadline:
     * the client may be sending right now. */
    if (loop->stopping && !loop->gentle && c->state == CS_HEAD &&
        c->in.len == c->in.off && conn_out_pending(c) == 0) {
        conn_close(c);
        return;
    }
    set_rest_timer(c);
    unborrow(c);
    if ((c->flags & C_UNWATCHED) && c->state != CS_QUEUED) {
        /* Edge-triggered, registered once for good: adding reports what
         * is ready already, so nothing that came meanwhile is missed. */
        struct epoll_event ev = {
            .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            .data.ptr = c,
        };
        c->flags &= ~C_UNWATCHED;
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, c->io.fd, &ev) < 0) {
            loop_log(loop, FW_LOG_ERROR, "epoll_ctl: %s", strerror(errno));
            conn_close(c);
        }
    }
}

void conn_event(fw_conn *c, uint32_t events)
{
    if (c->state == CS_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= C_READABLE;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= C_HUP;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->flags |= C_WRITABLE;
    if (c->tls_want & (TLS_READ_WANTS_OUT | TLS_WRITE_WANTS_IN)) {
        /* OpenSSL waited for the other direction: its readiness is this
         * direction's too. */
        if ((c->tls_want & TLS_READ_WANTS_OUT) && (c->flags & C_WRITABLE)) {
            c->tls_want &= ~TLS_READ_WANTS_OUT;
            c->flags |= C_READABLE;
        }
        if ((c->tls_want & TLS_WRITE_WANTS_IN) && (c->flags & C_READABLE)) {
            c->tls_want &= ~TLS_WRITE_WANTS_IN;
            c->flags |= C_WRITABLE;
        }
    }
    conn_run(c);
}

void conn_timeout(fw_conn *c)
{
    if (c->state == CS_CLOSED)
        return;
    if (output_waits(c) &&
        (uint64_t)kernel_queue(c) + FW_WRITE_PROGRESS <= c->kernel_queue) {
        /* The client took a good part of what the kernel held, just not
         * enough for the kernel to ask for more (its buffer can hold
         * megabytes): it is reading, slowly.  The deadline measures from
         * now.  (A few KiB taken into a stalled peer's receive window is
         * not reading.) */
        write_deadline(c);
        return;
    }
    if (output_waits(c)) {
        /* The client takes no output: a 408 behind it would never be
         * read, and would only buy it another write timeout. */
        loop_log(c->loop, FW_LOG_WARNING,
                 "closing a connection whose client stopped reading");
        conn_close(c);
        return;
    }
    if ((c->state == CS_HEAD && c->in.len > c->in.off) ||
        c->state == CS_BODY) {
        /* A request was under way: say why it ends. */
        body_free(c->body);
        c->body = NULL;
        c->in.off = c->in.len;
        fail(c, 408);
        conn_run(c);
        return;
    }
    if (c->resp == RS_STREAM)
        loop_log(c->loop, FW_LOG_WARNING,
                 "closing a connection whose client stopped reading");
    conn_close(c);
}
