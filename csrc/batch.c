/*
 * batch.c - handing requests to Python: one by one, in batches, and the
 * answers deferred to the end of the turn.
 *
 * A request without a body, of a shape Python knows, waits in the loop's
 * batch (enqueue) and is answered with the others of its round in one
 * call (batch_round); any other is handed over on its own (dispatch), to
 * an app thread in threaded mode.  A small answer given inline may wait
 * for the turn's burst of sends (defer).  The master is told which call
 * the loop is in, and a call that held the loop too long is logged.  A
 * connection's state is changed here only to hand it over (CS_QUEUED,
 * CS_APP); what it does next is conn_run's.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"

/* ---- request dispatch ---- */

#define FW_SLOW_CALL_MS 1000    /* an inline app call this long is named */
#define FW_SLOW_EVERY_MS 60000  /* at most once a minute */

/* "METHOD /path" of a request, for the log and the master's slot:
 * REQUEST_METHOD is the first value unless it travels in the keys
 * ("REQUEST_METHOD=GET"), and PATH_INFO comes next. */
static void request_name(const char *keys, const char *env, size_t env_len,
                         char *out, size_t cap)
{
    const char *v = env, *end = env + env_len;
    const char *method;
    size_t mlen;
    if (strncmp(keys, "REQUEST_METHOD=", 15) == 0) {
        method = keys + 15;
        mlen = strnlen(method, 32);
    } else {
        method = v;
        mlen = strnlen(v, (size_t)(end - v));
        v += mlen < (size_t)(end - v) ? mlen + 1 : (size_t)(end - v);
    }
    size_t plen = v < end ? strnlen(v, (size_t)(end - v)) : 0;
    /* The path is percent-decoded: a client's %0d%0a must not start a
     * line of its own in the log.  Control bytes and bytes past ASCII are
     * written \xNN, and so is the backslash. */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return;
    for (int part = 0; part < 2; part++) {
        const char *p = part ? v : method;
        size_t n = part ? (plen > 200 ? 200 : plen) : (mlen > 32 ? 32 : mlen);
        if (part && o + 1 < cap)
            out[o++] = ' ';
        for (size_t i = 0; i < n && o + 1 < cap; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
                out[o++] = (char)ch;
            } else if (o + 4 < cap) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[ch >> 4];
                out[o++] = hex[ch & 15];
            } else {
                break;
            }
        }
    }
    out[o] = '\0';
}

/* The environ values of the batch's request `i`: its slice of batch_env
 * (each request's values follow the one before, each value ends in a
 * NUL). */
static const char *batch_values(const fw_loop *loop, int i, size_t *len)
{
    const char *v = loop->batch_env, *end = v + loop->batch_env_len;
    for (int j = 0; j < i; j++)
        for (int k = 0; k < loop->batch_counts[j] && v < end; k++)
            v += strnlen(v, (size_t)(end - v)) + 1;
    if (v > end)
        v = end;
    *len = (size_t)(end - v);
    return v;
}

/*
 * Inline, the app runs on the loop's thread: a call that blocks holds up
 * every other client.  Say so (once a minute at most), naming the request
 * when there was one, and what to do about it.  `keys` and `env` are one
 * request's (NULL for a round of `n` requests together).
 */
static void note_slow_call(fw_loop *loop, int64_t began, const char *keys,
                           const char *env, size_t env_len, int n)
{
    int64_t now = loop_clock_ms();
    if (now - began < FW_SLOW_CALL_MS ||
        (loop->slow_logged && now - loop->slow_logged < FW_SLOW_EVERY_MS))
        return;
    loop->slow_logged = now;
    char name[300] = "?";
    char what[400];
    if (n == 1) {
        request_name(keys, env, env_len, name, sizeof name);
        snprintf(what, sizeof what, "an app call (%s) held the event loop "
                 "for %.1f s", name, (double)(now - began) / 1000);
    } else {
        /* A round's requests are answered one after the other: the
         * slowest is the one whose answer came longest after the one
         * before it (round_slowest, see leave() in response.c). */
        for (int i = 0; i < n; i++) {
            if (loop->batch_conns[i] == loop->round_slowest) {
                size_t len;
                const char *v = batch_values(loop, i, &len);
                int shape = loop->batch_flags[i] >> 16;
                request_name(loop->shapes[shape].keys, v, len, name, sizeof name);
                break;
            }
        }
        snprintf(what, sizeof what, "a round of %d requests took %.1f s on "
                 "the event loop (the slowest, %.1f s: %s)", n,
                 (double)(now - began) / 1000,
                 (double)loop->round_slowest_ms / 1000, name);
    }
    loop_log(loop, FW_LOG_WARNING,
             "%s: every other client waited meanwhile; an app that waits "
             "(on a database, another service) should run with --threads N",
             what);
}

