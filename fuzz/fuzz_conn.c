/*
 * fuzz_conn.c - libFuzzer target for the connection layer: csrc/conn.c
 * (with send.c, environ.c, batch.c and body.c), csrc/response.c,
 * csrc/loop.c and csrc/http1.c linked together, with no Python.  The
 * harness plays both sides:
 *
 *   - clients: up to MAX_SLOTS sockets (one end of a socketpair adopted with
 *     conn_new, or a connect() to a unix listener the loop accepts from),
 *     sending requests generated from a compact description, whole, in
 *     fragments, pipelined, or raw bytes; reading the responses (or not);
 *     shutting down or closing;
 *   - the app: fw_py_request / fw_py_batch / fw_py_writable / fw_py_closed
 *     written in C.  It rebuilds every environ exactly as fastwsgi/wsgi.py
 *     does (shape table learned from FW_IN_FRESH keys, values zipped onto
 *     the keys, repeats merged with ", ") and is the ORACLE: the environ and
 *     body must be the ones the client of that connection sent, in order.
 *     Its responses vary over every fw_response_* path, and the clients
 *     check that each response is the one the app produced for that request.
 *
 * The loop's clock is the harness's (-DFW_EXTERNAL_CLOCK): timers expire
 * when an input says so.  The input format is described in fuzz/README.md
 * and at "the program" below.
 *
 * A violated expectation prints what failed and aborts (a crash for
 * libFuzzer).  Build with -DFUZZ_SELFTEST=1 (the app swaps two environ
 * values) or -DFUZZ_SELFTEST=2 (the app corrupts one response byte) to see
 * the oracle fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "harness.h"

#define MAX_SLOTS 32            /* client sockets open at once */
#define MAX_RECS 96             /* connections per input */
#define MAX_OPS 4000            /* operations per input */
#define REQ_BUDGET (3u << 20)   /* request bytes generated per input */
#define RESP_BUDGET (3u << 20)  /* large response bodies per input */
#define GEN_LEN 9               /* bytes of one request description */

/* ---- small helpers ---- */

/* xorshift32 */
static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* ---- configuration ---- */

static const fw_limits LIMITS[4] = {
    /* the server's defaults */
    {.request_line = 8190, .fields = 100, .field_size = 8190, .head = 65536},
    /* small: many requests get refused */
    {.request_line = 200, .fields = 12, .field_size = 300, .head = 1500},
    /* the largest the settings allow (big environs fill a batch) */
    {.request_line = 65536, .fields = 256, .field_size = 65536,
     .head = 1 << 20},
    /* the smallest the settings allow */
    {.request_line = 64, .fields = 1, .field_size = 64, .head = 1024},
};

/* max_body_size, spool_threshold */
static const int64_t BODIES[4][2] = {
    {1 << 30, 1 << 20}, {1 << 20, 1024}, {4096, 0}, {300, 40},
};

/* ---- the model: requests and connections ---- */

/* Statuses the core may answer by itself. */
enum {
    R_400 = 1, R_408 = 2, R_413 = 4, R_414 = 8, R_417 = 16, R_431 = 32,
    R_501 = 64, R_500 = 128
};

static int status_bit(int s)
{
    switch (s) {
    case 400: return R_400;
    case 408: return R_408;
    case 413: return R_413;
    case 414: return R_414;
    case 417: return R_417;
    case 431: return R_431;
    case 501: return R_501;
    case 500: return R_500;
    default: return 0;
    }
}

static const char *reason_of(int s)
{
    switch (s) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

enum { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_EOF };

/* What the client must receive for a request the app answered. */
typedef struct plan {
    int status;
    int framing;                /* FR_* (for a non-HEAD request) */
    int64_t declared;           /* Content-Length sent, -1 none */
    int64_t actual;             /* body bytes that come */
    int close_hdr;              /* "Connection: close" */
    int ka_hdr;                 /* "Connection: keep-alive" */
    int closes;                 /* the connection ends after it */
    int core_error;             /* the body is the core's error text */
    int cut;                    /* the app aborts after `actual` bytes */
    uint32_t seed;              /* of the body bytes */
    const char *xid;            /* an X-Id header to find, or NULL */
} plan;

enum { Q_REQ, Q_POISON };

typedef struct req {
    struct req *next;
    int kind;                   /* Q_* */
    int seq;
    uint64_t end;               /* stream offset just past its bytes */
    uint64_t head_end;          /* and just past its head */
    int cut;                    /* not all of it was sent (shut/close) */
    /* what the app must see */
    int nenv;
    str *ek, *ev;               /* environ pairs in the order sent */
    int head, http10, keepalive, expect100;
    int64_t body_len;
    uint32_t body_seed;
    int refuse;                 /* R_* the core must answer with, or 0 */
    int poke;                   /* the app also calls on a stale connection */
    int mode, param;            /* how the app answers */
    /* filled in by the app */
    int handled;
    plan p;
    /* client side */
    int saw100;
} req;

/* A response the app is producing over several calls. */
typedef struct stream {
    int active;
    req *r;
    int64_t total;              /* bytes the app writes in all */
    int64_t done;
    size_t piece;
    int per_call;               /* one piece per fw_py_writable */
    int abort;                  /* fw_response_abort instead of the end */
    char *held;                 /* memory C may still send from */
    int memfd;                  /* sendfile source, -1 */
    uint32_t seed;
} stream;

typedef struct rec {
    struct rec *next;
    int rid, slot;
    int fd;                     /* client end, -1 once we closed it */
    int sfd;                    /* server end (the core owns it) */
    ino_t sino;
    int via_listener, bound;
    uint64_t id;
    fw_conn *conn;
    int listener;
    char raddr[48], rport[8];
    int server_gone;            /* the core closed it */
    int client_closed, shut;
    int unchecked;              /* the app reached raw bytes: no oracle */
    int closing;                /* the app's answer ends the connection */
    int saw_gone;               /* a response call said -1 */
    int64_t opened_at;
    gbuf out;                   /* generated, not yet sent */
    size_t out_off;
    uint64_t sent;              /* bytes handed to the socket */
    uint64_t queued;            /* bytes generated */
    int nseq;
    req *qh, *qt;               /* every request, in order */
    req *app_next;              /* next one the app must see */
    req *rx_next;               /* next one the client must get an answer to */
    stream st;
    /* response reader */
    gbuf rx;
    size_t rx_off;
    int rx_state;
    int64_t rx_left, rx_got;
    const plan *rx_plan;
    plan rx_core;               /* plan of a core refusal being read */
    int rx_eof;
} rec;

/* ---- global state of one input ---- */

static int g_small_bufs;
static rec *g_recs;
static rec *g_slots[MAX_SLOTS];
static int g_nrecs;
static int g_in_callback;
static int g_freeing;
static int g_stopping;          /* fw_loop_stop(graceful) was called */
static int g_gentle;            /* ... as FW_STOP_RETIRE: the listeners
                                   stay open until fw_loop_run closes them */
static int g_final;             /* the final fw_loop_run closes everything */
static uint64_t g_req_bytes, g_resp_bytes;
static uint64_t g_progress;     /* bumps on any callback or I/O */
/* What an input did (FUZZ_CONN_VERBOSE=1 prints it). */
static struct stats {
    long gen, requests, batched, batches, batch_max, fresh, once, bodies,
        spooled, responses, refusals, continues, writable, closed, streams,
        turns, expired, closed_in_batch, pokes, slow_calls;
} g_st;

static int lossy(const rec *r)
{
    if (g_final)
        return 1;
    /* Past the graceful deadline (or on a second stop) the core cuts the
     * responses still streaming. */
    if (g_loop && (g_loop->stopping == 2 ||
                   (g_loop->stopping == 1 &&
                    g_loop->now >= g_loop->stop_deadline)))
        return 1;
    /* Some timer may have run out for this connection: it may be gone, a
     * request may get 408 and a response be cut short. */
    return g_min_timeout > 0 && g_clock - r->opened_at >= g_min_timeout;
}

/* ---- the app side: environ ---- */

static void env_dump(const char *title, const envl *e)
{
    fprintf(stderr, "  %s (%d keys):\n", title, e->n);
    for (int i = 0; i < e->n; i++) {
        fprintf(stderr, "    %.*s = ", (int)e->k[i].n, e->k[i].p);
        size_t n = e->v[i].n > 120 ? 120 : e->v[i].n;
        for (size_t j = 0; j < n; j++) {
            unsigned char ch = (unsigned char)e->v[i].p[j];
            if (ch >= 0x20 && ch < 0x7f)
                fputc(ch, stderr);
            else
                fprintf(stderr, "\\x%02x", ch);
        }
        fprintf(stderr, "%s\n", e->v[i].n > 120 ? "..." : "");
    }
}

/* ---- the app side: connections ---- */

#include "harness_rec.h"

/* A connection the loop accepted: which client is it?  Its peer address
 * names the record. */
static rec *bind_accepted(fw_conn *c)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    CHECKF(getpeername(c->io.fd, (struct sockaddr *)&sa, &len) == 0,
           "getpeername of an accepted connection: %s", strerror(errno));
    CHECK(len > offsetof(struct sockaddr_un, sun_path) + 1);
    const char *name = sa.sun_path + 1;
    int rid = -1;
    unsigned pid = 0;
    CHECKF(sscanf(name, "fzc.%u.%d", &pid, &rid) == 2,
           "unexpected peer of an accepted connection");
    for (rec *r = g_recs; r; r = r->next) {
        if (r->via_listener && !r->bound && r->rid == rid) {
            r->bound = 1;
            r->id = fw_conn_id(c);
            r->conn = c;
            r->sfd = c->io.fd;
            struct stat st;
            CHECK(fstat(r->sfd, &st) == 0);
            r->sino = st.st_ino;
            return r;
        }
    }
    CHECKF(0, "an accepted connection from client %d that is not pending",
           rid);
    return NULL;
}

/* The record of a connection a callback names; checks it may be named.
 * One exception: a connection that died (its client closed) after its
 * request was put in the batch is still in the batch, closed (batch.c hands
 * it over on purpose; every response call then says -1). */