/* Tell the master which inline app call the loop is in, and since when:
 * a loop stuck in it past --timeout is named in the log before it is
 * killed.  A round names its first request. */
static void beat_call(fw_loop *loop, int64_t began, const char *keys,
                      const char *env, size_t env_len, int n)
{
    fw_beat *b = loop->beat;
    request_name(keys, env, env_len, b->request, sizeof b->request);
    b->round = n;
    b->call_ms = began;
}

void dispatch(fw_conn *c, const char *env, size_t env_len,
              const char *keys, size_t keys_len,
              const char *body, size_t body_len, int body_fd,
              int in_flags)
{
    int fresh;
    int shape = shape_of(c->loop, keys, keys_len, &fresh);
    dispatch_shaped(c, env, env_len, keys, keys_len, body, body_len, body_fd,
                    in_flags, shape, fresh);
}

/* Call Python for one request whose keys are shape number `shape`. */
void dispatch_shaped(fw_conn *c, const char *env, size_t env_len,
                     const char *keys, size_t keys_len,
                     const char *body, size_t body_len, int body_fd,
                     int in_flags, int shape, int fresh)
{
    fw_loop *loop = c->loop;
    if (shape < 0) {
        if (body_fd >= 0)
            close(body_fd);
        fail(c, 500);
        return;
    }
    c->state = CS_APP;
    c->resp = RS_NONE;
    c->out_mode = 0;
    c->resp_left = -1;
    loop->served++;
    if (c->timer != T_WRITE)    /* output still waiting keeps its deadline */
        loop_timer_clear(loop, c);
    if (loop->threaded) {
        /* To an app thread; the loop goes on at once. */
        if (pool_dispatch(c, env, env_len, keys, keys_len, body, body_len,
                          body_fd, in_flags, shape) < 0) {
            if (body_fd >= 0)
                close(body_fd);
            fail(c, 500);
        }
        return;
    }
    c->flags |= C_IN_APP;
    loop->extra.keys = keys;
    loop->extra.keys_len = keys_len;
    loop->extra.body = body;
    loop->extra.body_len = body_len;
    loop->extra.body_fd = body_fd;
    if (fresh)
        in_flags |= FW_IN_FRESH;
    if (body_len || body_fd >= 0)
        in_flags |= FW_IN_BODY;
    send_deferred(loop, 0);
    int64_t began = loop_clock_ms();
    if (loop->beat)
        beat_call(loop, began, keys, env, env_len, 1);
    fw_tls_in_call++;
    fw_py_request(loop->userdata, c, env, env_len,
                  in_flags | (c->listener << 8) | (shape << 16));
    fw_tls_in_call--;
    if (loop->beat)
        loop->beat->call_ms = 0;
    note_slow_call(loop, began, keys, env, env_len, 1);
    c->flags &= ~C_IN_APP;
    if (c->resp == RS_NONE && !(c->flags & C_DEAD)) {
        /* Python produced no response at all: never leave a client
         * waiting. */
        loop_log(loop, FW_LOG_ERROR, "no response was produced");
        response_error(c, 500);
        c->resp = RS_DONE;
    }
    if (c->resp == RS_DONE)
        c->flags |= C_ANSWERED;
}

/*
 * Gather a request without a body for the batch handed to Python once the
 * epoll events are handled: one crossing, one lock of the interpreter and
 * one split of the values for them all.  A connection has at most one
 * request in a batch (the next one it has buffered waits for the next
 * round), and only requests of a known shape are gathered.  Returns -1
 * when the request must be dispatched now.
 */