static rec *rec_of(fw_conn *c, const char *cb, int batched)
{
    CHECK(c != NULL);
    uint64_t id = fw_conn_id(c);
    rec *r = rec_by_id(id);
    if (r == NULL)
        r = bind_accepted(c);
    CHECKF(!r->server_gone, "%s for connection %llu after it was closed", cb,
           (unsigned long long)id);
    CHECKF(r->conn == c, "%s: connection %llu has another pointer", cb,
           (unsigned long long)id);
    if (batched && c->state == CS_CLOSED && r->client_closed) {
        g_st.closed_in_batch++;
        return r;
    }
    CHECKF(conn_listed(c) && c->state != CS_CLOSED,
           "%s for connection %llu that is not open", cb,
           (unsigned long long)id);
    return r;
}

/* ---- the app side: answering ---- */

static char *body_buf(uint32_t seed, int64_t from, size_t n, int corrupt)
{
    char *b = xmalloc(n);
    pat_fill(b, seed, (uint64_t)from, n);
#if FUZZ_SELFTEST == 2
    if (corrupt && n > 3)
        b[n / 2] ^= 0x20;
#else
    (void)corrupt;
#endif
    return b;
}

/* rc of a response call that the app does not expect to fail. */
static void rc_ok(rec *r, int rc, const char *what)
{
    CHECKF(rc != -2, "%s refused the app's call (-2)", what);
    CHECKF(rc != -1 || r->client_closed || lossy(r),
           "%s says the connection is gone (-1), but its client is there",
           what);
    if (rc == -1)
        r->saw_gone = 1;        /* fw_py_closed may still come */
}

/* Produce more of a streamed response.  Returns when C has all of it, or
 * asks to wait (rc 0). */
static void pump(rec *r, fw_conn *c)
{
    stream *s = &r->st;
    free(s->held);              /* C may no longer refer to it */
    s->held = NULL;
    if (s->memfd >= 0) {
        /* sendfile is done: C called back once the file was sent */
        int rc = fw_response_end(c);
        rc_ok(r, rc, "fw_response_end after sendfile");
        stream_finish(r);
        return;
    }
    while (s->done < s->total) {
        size_t n = s->piece;
        if ((int64_t)n > s->total - s->done)
            n = (size_t)(s->total - s->done);
        char *b = body_buf(s->seed, s->done, n, s->r && s->r->seq == 3);
        int rc = fw_response_write(c, b, n);
        s->done += (int64_t)n;
        if (rc == 0) {
            s->held = b;        /* C may send from it until it calls back */
            return;
        }
        free(b);
        if (rc == 2 || rc == 3) {
            stream_finish(r);   /* C ended the response: no end call */
            return;
        }
        rc_ok(r, rc, "fw_response_write");
        if (rc < 0) {
            stream_finish(r);
            return;
        }
        if (s->per_call && s->done < s->total)
            return;
    }
    if (s->abort) {
        fw_response_abort(c);
    } else {
        int rc = fw_response_end(c);
        rc_ok(r, rc, "fw_response_end");
    }
    stream_finish(r);
}

static const char HEAD_OK[] = "200 OK\nContent-Type\0text/plain";
#define HEAD_OK_N 1

/* The head blocks the simple modes pick from (status, fields). */
static const struct {
    const char *block;
    size_t len;
    int nfields, status;
} HEADS[6] = {
#define HB(lit) lit, sizeof(lit) - 1
    {HB(HEAD_OK), HEAD_OK_N, 200},
    {HB("404 Not Found\nContent-Type\0text/plain\nX-A\0b"), 2, 404},
    {HB("201 Created"), 0, 201},
    {HB("304 Not Modified\nETag\0\"x\""), 1, 304},
    {HB("299"), 0, 299},
    {HB("200 Fine\nCache-Control\0no-store\nVary\0Accept\nX-Multi\0a, b"), 3,
     200},
#undef HB
};

static uint32_t resp_seed(const rec *r, const req *q)
{
    return (uint32_t)r->rid * 7919u + (uint32_t)q->seq * 104729u + 91u;
}

/* An app may keep a connection pointer past its request and call with it
 * later (a stored write()): C must refuse, and change nothing, for a
 * connection that is open but not in the app's hands. */
static void poke_stale(rec *self)
{
    for (rec *o = g_recs; o; o = o->next) {
        if (o == self || o->server_gone || !o->conn ||
            (o->via_listener && !o->bound))
            continue;
        fw_conn *c = o->conn;
        if (!conn_listed(c) || c->state == CS_CLOSED ||
            (c->flags & C_IN_APP))
            continue;
        CHECK(fw_response_write(c, "x", 1) == -1);
        CHECK(fw_response_start(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N, 1,
                                "x", 1) == -1);
        CHECK(fw_response_simple(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N,
                                 "x", 1) == -1);
        CHECK(fw_response_end(c) == -1);
        CHECK(fw_response_error(c, 500) == -1);
        CHECK(fw_response_sendfile(c, 0, 0, 1) == -1);
        fw_response_abort(c);
        g_st.pokes++;
        return;
    }
}

/* Answer request q on c; what the client must get goes to q->p. */
static void respond(rec *r, req *q, fw_conn *c)
{
    plan *p = &q->p;
    int ka = q->keepalive, head = q->head, h10 = q->http10;
    int prm = q->param;
    memset(p, 0, sizeof *p);
    p->seed = resp_seed(r, q);
    p->declared = -1;
    /* while the loop stops gracefully, every response ends its connection */
    p->close_hdr = !ka || g_stopping;
    p->ka_hdr = h10 && ka && !g_stopping;
    p->closes = !ka || g_stopping;
    stream *s = &r->st;
    CHECK(!s->active);
    memset(s, 0, sizeof *s);
    s->memfd = -1;
    s->seed = p->seed;
    s->r = q;
    int big_ok = g_resp_bytes < RESP_BUDGET;
    int rc;
    switch (q->mode) {
    case 0: case 1: case 2: case 3: case 4: case 11: {
        /* fw_response_simple */
        int64_t len = (prm * 37 + q->seq * 5) % 400;
        const char *hb = HEAD_OK;
        size_t hl = sizeof HEAD_OK - 1;
        int nf = HEAD_OK_N;
        p->status = 200;
        gbuf hx = {0};
        if (q->mode <= 2) {
            int k = (prm + q->mode) % 6;
            hb = HEADS[k].block;
            hl = HEADS[k].len;
            nf = HEADS[k].nfields;
            p->status = HEADS[k].status;
        } else if (q->mode == 3) {
            char *xid = arena_alloc(&g_arena, 64);
            snprintf(xid, 64, "c%dr%d", r->rid, q->seq);
            p->xid = xid;
            gb_printf(&hx, "200 OK\nX-Id%c%s", 0, xid);
            nf = 1;
            if (prm & 8) {      /* longer than the remembered head */
                gb_printf(&hx, "\nX-Long%c", 0);
                static const char letters[] = "abcdefgh";
                for (int i = 0; i < 600; i++)
                    gb_put(&hx, &letters[i & 7], 1);
                nf++;
            }
            hb = hx.d;
            hl = hx.len;
        } else if (q->mode == 4 && big_ok) {
            len = 65536 + prm * 9973 + q->seq % 100;
        } else if (q->mode == 11) {
            gb_printf(&hx, "200 OK\nConnection%cclose\nContent-Type%ctext/x",
                      0, 0);
            nf = 2;
            hb = hx.d;
            hl = hx.len;
            p->close_hdr = 1;
            p->ka_hdr = 0;
            p->closes = 1;
        }
        if (p->status == 304) {
            p->framing = FR_NONE;
            p->declared = -1;
            p->actual = 0;
        } else {
            p->framing = FR_LENGTH;
            /* an empty body to a HEAD gives no length (RFC 9110 9.3.2) */
            p->declared = head && len == 0 ? -1 : len;
            p->actual = head ? 0 : len;
        }
        g_resp_bytes += (uint64_t)len;
        char *b = body_buf(p->seed, 0, (size_t)len, q->seq == 3);
        rc = fw_response_simple(c, hb, hl, nf, b, (size_t)len);
        gb_free(&hx);
        if (rc == 0) {
            /* C sends from b in place: keep it, end when called back */
            s->active = 1;
            s->held = b;
            s->total = s->done = len;
            return;
        }
        free(b);
        rc_ok(r, rc, "fw_response_simple");
        return;
    }
    case 5: case 6: case 7: case 12: case 13: {
        /* fw_response_start + writes (+ end) */
        int64_t len;
        int64_t length;         /* what start is told */
        if (q->mode == 5) {
            len = big_ok ? prm * 20011 + q->seq % 7 : prm;
            length = len;
            s->piece = 1 + (size_t)((prm * 997 + q->seq * 13) % 70000);
        } else if (q->mode == 6) {
            len = big_ok ? prm * 7001 + q->seq % 3 : prm;
            length = -1;
            s->piece = 1 + (size_t)((prm * 131 + q->seq) % 9000);
        } else if (q->mode == 7) {
            len = big_ok ? prm * 3001 : prm;
            length = (prm & 1) ? len : -1;
            s->piece = 1 + (size_t)(prm * 577 % 4000);
            s->per_call = 1;
        } else {
            len = (prm * 4099) % (big_ok ? 200000 : 1000) + 1;
            length = len;
            s->piece = (size_t)len + 16;
        }
        g_resp_bytes += (uint64_t)len;
        p->status = 200;
        p->actual = head ? 0 : len;
        if (length > 0 || (length == 0 && !head)) {
            p->framing = FR_LENGTH;
            p->declared = length;
        } else if (head) {
            p->framing = FR_NONE;
        } else if (!h10) {
            p->framing = FR_CHUNKED;
        } else {
            p->framing = FR_EOF;
            p->close_hdr = 1;
            p->ka_hdr = 0;
            p->closes = 1;
        }
        /* at most some 64 writes a response: each one is sent at once */
        if (s->piece < (size_t)(len / 64))
            s->piece = (size_t)(len / 64);
        s->total = len;
        if (q->mode == 12) {
            /* the app sends less than its Content-Length, then ends or
             * aborts the response */
            int64_t d = 1 + prm % 5;
            s->total = len > d ? len - d : 0;
            s->abort = (prm & 8) != 0;
            if (!head) {
                p->actual = s->total;
                p->closes = 1;
            }
        } else if (q->mode == 6 && (prm & 8) && !head) {
            /* half of a body of unknown length, then an abort */
            s->total = len / 2;
            s->abort = 1;
            p->actual = s->total;
            p->cut = 1;
            p->closes = 1;
        } else if (q->mode == 13) {
            /* more than its Content-Length, in one write */
            s->total = len + 1 + prm;
            s->piece = (size_t)s->total;
            if (!head)
                p->closes = 1;
        }
        rc = fw_response_start(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N,
                               length, NULL, 0);
        if (rc == 3 || rc == 2)
            return;             /* no body (HEAD) or a zero length */
        rc_ok(r, rc, "fw_response_start");
        if (rc < 0)
            return;
        s->active = 1;
        g_st.streams++;
        if (q->mode == 7)
            return;             /* the rest when C asks for it */
        pump(r, c);
        return;
    }
    case 8: {
        /* 204, with a Content-Length the core must drop */
        static const char h204[] = "204 No Content\nContent-Length\0" "0";
        p->status = 204;
        p->framing = FR_NONE;
        if (prm & 1)
            rc = fw_response_simple(c, h204, sizeof h204 - 1, 1, "", 0);
        else
            rc = fw_response_simple(c, "204 No Content", 14, 0, "xyz",
                                    (size_t)(prm & 2 ? 3 : 0));
        rc_ok(r, rc, "fw_response_simple 204");
        return;
    }
    case 9: case 10: case 14: {
        /* an error: asked for, no response at all, or an invalid head */
        int st = q->mode == 9 && (prm & 1) ? 503 : 500;
        p->status = st;
        p->core_error = 1;
        p->framing = FR_LENGTH;
        p->declared = (int64_t)strlen(reason_of(st)) + 1;
        p->actual = head ? 0 : p->declared;
        p->close_hdr = 1;
        p->ka_hdr = 0;
        p->closes = 1;
        if (q->mode == 9) {
            rc = fw_response_error(c, st);
            rc_ok(r, rc, "fw_response_error");
        } else if (q->mode == 14) {
            static const struct {
                const char *b;
                size_t n;
                int nf;
            } bad[4] = {
                {"20 OK", 5, 0},
                {"200 OK\nBad Name\0v", 17, 1},
                {"200 OK\nX-A\0v\r", 13, 1},
                {"200 OK\nX-A\0v", 12, 2},
            };
            int k = prm & 3;
            rc = fw_response_start(c, bad[k].b, bad[k].n, bad[k].nf, -1,
                                   NULL, 0);
            CHECKF(rc == -2, "an invalid head (%d) was accepted: %d", k, rc);
            rc = fw_response_error(c, 500);
            rc_ok(r, rc, "fw_response_error after an invalid head");
        }
        return;                 /* mode 10: nothing at all */
    }
    case 15: {
        /* sendfile from a memfd */
        int64_t len = 1 + (big_ok ? prm * 30011 : prm);
        int64_t off = prm * 3;
        g_resp_bytes += (uint64_t)len;
        p->status = 200;
        p->framing = FR_LENGTH;
        p->declared = len;
        p->actual = head ? 0 : len;
        rc = fw_response_start(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N,
                               len, NULL, 0);
        if (rc == 3)
            return;
        rc_ok(r, rc, "fw_response_start for sendfile");
        if (rc < 0)
            return;
        int fd = memfd_create("fuzz-conn", MFD_CLOEXEC);
        CHECK(fd >= 0);
        char *b = xmalloc((size_t)(len + off));
        memset(b, '#', (size_t)off);
        pat_fill(b + off, p->seed, 0, (size_t)len);
        CHECK(write(fd, b, (size_t)(len + off)) == len + off);
        free(b);
        s->active = 1;
        s->memfd = fd;
        rc = fw_response_sendfile(c, fd, off, len);
        if (rc == 0)
            return;             /* C calls back once the file is sent */
        rc_ok(r, rc, "fw_response_sendfile");
        if (rc == 1) {
            rc = fw_response_end(c);
            rc_ok(r, rc, "fw_response_end after sendfile");
        }
        stream_finish(r);
        return;
    }
    }
    CHECK(0);
}

/* Compare the environ the app built with what the client sent. */
static void compare_env(rec *r, req *q, envl *got, int flags)
{
    envl want;
    env_init(&want, q->nenv + 4);
    for (int i = 0; i < q->nenv; i++)
        env_set(&want, q->ek[i], q->ev[i], 1);
    env_sort(&want);
    env_sort(got);
    int same = want.n == got->n;
    for (int i = 0; same && i < want.n; i++)
        same = str_eq(want.k[i], got->k[i]) && str_eq(want.v[i], got->v[i]);
    if (!same) {
        fprintf(stderr, "environ of request %d on connection %d (flags %#x, "
                "shape %d) differs from what its client sent\n", q->seq,
                r->rid, flags, flags >> 16);
        env_dump("client sent", &want);
        env_dump("app got", got);
    }
    CHECK(same);
}

/* One request, from either callback.  vals: its values; extra: the body
 * and fresh keys (NULL in a batch). */
static void serve(fw_conn *c, int flags, str *vals, int nvals, int batched)
{
    rec *r = rec_of(c, batched ? "fw_py_batch" : "fw_py_request", batched);
    CHECKF((c->state == CS_APP || c->state == CS_CLOSED) &&
           (c->flags & C_IN_APP),
           "a request for a connection not in the app's hands");
    CHECKF(!r->st.active, "a new request on connection %d while its "
           "previous response is still streaming", r->rid);
    int sh = flags >> 16;
    CHECKF(sh >= 0 && sh <= FW_SHAPE_ONCE, "shape number %d", sh);
    g_st.requests++;
    g_st.fresh += (flags & FW_IN_FRESH) != 0;
    g_st.once += sh == FW_SHAPE_ONCE;
    g_st.bodies += (flags & FW_IN_BODY) != 0;
    CHECKF(((flags >> 8) & 255) == r->listener, "listener %d, expected %d",
           (flags >> 8) & 255, r->listener);
    fw_extra *x = batched ? NULL : fw_request_extra(c);
    if (flags & FW_IN_FRESH) {
        CHECKF(!batched, "a batch carries a fresh shape (%d)", sh);
        CHECK(x->keys != NULL);
        learn(sh, x->keys, x->keys_len);
    } else {
        CHECKF(sh != FW_SHAPE_ONCE, "FW_SHAPE_ONCE without its keys");
    }
    shape *s = &g_shapes[sh];
    CHECKF(s->known, "shape %d used before its keys came", sh);
    CHECKF(nvals == s->nkeys, "%d values for shape %d of %d keys (%s)",
           nvals, sh, s->nkeys, batched ? "batch" : "request");
    if (sh == FW_SHAPE_ONCE)
        s->known = 0;           /* good for this request only */
#if FUZZ_SELFTEST == 1
    if (nvals > 8) {
        str t = vals[7];
        vals[7] = vals[8];
        vals[8] = t;
    }
#endif
    /* The environ as wsgi.py builds it. */
    envl got;
    env_init(&got, s->nconst + s->nkeys + 4);
    for (int i = 0; i < s->nconst; i++)
        env_set(&got, s->ck[i], s->cv[i], 0);
    int merge = (flags & (FW_IN_DUPS | FW_IN_FRESH)) != 0;
    for (int i = 0; i < s->nkeys; i++) {
        if (!(flags & FW_IN_DUPS))
            for (int j = 0; j < i; j++)
                CHECKF(!str_eq(s->keys[i], s->keys[j]),
                       "key %.*s repeats without FW_IN_DUPS",
                       (int)s->keys[i].n, s->keys[i].p);
        env_set(&got, s->keys[i], vals[i], merge);
    }
    /* The body. */
    const char *body = NULL;
    size_t body_len = 0;
    int body_fd = -1;
    if (flags & FW_IN_BODY) {
        CHECKF(!batched, "a batch carries a body");
        body = x->body;
        body_len = x->body_len;
        body_fd = x->body_fd;
        CHECKF(body_fd >= 0 || body_len > 0, "FW_IN_BODY without a body");
    }
    req *q = r->app_next;
    if (q && q->kind == Q_POISON)
        r->unchecked = 1;
    if (r->unchecked) {
        /* The client sent raw bytes: nothing to compare with. */
        if (body_fd >= 0)
            close(body_fd);
        static req dummy;
        memset(&dummy, 0, sizeof dummy);
        dummy.keepalive = 1;
        dummy.mode = 0;
        respond(r, &dummy, c);
        return;
    }
    CHECKF(q != NULL, "connection %d: a request its client never sent",
           r->rid);
    CHECKF(!r->closing, "connection %d: request %d after a response that "
           "closes the connection", r->rid, q->seq);
    CHECKF(q->refuse == 0, "connection %d: request %d reached the app; the "
           "core must refuse it (status mask %#x)", r->rid, q->seq,
           q->refuse);
    CHECKF(!q->cut && r->sent >= q->end, "connection %d: request %d reached "
           "the app before all of it was sent", r->rid, q->seq);
    compare_env(r, q, &got, flags);
    CHECKF(!!(flags & FW_IN_HEAD) == q->head, "FW_IN_HEAD %d for request %d",
           !!(flags & FW_IN_HEAD), q->seq);
    CHECKF(!!(flags & FW_IN_HTTP10) == q->http10, "FW_IN_HTTP10 for %d",
           q->seq);
    CHECKF(!!(flags & FW_IN_BODY) == (q->body_len > 0),
           "FW_IN_BODY %d for a body of %lld bytes", !!(flags & FW_IN_BODY),
           (long long)q->body_len);
    if (flags & FW_IN_BODY) {
        int spooled = body_fd >= 0;
        CHECKF(spooled == (q->body_len > g_cfg.spool_threshold),
               "a body of %lld bytes %s spooled (threshold %lld)",
               (long long)q->body_len, spooled ? "is" : "is not",
               (long long)g_cfg.spool_threshold);
        g_st.spooled += spooled;
        check_app_body(body_fd, 1, body, body_len, q->body_len,
                       q->body_seed);
    }
    TRACE("  app: conn %d seq %d flags %#x%s\n", r->rid, q->seq, flags,
          batched ? " (batch)" : "");
    r->app_next = q->next;
    q->handled = 1;
    if (q->poke)
        poke_stale(r);
    respond(r, q, c);
    if (q->p.closes)
        r->closing = 1;
}