static void batch_round(fw_loop *loop);

int enqueue(fw_conn *c, long env_len, int in_flags, int shape,
            int fresh)
{
    fw_loop *loop = c->loop;
    int n = loop->batch_n;
    /* The values follow the block so far after a NUL separator. */
    size_t sep = n > 0;
    if (loop->threaded || shape < 0 || shape >= FW_SHAPES || fresh ||
        loop->batch_closed ||
        n == FW_BATCH ||
        !fw_fits(loop->batch_env_len, FW_BATCH_ENV, sep + (size_t)env_len))
        return -1;
    size_t at = loop->batch_env_len + sep;
    if (sep)
        loop->batch_env[at - 1] = '\0';
    memcpy(loop->batch_env + at, loop->env, (size_t)env_len);
    loop->batch_env_len = at + (size_t)env_len;
    loop->batch_conns[n] = c;
    loop->batch_flags[n] = in_flags | (c->listener << 8) | (shape << 16);
    loop->batch_counts[n] = loop->shapes[shape].nkeys;
    loop->shapes[shape].refs++;     /* the number must mean these keys
                                       until Python has built the environ */
    loop->batch_n = n + 1;
    loop->served++;
    c->state = CS_QUEUED;
    c->resp = RS_NONE;
    c->out_mode = 0;
    c->resp_left = -1;
    if (c->timer != T_WRITE)
        loop_timer_clear(loop, c);
    return 0;
}

/* Answer the gathered requests, then carry on with each connection; a
 * connection with more requests buffered (pipelining) queues its next one
 * for the following round, so that each round still holds at most one
 * request per connection and answers them in order. */
void conn_batch_flush(fw_loop *loop)
{
    while (loop->batch_n > 0)
        batch_round(loop);
}

/* Whether the peer reset the TCP connection (its state is CLOSE), as
 * opposed to a half-close (CLOSE_WAIT), after which a client still reads
 * its answer.  Asked only of a connection an event said hung up. */
static int peer_reset(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return ti.tcpi_state == TCP_CLOSE;
}

static void batch_round(fw_loop *loop)
{
    int n = loop->batch_n;
    fw_conn *conns[FW_BATCH];
    for (int i = 0; i < n; i++) {
        fw_conn *c = loop->batch_conns[i];
        if (c->state != CS_CLOSED)
            c->state = CS_APP;
        c->flags |= C_IN_APP | C_BATCHED;
    }
    /* What the connections do next is dispatched at once, so the arrays
     * stay as Python saw them until this is over. */
    loop->batch_closed = 1;
    send_deferred(loop, 1);
    /* A client whose connection failed after its request was read (a
     * reset that came with it, or while an earlier answer was sent): the
     * app is not called for it. */
    for (int i = 0; i < n; i++) {
        fw_conn *c = loop->batch_conns[i];
        if (c->state != CS_CLOSED && (c->flags & (C_HUP | C_TCP)) == (C_HUP | C_TCP) &&
            peer_reset(c->io.fd))
            c->flags |= C_DEAD;
        if (c->state == CS_CLOSED || (c->flags & C_DEAD))
            loop->batch_flags[i] |= FW_IN_GONE;
    }
    int64_t began = loop_clock_ms();
    loop->round_mark_ms = began;
    loop->round_slowest_ms = -1;
    loop->round_slowest = NULL;
    if (loop->beat)
        beat_call(loop, began, loop->shapes[loop->batch_flags[0] >> 16].keys,
                  loop->batch_env, loop->batch_env_len, n);
    fw_tls_in_call++;
    fw_py_batch(loop->userdata, loop->batch_conns, loop->batch_flags,
                loop->batch_counts, loop->batch_env, loop->batch_env_len, n);
    fw_tls_in_call--;
    if (loop->beat)
        loop->beat->call_ms = 0;
    if (n == 1)
        note_slow_call(loop, began, loop->shapes[loop->batch_flags[0] >> 16].keys,
                       loop->batch_env, loop->batch_env_len, 1);
    else
        note_slow_call(loop, began, NULL, NULL, 0, n);
    /* Every environ is built: the numbers may take new keys again. */
    for (int i = 0; i < n; i++)
        loop->shapes[loop->batch_flags[i] >> 16].refs--;
    /* The held responses go out now, in the batch's order, before
     * anything else of the round is done. */
    response_release_held(loop);
    /* The arrays are free for the next round from here. */
    memcpy(conns, loop->batch_conns, (size_t)n * sizeof conns[0]);
    loop->batch_n = 0;
    loop->batch_env_len = 0;
    loop->batch_closed = 0;
    for (int i = 0; i < n; i++) {
        fw_conn *c = conns[i];
        c->flags &= ~(C_IN_APP | C_BATCHED);
        if (c->state == CS_CLOSED)
            continue;
        if (c->resp == RS_NONE && !(c->flags & C_DEAD)) {
            loop_log(loop, FW_LOG_ERROR, "no response was produced");
            response_error(c, 500);
            c->resp = RS_DONE;
        }
        conn_run(c);
    }
}