int fw_py_request(void *ud, fw_conn *c, const char *env, size_t env_len,
                  int flags)
{
    callback_enter(ud, "fw_py_request");
    /* Now and then a call takes a millisecond: the answers deferred to
     * the turn's end are then sent with a later one (batch.c, defer()). */
    if (g_progress % 3 == 0) {
        g_clock += 1;
        g_st.slow_calls++;
    }
    str *vals;
    int n = split_values(env, env_len, &vals);
    serve(c, flags, vals, n, 0);
    arena_free(&g_scratch);
    g_in_callback = 0;
    return 0;
}

void fw_py_batch(void *ud, fw_conn **conns, int *flags, int *counts,
                 const char *env, size_t env_len, int n)
{
    callback_enter(ud, "fw_py_batch");
    CHECKF(n >= 1 && n <= FW_BATCH, "a batch of %d", n);
    CHECKF(env_len <= FW_BATCH_ENV, "a batch block of %zu bytes", env_len);
    g_st.batches++;
    if (g_verbose)
        fprintf(stderr, "batch of %d, values block %zu bytes\n", n, env_len);
    g_st.batched += n;
    if (n > g_st.batch_max)
        g_st.batch_max = n;
    str *vals;
    int total = split_values(env, env_len, &vals);
    check_batch_counts(conns, counts, n, total, 1);
    int at = 0;
    for (int i = 0; i < n; i++) {
        CHECKF(!(flags[i] & (FW_IN_FRESH | FW_IN_BODY)),
               "batch flags %#x", flags[i]);
        /* Now and then an app call takes a millisecond: the responses
         * held for the round's burst are then sent by the next call
         * (response_release_held) instead of at the round's end. */
        if (i > 0 && (g_st.batches + i) % 5 == 0) {
            g_clock += 1;
            g_st.slow_calls++;
        }
        serve(conns[i], flags[i], vals + at, counts[i], 1);
        at += counts[i];
    }
    arena_free(&g_scratch);
    g_in_callback = 0;
}

void fw_py_closed(void *ud, uint64_t id)
{
    CHECK(ud == &g_loop);
    g_progress++;
    rec *r = rec_by_id(id);
    CHECKF(r != NULL, "fw_py_closed for an unknown connection %llu",
           (unsigned long long)id);
    CHECKF(!r->server_gone, "fw_py_closed twice for connection %d", r->rid);
    CHECKF(r->st.active || r->saw_gone, "fw_py_closed for connection %d "
           "with no response streaming", r->rid);
    CHECKF(r->client_closed || lossy(r) || g_freeing || g_stopping,
           "connection %d closed in the middle of a response for no reason",
           r->rid);
    stream_finish(r);
    r->server_gone = 1;
    g_st.closed++;
}

void fw_py_log(void *ud, int level, const char *msg)
{
    CHECK(ud == &g_loop);
    static const char *const allowed[] = {
        "no response was produced",             /* mode 10 */
        "the app sent",                         /* modes 12 and 13 */
        "invalid status line",                  /* mode 14 */
        "invalid header name",
        "control character in header",
        "malformed headers",
    };
    if (level < FW_LOG_ERROR)
        return;
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (strncmp(msg, allowed[i], strlen(allowed[i])) == 0)
            return;
    CHECKF(0, "unexpected error from the core: %s", msg);
}

/* ---- the client side: generating requests ---- */

static const char *const METHODS[8] = {
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "M-SEARCH",
};

static const char *const COMMON[32] = {
    "Accept", "Accept-Encoding", "Accept-Language", "User-Agent", "Cookie",
    "Referer", "Cache-Control", "Origin", "X-Request-Id", "X-Forwarded-For",
    "X-Forwarded-Proto", "Authorization", "If-None-Match",
    "If-Modified-Since", "Pragma", "DNT", "Upgrade-Insecure-Requests",
    "Sec-Fetch-Mode", "Sec-Fetch-Site", "Content-Type", "X-Real-IP",
    "Forwarded", "Via", "Range", "X-Api-Key", "Accept-Charset", "Sec-Ch-Ua",
    "X-Csrf-Token", "Priority", "Baggage", "Traceparent", "Save-Data",
};

/* Header name number idx (0..255) of the family: common names, then
 * X-F<n> in spellings that map to the same environ key (case, '_' for
 * '-'), and common names in lower case. */
static void family_name(int idx, char *out, size_t cap)
{
    if (idx < 32) {
        snprintf(out, cap, "%s", COMMON[idx]);
        return;
    }
    int b = (idx - 32) / 4, v = (idx - 32) % 4;
    switch (v) {
    case 0: snprintf(out, cap, "X-F%d", b); break;
    case 1: snprintf(out, cap, "x-f%d", b); break;
    case 2: snprintf(out, cap, "X_F%d", b); break;
    default:
        snprintf(out, cap, "%s", COMMON[b % 32]);
        for (char *p = out; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        break;
    }
}

/* The environ key of a header name, as CGI spells it. */
static str cgi_key(const char *name)
{
    if (strcasecmp(name, "content-type") == 0)
        return S("CONTENT_TYPE");
    if (strcasecmp(name, "content-length") == 0)
        return S("CONTENT_LENGTH");
    size_t n = strlen(name);
    char *k = arena_alloc(&g_arena, n + 6);
    memcpy(k, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        else if (ch == '-')
            ch = '_';
        k[5 + i] = ch;
    }
    return (str){k, n + 5};
}

typedef struct hdr {
    const char *name;
    str raw;                    /* as sent, with any surrounding OWS */
    str val;                    /* as the environ must have it */
} hdr;

#define MAX_HDRS 300

typedef struct genctx {
    hdr h[MAX_HDRS];
    int n;
} genctx;

static void add_hdr_at(genctx *g, int pos, const char *name, str raw, str val)
{
    if (g->n >= MAX_HDRS)
        return;
    if (pos < 0 || pos > g->n)
        pos = g->n;
    memmove(&g->h[pos + 1], &g->h[pos], sizeof(hdr) * (size_t)(g->n - pos));
    g->h[pos] = (hdr){adup(&g_arena, name, strlen(name)), raw, val};
    g->n++;
}

static void add_hdr(genctx *g, int pos, const char *name, const char *val)
{
    str v = {adup(&g_arena, val, strlen(val)), strlen(val)};
    add_hdr_at(g, pos, name, v, v);
}

static str astr(const gbuf *b)
{
    return (str){adup(&g_arena, b->d ? b->d : "", b->len), b->len};
}

/* Append a request to r's output, described by d[0..GEN_LEN). */
static void gen_request(rec *r, const uint8_t *d)
{
    if (r->fd < 0 || r->shut || g_req_bytes >= REQ_BUDGET)
        return;
    const fw_limits *lim = &g_cfg.limits;
    req *q = arena_alloc(&g_arena, sizeof *q);
    q->kind = Q_REQ;
    q->seq = r->nseq++;
    uint32_t rs = 0x1234567u ^ ((uint32_t)r->rid << 20) ^ (uint32_t)q->seq ^
                  ((uint32_t)d[2] << 8) ^ d[3];
    int midx = d[0] & 7;
    int brk = d[7] >> 5;
    if (brk && midx == 2)
        midx = 0;               /* a HEAD is never refused: see README */
    const char *method = METHODS[midx];
    q->head = midx == 2;
    q->http10 = (d[0] >> 3) & 1;
    int conn_hdr = (d[0] >> 4) & 3;
    q->expect100 = (d[0] >> 6) & 1;
    int absolute = (d[0] >> 7) & 1;
    int body_kind = q->head ? 0 : d[1] & 3;
    int size_class = d[1] >> 2;
    int64_t blen = size_class < 32 ? size_class * 13
                 : size_class < 48 ? (size_class - 31) * 4099
                 : (size_class - 47) * 65537;
    if (body_kind == 0 || body_kind == 3)
        blen = 0;
    if (g_req_bytes + (uint64_t)blen > REQ_BUDGET)
        blen = 0;
    int chunked = body_kind == 2;
    uint16_t hset = (uint16_t)(d[2] << 8 | d[3]);
    int pad = d[4];
    q->mode = d[5] & 15;
    q->param = d[5] >> 4;
    int var = d[6];
    uint32_t ck_seed = (d[7] & 31) * 2654435761u + (uint32_t)q->seq;
    int extra = d[8];
    q->poke = (extra >> 3) & 1;
    q->body_len = blen;
    q->body_seed = (uint32_t)r->rid * 7919u + (uint32_t)q->seq * 104729u + 17u;

    /* request-target */
    gbuf path = {0}, dec = {0}, query = {0}, target = {0};
    int asterisk = midx == 5 && (var & 0x80) && !absolute;
    int has_nul = 0;
    char auth[64];
    snprintf(auth, sizeof auth, "a%d.test%s", r->rid, (var & 1) ? ":8080" : "");
    if (asterisk) {
        gb_puts(&path, "*");
        gb_puts(&dec, "*");
    } else if (absolute && (var & 0x40)) {
        /* absolute-form without a path: PATH_INFO is "/" */
        gb_puts(&dec, "/");
    } else {
        gb_printf(&path, "/p%d/s%d", r->rid, q->seq);
        gb_printf(&dec, "/p%d/s%d", r->rid, q->seq);
        if (var & 2) {
            gb_puts(&path, "/%41%2f%7E");
            gb_puts(&dec, "/A/~");
        }
        if (var & 0x20) {
            int n = extra * 8;
            gb_puts(&path, "/");
            gb_puts(&dec, "/");
            static const char letters[] = "abcdefghij";
            for (int i = 0; i < n; i++) {
                gb_put(&path, &letters[i % 10], 1);
                gb_put(&dec, &letters[i % 10], 1);
            }
        }
        if (brk == 7) {
            gb_puts(&path, "/%00");
            has_nul = 1;
        }
        if (var & 8) {
            gb_puts(&path, "/x%C3%A9%zz%4");
            gb_puts(&dec, "/x\xc3\xa9%zz%4");
        }
    }
    if (!asterisk && (var & 4))
        gb_printf(&query, "q=%d.%d&a=%%20b", r->rid, q->seq);
    if (absolute && !asterisk)
        gb_printf(&target, "http://%s", auth);
    gb_put(&target, path.d ? path.d : "", path.len);
    if (!asterisk && ((var & 4) || (var & 0x10)))
        gb_puts(&target, "?");
    gb_put(&target, query.d ? query.d : "", query.len);

    /* fields */
    genctx *g = arena_alloc(&g_scratch, sizeof *g);
    int nset = hset % 11;
    if ((hset >> 12) == 0xf)
        nset = 20 + hset % 61;
    uint32_t hs = 0x51ed270bu ^ hset * 2654435761u;
    int ctype_seen = 0;
    for (int i = 0; i < nset; i++) {
        char name[64];
        family_name((int)(rnd(&hs) % 256), name, sizeof name);
        uint32_t flavor = rnd(&rs);
        /* Content-Type allows one field only: a repeat would be refused. */
        if (strcasecmp(name, "content-type") == 0 && ctype_seen++)
            snprintf(name, sizeof name, "X-Ctype-%d", i);
        gbuf v = {0}, raw = {0};
        gb_printf(&v, "c%dr%dh%d", r->rid, q->seq, i);
        if ((flavor & 7) == 0)
            gb_puts(&v, " inner  space");
        if ((flavor & 0x38) == 0)
            gb_puts(&v, "-\xe9\xff");   /* obs-text */
        if ((flavor & 0x1c0) == 0)
            v.len = 0;                  /* empty value */
        if (flavor & 0x200)
            gb_puts(&raw, (flavor & 0x400) ? " \t " : "\t");
        gb_put(&raw, v.d ? v.d : "", v.len);
        if (flavor & 0x800)
            gb_puts(&raw, (flavor & 0x1000) ? "  " : "\t ");
        add_hdr_at(g, -1, name, astr(&raw), astr(&v));
        gb_free(&v);
        gb_free(&raw);
    }
    /* With an absolute-form target the environ's Host is the target's
     * authority, whatever the Host field says (RFC 9112 3.2.2). */
    char hostv[64];
    if (absolute && !(extra & 4))
        snprintf(hostv, sizeof hostv, "%s", auth);
    else
        snprintf(hostv, sizeof hostv, "%s%d.test", absolute ? "h" : "a",
                 r->rid);
    /* Where the fields go depends on the header set only: a client sends
     * its fields in the same order each time (and so do clients alike),
     * which is what makes a shape come again. */
    uint32_t ps = 0x2545f491u ^ hset * 40503u;
    int with_host = !q->http10 || (rnd(&ps) & 1);
    if (brk == 2 && !q->http10)
        with_host = 0;
    if (with_host)
        add_hdr(g, (int)(rnd(&ps) % (uint32_t)(g->n + 1)), "Host", hostv);
    q->keepalive = q->http10 ? conn_hdr == 2 : conn_hdr != 1 && conn_hdr != 3;
    if (conn_hdr)
        add_hdr(g, (int)(rnd(&ps) % (uint32_t)(g->n + 1)),
                (rnd(&ps) & 1) ? "Connection" : "connection",
                conn_hdr == 1 ? "close" : conn_hdr == 2 ? "keep-alive"
                                                        : "TE, close");
    if (q->expect100)
        add_hdr(g, -1, "Expect", "100-continue");
    if (brk == 5)
        add_hdr(g, -1, "Expect", "nonsense");
    char num[32];
    if (!chunked && (body_kind == 1 || body_kind == 3)) {
        snprintf(num, sizeof num, "%s%lld", (extra & 1) ? "00" : "",
                 (long long)blen);
        add_hdr(g, (int)(rnd(&ps) % (uint32_t)(g->n + 1)),
                (extra & 2) ? "content-length" : "Content-Length", num);
    }
    if (chunked)
        add_hdr(g, (int)(rnd(&ps) % (uint32_t)(g->n + 1)),
                "Transfer-Encoding", brk == 4 ? "gzip, chunked" : "chunked");
    if (brk == 6) {
        add_hdr(g, -1, "Content-Length", "5");
        add_hdr(g, -1, "Transfer-Encoding", "chunked");
    }

    /* the environ the app must see */
    int cap = g->n + 12;
    q->ek = arena_alloc(&g_arena, sizeof(str) * (size_t)cap);
    q->ev = arena_alloc(&g_arena, sizeof(str) * (size_t)cap);
#define WANT(k, v) (q->ek[q->nenv] = (k), q->ev[q->nenv] = (v), q->nenv++)
    WANT(S("REQUEST_METHOD"), S(method));
    WANT(S("PATH_INFO"), astr(&dec));
    WANT(S("QUERY_STRING"), astr(&query));
    WANT(S("REQUEST_URI"), astr(&target));
    WANT(S("SERVER_PROTOCOL"), S(q->http10 ? "HTTP/1.0" : "HTTP/1.1"));
    WANT(S("REMOTE_ADDR"), S(r->raddr));
    WANT(S("REMOTE_PORT"), S(r->rport));
    int host_seen = 0;
    for (int i = 0; i < g->n; i++) {
        if (strchr(g->h[i].name, '_') && !lim->allow_underscores)
            continue;           /* dropped by the parser */
        str k = cgi_key(g->h[i].name);
        str v = g->h[i].val;
        if (absolute && str_eq(k, S("HTTP_HOST"))) {
            v = S(adup(&g_arena, auth, strlen(auth)));  /* RFC 9112 3.2.2 */
            host_seen = 1;
        }
        WANT(k, v);
    }
    if (absolute && !asterisk && !host_seen)
        WANT(S("HTTP_HOST"), S(adup(&g_arena, auth, strlen(auth))));
    if (chunked) {
        snprintf(num, sizeof num, "%lld", (long long)blen);
        WANT(S("CONTENT_LENGTH"), S(adup(&g_arena, num, strlen(num))));
    }

    /* padding: an X-Pad field; with pad >= 128, sized so that the values
     * block comes to an exact length (batch-buffer boundaries) */
    if (pad) {
        /* the values block: every pair but the ones the shape holds */
        size_t env_len = 0;
        int common = midx <= 2;
        for (int i = 0; i < q->nenv; i++) {
            if (str_eq(q->ek[i], S("SERVER_PROTOCOL")) ||
                (common && str_eq(q->ek[i], S("REQUEST_METHOD"))) ||
                (q->ev[i].n == 0 && str_eq(q->ek[i], S("QUERY_STRING"))))
                continue;
            env_len += q->ev[i].n + 1;
        }
        env_len -= 1;
        int64_t exact = (int64_t)((d[7] >> 4 & 1) << 15 | (pad & 0x7f) << 8 |
                                  extra);
        int64_t want = pad < 128 ? pad * 23 : exact - (int64_t)env_len - 1;
        if (want > 0) {
            char *pv = arena_alloc(&g_arena, (size_t)want + 1);
            for (int64_t i = 0; i < want; i++)
                pv[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[(i + q->seq) % 36];
            str v = {pv, (size_t)want};
            add_hdr_at(g, -1, "X-Pad", v, v);
            WANT(S("HTTP_X_PAD"), v);
        }
    }
#undef WANT
    CHECK(q->nenv <= cap);

    /* the bytes */
    gbuf *o = &r->out;
    size_t start = o->len;
    if (var & 0x10 && !(var & 4) && q->seq > 0 && (rnd(&rs) & 1))
        gb_puts(o, "\r\n");       /* an empty line before the request */
    size_t line0 = o->len;
    gb_printf(o, "%s ", method);
    gb_put(o, target.d, target.len);
    gb_puts(o, q->http10 ? " HTTP/1.0" : " HTTP/1.1");
    size_t line_len = o->len - line0;
    gb_puts(o, "\r\n");
    int too_big = line_len > lim->request_line;
    int nfields = 0;
    for (int i = 0; i < g->n; i++) {
        size_t f0 = o->len;
        if (brk == 1 && i == g->n / 2) {
            gb_puts(o, "Bad Name: v\r\n");
            nfields++;
        }
        f0 = o->len;
        gb_puts(o, g->h[i].name);
        gb_puts(o, ":");
        gb_put(o, g->h[i].raw.p, g->h[i].raw.n);
        if (o->len - f0 > lim->field_size)
            too_big = 1;
        gb_puts(o, "\r\n");
        nfields++;
    }
    if (brk == 1 && g->n == 0) {
        gb_puts(o, "Bad Name: v\r\n");
        nfields++;
    }
    gb_puts(o, "\r\n");
    size_t head_len = o->len - start;   /* the leading CRLF counts */
    q->head_end = r->queued + head_len;
    if (nfields > (int)lim->fields || nfields > FW_MAX_FIELDS ||
        head_len > lim->head)
        too_big = 1;
    if (chunked) {
        uint32_t cs = ck_seed | 1;
        static const int64_t most[5] = {1, 7, 100, 4096, 70000};
        int64_t at = 0;
        int bad_at = brk == 3 ? 1 : -1, k = 0;
        while (at < blen) {
            int64_t n = 1 + rnd(&cs) % (uint32_t)most[(ck_seed >> 8) % 5];
            if (n < blen / 256)
                n = blen / 256;     /* at most some 256 chunks */
            if (n > blen - at)
                n = blen - at;
            if (k++ == bad_at)
                gb_puts(o, "zz\r\n");
            uint32_t f = rnd(&cs);
            gb_printf(o, (f & 1) ? "%llX" : "%llx", (long long)n);
            if (f & 2)
                gb_puts(o, ";ext=1");
            gb_puts(o, "\r\n");
            size_t at0 = o->len;
            gb_reserve(o, (size_t)n);
            pat_fill(o->d + at0, q->body_seed, (uint64_t)at, (size_t)n);
            o->len += (size_t)n;
            gb_puts(o, "\r\n");
            at += n;
        }
        if (bad_at >= 0 && k <= bad_at)
            gb_puts(o, "zz\r\n");
        gb_puts(o, (ck_seed & 4) ? "000\r\n" : "0\r\n");
        if (ck_seed & 8)
            gb_puts(o, "X-Trailer: t\r\n");
        gb_puts(o, "\r\n");
    } else if (blen) {
        size_t at0 = o->len;
        gb_reserve(o, (size_t)blen);
        pat_fill(o->d + at0, q->body_seed, 0, (size_t)blen);
        o->len += (size_t)blen;
    }
    if (brk == 6)
        gb_puts(o, "0\r\n\r\n");

    /* what the core must answer by itself */
    int refuse = 0;
    if (too_big)
        refuse |= R_414 | R_431;
    switch (brk) {
    case 1: refuse |= R_400; break;
    case 2: if (!q->http10) refuse |= R_400; break;
    case 3: if (chunked && !q->http10) refuse |= R_400; break;
    case 4: if (chunked) refuse |= q->http10 ? R_400 : R_501; break;
    case 5: if (!q->http10) refuse |= R_417; break;
    case 6: refuse |= R_400; break;
    case 7: if (has_nul) refuse |= R_400; break;
    default: break;
    }
    if (chunked && q->http10)
        refuse |= R_400;        /* no Transfer-Encoding in HTTP/1.0 */
    if (!refuse && blen > g_cfg.max_body_size)
        refuse |= R_413;
    q->refuse = refuse;
    if (refuse)
        q->expect100 = q->expect100 && !q->http10;

    g_st.gen++;
    TRACE("  gen conn %d seq %d: %s mode %d param %d body %lld%s refuse %#x, "
          "%zu bytes\n", r->rid, q->seq, method, q->mode, q->param,
          (long long)blen, chunked ? " chunked" : "", refuse, o->len - start);
    g_req_bytes += o->len - start;
    r->queued += o->len - start;
    q->end = r->queued;
    if (r->qt)
        r->qt->next = q;
    else
        r->qh = q;
    r->qt = q;
    if (r->app_next == NULL)
        r->app_next = q;
    if (r->rx_next == NULL)
        r->rx_next = q;
    gb_free(&path);
    gb_free(&dec);
    gb_free(&query);
    gb_free(&target);
}

/* Raw bytes: from here on, nothing can be predicted for this connection. */
static void gen_raw(rec *r, cursor *in, size_t n)
{
    if (r->fd < 0 || r->shut)
        return;
    req *q = arena_alloc(&g_arena, sizeof *q);
    q->kind = Q_POISON;
    q->seq = -1;
    for (size_t i = 0; i < n; i++) {
        char ch = (char)take(in);
        gb_put(&r->out, &ch, 1);
    }
    r->queued += n;
    q->end = r->queued;
    if (r->qt)
        r->qt->next = q;
    else
        r->qh = q;
    r->qt = q;
    if (r->app_next == NULL)
        r->app_next = q;
    if (r->rx_next == NULL)
        r->rx_next = q;
}

/* ---- the client side: sockets ---- */

static rec *new_rec(int slot)
{
    rec *r = calloc(1, sizeof *r);
    CHECK(r != NULL);
    r->rid = g_nrecs++;
    r->slot = slot;
    r->fd = -1;
    r->sfd = -1;
    r->st.memfd = -1;
    r->opened_at = g_clock;
    TRACE("  open conn %d in slot %d\n", r->rid, slot);
    r->next = g_recs;
    g_recs = r;
    g_slots[slot] = r;
    return r;
}

static void open_conn(int slot, uint8_t a)
{
    if (g_slots[slot] || g_nrecs >= MAX_RECS)
        return;
    int kind = a & 3;
    if (kind == 3) {
        /* through a listening socket the loop accepts from (none once a
         * stop has closed them: a new client would be refused) */
        if (g_stopping && !g_gentle)
            return;
        if (g_listen_fd < 0) {
            int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            CHECK(lfd >= 0);
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1,
                             "fzl.%u.%u", (unsigned)getpid(), g_listen_no++);
            CHECK(bind(lfd, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                   (size_t)n)) == 0);
            CHECK(listen(lfd, 128) == 0);
            CHECK(fw_loop_listen(g_loop, lfd, 0) == 0);
            g_listen_fd = lfd;
        }
        rec *r = new_rec(slot);
        r->via_listener = 1;
        r->listener = 0;
        r->fd = listener_client("fzc", r->rid);
        return;
    }
    int sv[2];
    client_pair(sv);
    rec *r = new_rec(slot);
    r->fd = sv[0];
    r->sfd = sv[1];
    r->listener = (a >> 2) & 3;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned salen;
    if (kind == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)(1024 + r->rid));
        in->sin_addr.s_addr = htonl(0x0a000001u | (uint32_t)r->rid << 16);
        salen = sizeof *in;
        snprintf(r->raddr, sizeof r->raddr, "10.%d.0.1", r->rid);
        snprintf(r->rport, sizeof r->rport, "%d", 1024 + r->rid);
    } else if (kind == 1) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)(65535 - r->rid));
        in6->sin6_addr.s6_addr[0] = 0xfd;
        in6->sin6_addr.s6_addr[15] = (uint8_t)r->rid;
        salen = sizeof *in6;
        if (r->rid)
            snprintf(r->raddr, sizeof r->raddr, "fd00::%x", r->rid);
        else
            snprintf(r->raddr, sizeof r->raddr, "fd00::");
        snprintf(r->rport, sizeof r->rport, "%d", 65535 - r->rid);
    } else {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        un->sun_family = AF_UNIX;
        salen = sizeof(sa_family_t);
    }
    struct stat st;
    CHECK(fstat(sv[1], &st) == 0);
    r->sino = st.st_ino;
    fw_conn *c = conn_new(g_loop, sv[1], r->listener, &ss, salen);
    CHECK(c != NULL);
    r->conn = c;
    r->id = fw_conn_id(c);
    conn_run(c);
}