/* ---- answers deferred to the turn's end ---- */

/*
 * Whether the answer just given to a request dispatched on its own waits
 * for the turn's burst of sends, as a batch's answers do (see hold() in
 * response.c): sent as each call ends, every answer would wake a client
 * that went back to sleep meanwhile.  Only a small, complete answer that
 * keeps the connection open, with nothing else buffered, is deferred.  The
 * deferred ones go out when the turn's events are handled
 * (conn_release_deferred), or before the next app call once the first
 * unsent one has waited FW_HOLD_US (send_deferred).  A connection is freed
 * only after the turn's release (free_zombies), so a deferred one that
 * closes meanwhile stays readable until then.
 */
int defer(fw_conn *c)
{
    if (c->flags & C_DEFERRED)
        return 1;
    if (!(c->flags & C_ANSWERED))
        return 0;
    c->flags &= ~C_ANSWERED;
    fw_loop *loop = c->loop;
    size_t pending = conn_out_pending(c);
    if (loop->threaded || loop->stopping || c->state != CS_HEAD ||
        c->in.off != c->in.len || c->ext || c->file || c->timer == T_WRITE ||
        (c->flags & (C_CLOSE_AFTER | C_DEAD)) || pending == 0 ||
        pending > FW_HOLD_BYTES || loop->deferred_n == FW_DEFER_MAX)
        return 0;
    if (loop->deferred_sent == loop->deferred_n)
        loop->deferred_since_us = loop_clock_us();
    c->flags |= C_DEFERRED;
    loop->deferred[loop->deferred_n++] = c;
    return 1;
}

/* Before an app call, which may take long: the deferred answers go out if
 * the first unsent one has waited FW_HOLD_US, or whatever their age when
 * `all` (a batch is many calls).  They stay listed for the rest of their
 * turn's work (conn_release_deferred). */
void send_deferred(fw_loop *loop, int all)
{
    if (loop->deferred_sent == loop->deferred_n ||
        (!all && loop_clock_us() - loop->deferred_since_us < FW_HOLD_US))
        return;
    for (int i = loop->deferred_sent; i < loop->deferred_n; i++) {
        fw_conn *d = loop->deferred[i];
        if (d->state != CS_CLOSED)
            conn_flush(d);
    }
    loop->deferred_sent = loop->deferred_n;
}

/* The turn's deferred answers go out, in the order they were given, and
 * each connection carries on as after any answer (timers, epoll). */
void conn_release_deferred(fw_loop *loop)
{
    int n = loop->deferred_n;
    if (n == 0)
        return;
    fw_conn *list[FW_DEFER_MAX];
    memcpy(list, loop->deferred, (size_t)n * sizeof list[0]);
    loop->deferred_n = loop->deferred_sent = 0;
    for (int i = 0; i < n; i++)
        list[i]->flags &= ~C_DEFERRED;
    for (int i = 0; i < n; i++) {
        if (list[i]->state != CS_CLOSED)
            conn_run(list[i]);
    }
}