/* Send up to `most` bytes of what r has generated. */
static void send_out(rec *r, size_t most)
{
    while (r->fd >= 0 && r->out_off < r->out.len && most) {
        size_t n = r->out.len - r->out_off;
        if (n > most)
            n = most;
        ssize_t w = send(r->fd, r->out.d + r->out_off, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0) {
            /* the server closed: nothing more will be read */
            CHECKF(errno == EPIPE || errno == ECONNRESET, "send: %s",
                   strerror(errno));
            for (req *q = r->qh; q; q = q->next)
                if (q->end > r->sent)
                    q->cut = 1;
            r->out_off = r->out.len;
            break;
        }
        r->out_off += (size_t)w;
        r->sent += (uint64_t)w;
        TRACE("  conn %d sent %zd\n", r->rid, w);
        most -= (size_t)w;
        g_progress++;
    }
    if (r->out_off == r->out.len) {
        r->out.len = 0;
        r->out_off = 0;
    }
}

/* Unsent bytes will never be sent: the requests they belong to are cut. */
static void drop_unsent(rec *r)
{
    for (req *q = r->qh; q; q = q->next)
        if (q->end > r->sent)
            q->cut = 1;
    r->out.len = 0;
    r->out_off = 0;
}

/* ---- the client side: reading responses ---- */

static void rx_complete(rec *r)
{
    req *q = r->rx_next;
    const plan *p = r->rx_plan;
    g_st.responses++;
    r->rx_next = q->next;
    r->rx_state = p->closes ? RX_AFTER_CLOSE : RX_HEAD;
    r->rx_plan = NULL;
}

/* Check body bytes b[0..n) at position r->rx_got. */
static void rx_body(rec *r, const char *b, size_t n)
{
    const plan *p = r->rx_plan;
    RXCHECK(r, r->rx_got + (int64_t)n <= p->actual,
            "response to request %d of connection %d: more than %lld body "
            "bytes", r->rx_next->seq, r->rid, (long long)p->actual);
    if (p->core_error) {
        const char *reason = reason_of(p->status);
        size_t rl = strlen(reason);
        for (size_t i = 0; i < n; i++) {
            int64_t at = r->rx_got + (int64_t)i;
            char want = at < (int64_t)rl ? reason[at] : '\n';
            RXCHECK(r, b[i] == want, "error body differs at %lld",
                    (long long)at);
        }
    } else {
        for (size_t i = 0; i < n; i++)
            if ((uint8_t)b[i] != pat(p->seed, (uint64_t)r->rx_got + i)) {
                RXCHECK(r, 0, "response to request %d of connection %d: body "
                        "byte %lld differs (not the app's body for it)",
                        r->rx_next->seq, r->rid,
                        (long long)(r->rx_got + (int64_t)i));
            }
    }
    r->rx_got += (int64_t)n;
}

/* A complete response head at rx[rx_off..rx_off+hl). */
static void rx_head(rec *r, const char *h, size_t hl)
{
    req *q = r->rx_next;
    int status = rx_status_line(r, h, hl);
    if (status == 100) {
        RXCHECK(r, hl == 25 && memcmp(h, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0,
                "a malformed 100 Continue");
        q->saw100 = 1;
        g_st.continues++;
        return;
    }
    const plan *p;
    if (q->handled) {
        p = &q->p;
        RXCHECK(r, status == p->status, "connection %d: request %d was "
                "answered %d by the app, the client got %d", r->rid, q->seq,
                p->status, status);
    } else {
        int allowed = q->refuse | (lossy(r) ? R_408 : 0);
        RXCHECK(r, status_bit(status) & allowed, "connection %d: request %d "
                "(never seen by the app) got status %d; allowed: %#x",
                r->rid, q->seq, status, allowed);
        g_st.refusals++;
        g_st.expired += status == 408;
        p = rx_core_plan(r, status);
    }
    /* the reason phrase of a core error */
    if (p->core_error)
        rx_check_reason(r, h, hl, status);
    rx_head_fields h_f;
    rx_fields(r, h, hl, 1, &h_f);
    int nobody = (q->head && (q->handled || !p->core_error)) ||
                 status == 204 || status == 304;
    if (q->head && q->handled)
        nobody = 1;
    rx_head_end(r, p, q->seq, &h_f, status, status == 204 || status == 304,
                nobody);
}

/* The last byte of a Content-Length body came. */
static void rx_length_done(rec *r)
{
    if (r->rx_plan->actual < r->rx_plan->declared) {
        /* the app's short body: the close ends it */
        g_st.responses++;
        r->rx_state = RX_AFTER_CLOSE;
        r->rx_next = r->rx_next->next;
        r->rx_plan = NULL;
    } else {
        rx_complete(r);
    }
}

/* The server closed (EOF or reset): is that consistent? */
static void rx_eof(rec *r)
{
    if (r->rx_eof)
        return;
    TRACE("  conn %d: EOF\n", r->rid);
    r->rx_eof = 1;
    g_progress++;
    size_t avail = r->rx.len - r->rx_off;
    switch (r->rx_state) {
    case RX_HEAD:
        RXCHECK(r, avail == 0 || lossy(r), "connection %d: closed in the "
                "middle of a response head", r->rid);
        break;
    case RX_EOF_BODY:
        RXCHECK(r, r->rx_got == r->rx_plan->actual || lossy(r),
                "connection %d: a close-delimited body of %lld bytes, the app "
                "wrote %lld", r->rid, (long long)r->rx_got,
                (long long)r->rx_plan->actual);
        r->rx_next = r->rx_next->next;
        r->rx_state = RX_AFTER_CLOSE;
        g_st.responses++;
        break;
    case RX_AFTER_CLOSE:
    case RX_DISCARD:
        break;
    case RX_CK_SIZE:
        if (r->rx_plan->cut && r->rx_got == r->rx_plan->actual && avail == 0) {
            /* the app aborted: the close is all the client gets */
            r->rx_next = r->rx_next->next;
            r->rx_state = RX_AFTER_CLOSE;
            g_st.responses++;
            break;
        }
        /* fall through */
    default:
        RXCHECK(r, lossy(r), "connection %d: closed in the middle of the "
                "response to request %d (%lld bytes of it came)", r->rid,
                r->rx_next ? r->rx_next->seq : -1, (long long)r->rx_got);
        r->rx_state = RX_DISCARD;
        break;
    }
}

/* Read up to `most` bytes (0: all there is) from r and check them. */
static void read_in(rec *r, size_t most)
{
    if (r->fd < 0 || r->rx_eof)
        return;
    size_t got = 0;
    for (;;) {
        if (r->rx_off > 0 && r->rx_off == r->rx.len) {
            r->rx.len = r->rx_off = 0;
        } else if (r->rx_off > 65536) {
            memmove(r->rx.d, r->rx.d + r->rx_off, r->rx.len - r->rx_off);
            r->rx.len -= r->rx_off;
            r->rx_off = 0;
        }
        size_t want = 65536;
        if (most && most - got < want)
            want = most - got;
        if (want == 0)
            break;
        gb_reserve(&r->rx, want);
        ssize_t n = recv(r->fd, r->rx.d + r->rx.len, want, 0);
        if (n > 0) {
            TRACE("  conn %d read %zd\n", r->rid, n);
            r->rx.len += (size_t)n;
            got += (size_t)n;
            g_progress++;
            rx_parse(r);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        rx_eof(r);
        break;
    }
}

/* ---- operations ---- */

static void close_client(rec *r)
{
    TRACE("  client %d closes\n", r->rid);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->client_closed = 1;
    drop_unsent(r);
    g_slots[r->slot] = NULL;
}

/* After a turn: what the core says about its connections must match. */
static void check_loop(void)
{
    fw_loop *L = g_loop;
    CHECKF(L->batch_n == 0, "a batch of %d left after a turn", L->batch_n);
    CHECK(L->zombies == NULL);
    CHECK(!L->rbuf_busy && !L->wbuf_busy);
    for (int i = 0; i < FW_SHAPES; i++)
        CHECKF(L->shapes[i].refs == 0, "shape %d still has %d references",
               i, L->shapes[i].refs);
    int listed = 0;
    for (fw_conn *c = L->conns; c; c = c->next) {
        listed++;
        CHECK(c->state != CS_CLOSED && c->state != CS_QUEUED);
        CHECK(!(c->flags & (C_IN_APP | C_BATCHED)));
        CHECK(!(c->flags & (C_IN_BORROWED | C_OUT_BORROWED)));
        if (rec_by_id(c->id) == NULL)
            bind_accepted(c);
        /* A connection left alone waits on a timer, if its kind has one. */
        int waits = conn_out_pending(c) || c->ext || c->file;
        check_conn_timer(L, c, waits);
    }
    CHECKF(listed == fw_loop_connections(L), "%d connections listed, "
           "fw_loop_connections says %d", listed, fw_loop_connections(L));
    /* timer lists: linked both ways, in deadline order, on their kind */
    check_timer_lists(L, 1);
    /* our records against the core's list and the descriptors */
    int alive = 0;
    for (rec *r = g_recs; r; r = r->next) {
        if (r->server_gone)
            continue;
        if (r->via_listener && !r->bound) {
            /* never seen: accepted and closed within the turn, or the
             * client went first; or not accepted (the loop is stopping) */
            if (g_stopping)
                continue;
            if (r->fd >= 0) {
                struct pollfd pf = {.fd = r->fd, .events = POLLIN};
                CHECK(poll(&pf, 1, 0) >= 0);
                CHECKF(pf.revents & (POLLHUP | POLLIN), "client %d was not "
                       "accepted in a turn", r->rid);
                char ch;
                if (!(pf.revents & POLLHUP))
                    CHECKF(recv(r->fd, &ch, 1, MSG_PEEK) == 0,
                           "client %d: data from a connection never seen",
                           r->rid);
            }
            r->server_gone = 1;
            continue;
        }
        alive += check_rec_listed(L, r);
    }
    CHECK(alive == listed);
}

static void advance(int ms)
{
    g_clock += ms;
}

/* Send and read everything, turning the loop, until nothing moves. */
static void drain(void)
{
    int idle = 0;
    for (int i = 0; i < 20000 && idle < 3; i++) {
        uint64_t before = g_progress;
        int conns = fw_loop_connections(g_loop);
        for (rec *r = g_recs; r; r = r->next)
            send_out(r, (size_t)-1);
        turn();
        for (rec *r = g_recs; r; r = r->next)
            read_in(r, 0);
        if (g_progress == before && conns == fw_loop_connections(g_loop))
            idle++;
        else
            idle = 0;
    }
    CHECKF(idle >= 3, "the loop never settled");
}

/* After draining, without the clock moving: every request sent has its
 * answer, and every connection meant to close did. */
static void check_settled(void)
{
    for (rec *r = g_recs; r; r = r->next) {
        if (r->client_closed || r->rx_state == RX_DISCARD)
            continue;
        if (r->via_listener && !r->bound && g_stopping)
            continue;           /* a stopping loop accepts no one */
        CHECKF(r->out.len == r->out_off, "connection %d: unsent bytes",
               r->rid);
        if (r->rx_state == RX_AFTER_CLOSE) {
            CHECKF(r->rx_eof, "connection %d: the response said the "
                   "connection ends, but it stays open", r->rid);
            continue;
        }
        if (lossy(r))
            continue;
        CHECKF(r->rx_state == RX_HEAD, "connection %d: a response stopped "
               "half-way (state %d, %lld bytes of it)", r->rid, r->rx_state,
               (long long)r->rx_got);
        req *q = r->rx_next;
        if (q && q->kind == Q_POISON)
            continue;
        if (q && !q->cut) {
            CHECKF(0, "connection %d: request %d (%s) was sent but never "
                   "answered%s", r->rid, q->seq,
                   q->refuse ? "to be refused" : q->handled ? "the app "
                   "answered it" : "the app never saw it",
                   r->rx_eof ? "; the connection closed" : "");
        }
        if (!r->rx_eof)
            continue;
        /* closed without a response that says so: only after the client
         * shut down its side */
        CHECKF(r->shut || g_stopping, "connection %d: closed by the server "
               "for no reason", r->rid);
    }
}

/*
 * The program.  Each operation is one byte, op % 16, and its operands:
 *
 *   0  OPEN k a        open slot k; a&3: 0 IPv4 peer, 1 IPv6 peer, 2 unix
 *                      peer (socketpair adopted with conn_new), 3 connect
 *                      to a unix listener; (a>>2)&3: listener number
 *   1  GEN k d[9]      generate a request on k (see gen_request)
 *   2  SEND k n        send n bytes of what k generated (0: all,
 *                      n >= 128: (n-127)*512, 255: up to the end of the
 *                      next request head)
 *   3  TURN            one loop turn
 *   4  READ k n        read n*64 bytes on k (0: all there is)
 *   5  CLOCK n         advance the clock by CLOCK_STEPS[n&15] (n >= 16:
 *                      n*7 ms)
 *   6  PIPE k m d[9]   generate 1 + m%8 requests on k, send them at once
 *   7  BURST m1 m2 d[9]  a request on every open slot in the mask m2:m1
 *                      (header set varied per slot), all sent, one turn
 *   8  RAW k n b[n]    send n raw bytes on k (no oracle from there on)
 *   9  SHUT k          shutdown(SHUT_WR) on k (unsent bytes dropped)
 *  10  CLOSE k         close k
 *  11  TURNS n         1 + n%8 loop turns; n >= 248 first stops the loop
 *                      gracefully (fw_loop_stop(loop, FW_STOP_GRACEFUL)),
 *                      240..247 retires it (FW_STOP_RETIRE)
 *  12  READALL         read everything on every slot
 *  13  SENDALL         send everything on every slot
 *  14  GENSEND k d[9]  generate a request on k and send all of k
 *  15  OPENMANY n a    open 1 + n%32 slots like OPEN
 */
static void run_program(cursor *in)
{
    uint8_t d[GEN_LEN];
    for (int ops = 0; in->n > 0 && ops < MAX_OPS; ops++) {
        uint8_t op = take(in) & 15;
        if (g_trace) {
            static const char *const names[16] = {
                "OPEN", "GEN", "SEND", "TURN", "READ", "CLOCK", "PIPE",
                "BURST", "RAW", "SHUT", "CLOSE", "TURNS", "READALL",
                "SENDALL", "GENSEND", "OPENMANY"};
            trace_op(in, names[op]);
        }
        if (common_op(in, op, d))
            continue;
        switch (op) {
        case 2: {
            rec *r = slot_rec(take(in));
            uint8_t n = take(in);
            if (r && n == 255) {
                /* up to the end of the next request head not all sent */
                for (req *q = r->qh; q; q = q->next)
                    if (q->kind == Q_REQ && q->head_end > r->sent) {
                        send_out(r, (size_t)(q->head_end - r->sent));
                        break;
                    }
            } else if (r) {
                send_out(r, n == 0 ? (size_t)-1 : n < 128 ? n
                         : (size_t)(n - 127) * 512);
            }
            break;
        }
        case 3:
            turn();
            break;
        case 4: {
            rec *r = slot_rec(take(in));
            uint8_t n = take(in);
            if (r)
                read_in(r, n ? (size_t)n * 64 : 0);
            break;
        }
        case 5: {
            uint8_t n = take(in);
            advance(n < 16 ? CLOCK_STEPS[n] : n * 7);
            break;
        }
        case 6: {
            rec *r = slot_rec(take(in));
            int m = 1 + take(in) % 8;
            for (int i = 0; i < GEN_LEN; i++)
                d[i] = take(in);
            if (r) {
                for (int i = 0; i < m; i++) {
                    d[3] = (uint8_t)(d[3] + 1);
                    gen_request(r, d);
                }
                send_out(r, (size_t)-1);
            }
            break;
        }
        case 7: {
            uint32_t mask = take(in);
            mask |= (uint32_t)take(in) << 8;
            mask |= mask << 16;
            for (int i = 0; i < GEN_LEN; i++)
                d[i] = take(in);
            for (int s = 0; s < MAX_SLOTS; s++) {
                if (!(mask >> s & 1) || !g_slots[s])
                    continue;
                uint8_t dd[GEN_LEN];
                memcpy(dd, d, sizeof dd);
                dd[3] = (uint8_t)(dd[3] + s * 37);
                dd[2] = (uint8_t)(dd[2] ^ (s * 11));
                gen_request(g_slots[s], dd);
                send_out(g_slots[s], (size_t)-1);
            }
            turn();
            break;
        }
        case 8: {
            rec *r = slot_rec(take(in));
            size_t n = take(in);
            if (n > in->n)
                n = in->n;
            if (r) {
                gen_raw(r, in, n);
                send_out(r, (size_t)-1);
            } else {
                in->p += n;
                in->n -= n;
            }
            break;
        }
        case 9: {
            rec *r = slot_rec(take(in));
            if (r && !r->shut && r->fd >= 0) {
                drop_unsent(r);
                shutdown(r->fd, SHUT_WR);
                r->shut = 1;
            }
            break;
        }
        case 10: {
            rec *r = slot_rec(take(in));
            if (r)
                close_client(r);
            break;
        }
        case 11: {
            uint8_t a = take(in);
            if (a >= 248 && !g_stopping) {
                fw_loop_stop(g_loop, FW_STOP_GRACEFUL);
                g_stopping = 1;
                g_listen_fd = -1;   /* the stop closed the listeners */
            } else if (a >= 240 && !g_stopping) {
                /* a retiring worker: idle connections stay, every answer
                 * closes, the listeners close only at fw_loop_run's safe
                 * point (after taking what is queued) */
                fw_loop_stop(g_loop, FW_STOP_RETIRE);
                g_stopping = g_gentle = 1;
            }
            int n = 1 + a % 8;
            for (int i = 0; i < n; i++)
                turn();
            break;
        }
        case 12:
            for (rec *r = g_recs; r; r = r->next)
                read_in(r, 0);
            break;
        case 13:
            for (rec *r = g_recs; r; r = r->next)
                send_out(r, (size_t)-1);
            break;
        case 15: {
            int n = 1 + take(in) % 32;
            uint8_t a = take(in);
            for (int s = 0, done = 0; s < MAX_SLOTS && done < n; s++) {
                if (g_slots[s])
                    continue;
                open_conn(s, (uint8_t)(a + (a & 0x10 ? done : 0)));
                done++;
            }
            break;
        }
        }
    }
}

static void teardown(void)
{
    g_freeing = 1;
    fw_loop_free(g_loop);
    g_loop = NULL;
    g_listen_fd = -1;
    while (g_recs) {
        rec *r = g_recs;
        g_recs = r->next;
        if (r->fd >= 0)
            close(r->fd);
        stream_finish(r);
        gb_free(&r->out);
        gb_free(&r->rx);
        free(r);
    }
    memset(g_slots, 0, sizeof g_slots);
    memset(g_shapes, 0, sizeof g_shapes);
    arena_free(&g_arena);
    arena_free(&g_scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    g_verbose = getenv("FUZZ_CONN_VERBOSE") != NULL;
    g_trace = getenv("FUZZ_CONN_TRACE") != NULL;
    return 0;
}

/*
 * Input: byte 0 configuration (bits 0-1 limits profile, bit 2
 * allow_underscores, bits 3-4 body limits, bits 5-6 timeouts, bit 7 small
 * socket buffers), byte 1 the shape table's hash seed (its bits 0-1 also
 * pick how file bodies go out: by copy to these local peers, by sendfile,
 * by copy, by copy), then the program.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t c0 = data[0], c1 = data[1];
    cursor in = {data + 2, size - 2};
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.limits = LIMITS[c0 & 3];
    g_cfg.limits.allow_underscores = (c0 >> 2) & 1;
    g_cfg.max_body_size = BODIES[(c0 >> 3) & 3][0];
    g_cfg.spool_threshold = BODIES[(c0 >> 3) & 3][1];
    const int *t = TIMEOUTS[(c0 >> 5) & 3];
    g_cfg.keepalive_timeout_ms = t[0];
    g_cfg.header_timeout_ms = t[1];
    g_cfg.body_timeout_ms = t[2];
    g_cfg.write_timeout_ms = t[3];
    g_cfg.graceful_timeout_ms = 1000;
    g_cfg.shared_listeners = 0;   /* one process: every client accepted in its turn */
    g_cfg.spool_dir = "/tmp";
    g_cfg.server_name = "fz";
    g_cfg.file_send = (c1 & 3) == 3 ? FW_FILE_COPY : (int)(c1 & 3);
    g_min_timeout = FW_LINGER_MS;
    for (int i = 0; i < 4; i++)
        if (t[i] > 0 && t[i] < g_min_timeout)
            g_min_timeout = t[i];
    g_small_bufs = c0 >> 7;
    g_clock = 1000000;
    g_nrecs = 0;
    g_in_callback = 0;
    g_freeing = 0;
    g_stopping = 0;
    g_gentle = 0;
    g_final = 0;
    g_req_bytes = g_resp_bytes = 0;
    g_progress = 0;
    memset(&g_st, 0, sizeof g_st);

    g_loop = fw_loop_new(&g_cfg, &g_loop);
    CHECK(g_loop != NULL);
    /* Every request and refusal also makes an access log line, with every
     * operation of the line format (written to /dev/null by its thread):
     * the formatting meets every head and response the program makes. */
    if (c1 & 1) {
        static const unsigned char prog[] = {
            FW_ALOG_PEER, FW_ALOG_PEER_JSON, FW_ALOG_LITERAL, 0, 3, ' ', '[', '"',
            FW_ALOG_TIME, FW_ALOG_TIME_BARE, FW_ALOG_REQUEST, FW_ALOG_REQUEST_JSON,
            FW_ALOG_METHOD, 0, FW_ALOG_TARGET, 1, FW_ALOG_PATH, 0, FW_ALOG_QUERY, 1,
            FW_ALOG_PROTO, 0, FW_ALOG_HEADER, 0, 0, FW_ALOG_HEADER, 1, 1,
            FW_ALOG_HEADER, 2, 0, FW_ALOG_STATUS, FW_ALOG_BYTES, FW_ALOG_BYTES_DASH,
            FW_ALOG_MICROS, FW_ALOG_MILLIS, FW_ALOG_SECONDS, FW_ALOG_SECONDS_FRAC,
            FW_ALOG_PID};
        CHECK(fw_loop_access_log(g_loop, "/dev/null", prog, sizeof prog,
                                 "referer\nuser-agent\nx-a") == 0);
    }
    /* The hash seed is random per loop; the input chooses it here so that
     * a run can be repeated (and the fuzzer can aim at collisions). */
    g_loop->hash_seed = 0x9e3779b97f4a7c15ull * (uint64_t)(c1 + 1);

    run_program(&in);

    /* Everything sent gets its answer; then, once every timer can have
     * run out, no connection is left. */
    drain();
    check_settled();
    if (t[0] > 0 && t[1] > 0 && t[2] > 0 && t[3] > 0) {
        for (int i = 0; i < 4; i++) {
            advance(70000);
            for (int j = 0; j < 3; j++)
                turn();
            for (rec *r = g_recs; r; r = r->next)
                read_in(r, 0);
        }
        CHECKF(fw_loop_connections(g_loop) == 0,
               "%d connections outlive every timeout",
               fw_loop_connections(g_loop));
    }
    if (g_stopping) {
        /* past the graceful deadline, fw_loop_run closes what is left and
         * returns at once */
        advance(g_cfg.graceful_timeout_ms + 1);
        g_final = 1;
        CHECK(fw_loop_run(g_loop) == 0);
        CHECKF(fw_loop_connections(g_loop) == 0, "fw_loop_run returned with "
               "%d connections", fw_loop_connections(g_loop));
        for (rec *r = g_recs; r; r = r->next)
            read_in(r, 0);
    }
    if (g_verbose)
        fprintf(stderr, "conns %d, generated %ld, app requests %ld (batched "
                "%ld in %ld batches, largest %ld; fresh shapes %ld, once %ld; "
                "bodies %ld, spooled %ld), streams %ld, writable %ld, closed "
                "%ld, responses read %ld, core refusals %ld (408: %ld), 100 "
                "continue %ld, turns %ld, closed in a batch %ld, stale calls %ld, slow "
                "app calls %ld\n", g_nrecs, g_st.gen, g_st.requests,
                g_st.batched, g_st.batches, g_st.batch_max, g_st.fresh,
                g_st.once, g_st.bodies, g_st.spooled, g_st.streams,
                g_st.writable, g_st.closed, g_st.responses, g_st.refusals,
                g_st.expired, g_st.continues, g_st.turns,
                g_st.closed_in_batch, g_st.pokes, g_st.slow_calls);
    teardown();
    return 0;
}
