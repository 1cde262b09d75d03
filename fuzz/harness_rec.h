/*
 * harness_rec.h - what fuzz_conn.c and fuzz_tls.c share that works on
 * their connection record: finding a record, ending its response stream,
 * fw_py_writable, the client's response parser (the status line, the
 * fields and the framing of a head, the plan of a core error; rx_parse past
 * the head), one loop turn; the checks of check_loop on timers and records,
 * the app's callbacks (entry, batch counts, the body it got), the client
 * sockets of open_conn, the ops both programs share.
 *
 * Static definitions, included once by each target where its `rec` type
 * and the global state of an input (g_loop, g_recs, g_slots, g_st,
 * g_in_callback, g_progress, ...) are defined.  rec has: next, id, rid,
 * bound, via_listener; st (held, memfd, active, r); rx, rx_off, rx_state,
 * rx_left, rx_got, rx_plan (actual), rx_next (kind), rx_core, sfd, sino,
 * conn, server_gone; plan, req (seq, expect100, http10, saw100), FR_*,
 * GEN_LEN, MAX_SLOTS and g_small_bufs come from the target too.  The
 * target defines the functions declared in this file.
 */
#ifndef FUZZ_HARNESS_REC_H
#define FUZZ_HARNESS_REC_H

#include <errno.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

/* The app side: the record of c as callback cb sees it; answer or carry on
 * streaming the response of r. */
static rec *rec_of(fw_conn *c, const char *cb, int batched);
static void pump(rec *r, fw_conn *c);
/* The client side: a complete response head at h; n body bytes at b; the
 * response is whole; a Content-Length body has all its bytes (which may
 * still be short of what the app declared). */
static void rx_head(rec *r, const char *h, size_t hl);
static void rx_body(rec *r, const char *b, size_t n);
static void rx_complete(rec *r);
static void rx_length_done(rec *r);
/* What must hold after every turn. */
static void check_loop(void);

static rec *rec_by_id(uint64_t id)
{
    for (rec *r = g_recs; r; r = r->next)
        if ((r->bound || !r->via_listener) && r->id == id)
            return r;
    return NULL;
}

static void stream_finish(rec *r)
{
    free(r->st.held);
    r->st.held = NULL;
    if (r->st.memfd >= 0)
        close(r->st.memfd);
    r->st.memfd = -1;
    r->st.active = 0;
    r->st.r = NULL;
}

void fw_py_writable(void *ud, fw_conn *c, uint64_t id)
{
    CHECK(ud == &g_loop);
    CHECKF(!g_in_callback, "fw_py_writable inside another callback");
    g_in_callback = 1;
    g_progress++;
    CHECK(fw_conn_id(c) == id);
    rec *r = rec_of(c, "fw_py_writable", 0);
    g_st.writable++;
    CHECKF(r->st.active, "fw_py_writable for connection %d with no "
           "response streaming", r->rid);
    CHECK(c->flags & C_IN_APP);
    pump(r, c);
    g_in_callback = 0;
}

static void rx_fail_dump(rec *r)
{
    size_t n = r->rx.len - r->rx_off;
    if (n > 300)
        n = 300;
    fprintf(stderr, "  connection %d, pending response bytes:\n  ", r->rid);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)r->rx.d[r->rx_off + i];
        if (ch >= 0x20 && ch < 0x7f)
            fputc(ch, stderr);
        else
            fprintf(stderr, "\\x%02x", ch);
    }
    fputc('\n', stderr);
}

#define RXCHECK(r, cond, ...)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            rx_fail_dump(r);                                                 \
            CHECKF(cond, __VA_ARGS__);                                       \
        }                                                                    \
    } while (0)

/* The body bytes of what has arrived (avail at d), up to rx_left. */
static void rx_body_part(rec *r, const char *d, size_t avail)
{
    size_t n = avail < (uint64_t)r->rx_left ? avail : (size_t)r->rx_left;
    rx_body(r, d, n);
    r->rx_off += n;
    r->rx_left -= (int64_t)n;
}
/* What the client parsed from the fields of a response head. */
typedef struct {
    int64_t cl;                 /* Content-Length, -1 without */
    int ncl, nte, close_hdr, ka_hdr;
    const char *xid;            /* X-Id, NULL without */
    size_t xid_len;
    int ndate, nserver, nconn;  /* Date, Server, Connection fields */
} rx_head_fields;

/* rx_head: parse and check the fields of a response head at h into f.
 * strict (fuzz_conn): field names are tokens, values field bytes, no
 * hop-by-hop field other than one Connection. */
static void rx_fields(rec *r, const char *h, size_t hl, int strict,
                      rx_head_fields *f)
{
    memset(f, 0, sizeof *f);
    f->cl = -1;
    const char *p0 = (const char *)memchr(h, '\n', hl) + 1;
    const char *end = h + hl - 2;
    while (p0 < end) {
        const char *le = memchr(p0, '\r', (size_t)(end - p0));
        RXCHECK(r, le && le[1] == '\n', "a field line without CRLF");
        const char *colon = memchr(p0, ':', (size_t)(le - p0));
        RXCHECK(r, colon && colon > p0 && colon[1] == ' ',
                "a malformed response field");
        size_t nl = (size_t)(colon - p0);
        const char *v = colon + 2;
        size_t vl = (size_t)(le - v);
        if (strict) {
            for (size_t i = 0; i < nl; i++)
                RXCHECK(r, fw_tchar[(unsigned char)p0[i]], "a bad field name");
            for (size_t i = 0; i < vl; i++)
                RXCHECK(r, fw_is_field_byte((unsigned char)v[i]),
                        "a bad field value byte");
        }
        if (hdr_is(p0, nl, "content-length")) {
            f->ncl++;
            f->cl = 0;
            for (size_t i = 0; i < vl; i++) {
                RXCHECK(r, v[i] >= '0' && v[i] <= '9', "a bad Content-Length");
                f->cl = f->cl * 10 + (v[i] - '0');
            }
        } else if (hdr_is(p0, nl, "transfer-encoding")) {
            f->nte++;
            RXCHECK(r, vl == 7 && memcmp(v, "chunked", 7) == 0,
                    "Transfer-Encoding other than chunked");
        } else if (hdr_is(p0, nl, "date")) {
            f->ndate++;
        } else if (hdr_is(p0, nl, "server")) {
            f->nserver++;
        } else if (hdr_is(p0, nl, "connection")) {
            f->nconn++;
            if (vl == 5 && memcmp(v, "close", 5) == 0)
                f->close_hdr++;
            else if (vl == 10 && memcmp(v, "keep-alive", 10) == 0)
                f->ka_hdr++;
            else
                RXCHECK(r, 0, "Connection: %.*s", (int)vl, v);
        } else if (hdr_is(p0, nl, "x-id")) {
            f->xid = v;
            f->xid_len = vl;
        } else if (strict && (hdr_is(p0, nl, "keep-alive") ||
                              hdr_is(p0, nl, "upgrade"))) {
            RXCHECK(r, 0, "a hop-by-hop field in a response");
        }
        p0 = le + 2;
    }
    RXCHECK(r, f->ndate == 1 && f->nserver == 1, "Date x%d, Server x%d",
            f->ndate, f->nserver);
    if (strict)
        RXCHECK(r, f->nconn <= 1 && f->ncl <= 1 && f->nte <= 1 &&
                !(f->ncl && f->nte),
                "framing fields: Connection x%d, Content-Length x%d, "
                "Transfer-Encoding x%d", f->nconn, f->ncl, f->nte);
    else
        RXCHECK(r, f->ncl <= 1 && f->nte <= 1 && !(f->ncl && f->nte) &&
                f->close_hdr + f->ka_hdr <= 1, "framing fields: "
                "Content-Length x%d, Transfer-Encoding x%d, Connection x%d",
                f->ncl, f->nte, f->close_hdr + f->ka_hdr);
}

/* The end of rx_head: the fields of the response to request seq against
 * its plan p, then the framing of its body.  bodiless: status has no body
 * (204, and 304 where the target sends it); nobody: the response has no
 * body at all (that status or an answer to HEAD). */
static void rx_head_end(rec *r, const plan *p, int seq,
                        const rx_head_fields *f, int status, int bodiless,
                        int nobody)
{
    int64_t cl = f->cl;
    int ncl = f->ncl, nte = f->nte;
    RXCHECK(r, f->close_hdr == p->close_hdr, "connection %d request %d: "
            "Connection: close %s expected", r->rid, seq,
            p->close_hdr ? "is" : "is not");
    RXCHECK(r, f->ka_hdr == p->ka_hdr, "connection %d request %d: Connection: "
            "keep-alive %s expected", r->rid, seq, p->ka_hdr ? "is" : "is not");
    if (p->xid)
        RXCHECK(r, f->xid && f->xid_len == strlen(p->xid) &&
                memcmp(f->xid, p->xid, f->xid_len) == 0,
                "the X-Id of another request");
    r->rx_plan = p;
    r->rx_got = 0;
    if (bodiless)
        RXCHECK(r, ncl == 0 && nte == 0, "a %d with a body length", status);
    if (nobody) {
        RXCHECK(r, nte == 0, "a response without a body is chunked");
        if (!bodiless)
            RXCHECK(r, (cl >= 0) == (p->declared >= 0) &&
                    (cl < 0 || cl == p->declared),
                    "HEAD: Content-Length %lld, the app's length %lld",
                    (long long)cl, (long long)p->declared);
        rx_complete(r);
        return;
    }
    switch (p->framing) {
    case FR_NONE:
        RXCHECK(r, 0, "a body where none may be");
        break;
    case FR_LENGTH:
        RXCHECK(r, ncl == 1 && cl == p->declared, "Content-Length %lld, the "
                "app's %lld", (long long)cl, (long long)p->declared);
        r->rx_left = p->actual;
        r->rx_state = RX_LEN;
        break;
    case FR_CHUNKED:
        RXCHECK(r, nte == 1, "a chunked response without Transfer-Encoding");
        r->rx_state = RX_CK_SIZE;
        break;
    case FR_EOF:
        RXCHECK(r, ncl == 0 && nte == 0,
                "a close-delimited body with a length");
        r->rx_state = RX_EOF_BODY;
        break;
    }
}


/* Parse what has arrived (over TLS: the plaintext). */
static void rx_parse(rec *r)
{
    for (;;) {
        char *d = r->rx.d + r->rx_off;
        size_t avail = r->rx.len - r->rx_off;
        switch (r->rx_state) {
        case RX_DISCARD:
            r->rx_off = r->rx.len;
            return;
        case RX_AFTER_CLOSE:
            RXCHECK(r, avail == 0, "connection %d: bytes after a response "
                    "that closes the connection", r->rid);
            return;
        case RX_HEAD: {
            if (avail == 0)
                return;
            if (r->rx_next && r->rx_next->kind == Q_POISON) {
                r->rx_state = RX_DISCARD;
                continue;
            }
            char *e = memmem(d, avail, "\r\n\r\n", 4);
            if (e == NULL) {
                RXCHECK(r, avail < 65536, "a response head over 64 KiB");
                return;
            }
            size_t hl = (size_t)(e + 4 - d);
            r->rx_off += hl;
            rx_head(r, d, hl);
            continue;
        }
        case RX_LEN: {
            if (r->rx_left == 0) {
                rx_length_done(r);
                continue;
            }
            if (avail == 0)
                return;
            rx_body_part(r, d, avail);
            continue;
        }
        case RX_CK_SIZE: {
            char *e = memmem(d, avail, "\r\n", 2);
            if (e == NULL) {
                RXCHECK(r, avail < 64, "a long chunk-size line");
                return;
            }
            int64_t n = 0;
            RXCHECK(r, e > d, "an empty chunk-size line");
            for (char *p = d; p < e; p++) {
                int v = (*p >= '0' && *p <= '9') ? *p - '0'
                      : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
                RXCHECK(r, v >= 0 && n < (1LL << 40), "a bad chunk size");
                n = n * 16 + v;
            }
            r->rx_off += (size_t)(e + 2 - d);
            if (n == 0) {
                r->rx_state = RX_CK_TRAILER;
            } else {
                r->rx_left = n;
                r->rx_state = RX_CK_DATA;
            }
            continue;
        }
        case RX_CK_DATA: {
            if (avail == 0)
                return;
            rx_body_part(r, d, avail);
            if (r->rx_left == 0)
                r->rx_state = RX_CK_CRLF;
            continue;
        }
        case RX_CK_CRLF:
            if (avail < 2)
                return;
            RXCHECK(r, d[0] == '\r' && d[1] == '\n', "no CRLF after chunk data");
            r->rx_off += 2;
            r->rx_state = RX_CK_SIZE;
            continue;
        case RX_CK_TRAILER:
            if (avail < 2)
                return;
            RXCHECK(r, d[0] == '\r' && d[1] == '\n',
                    "trailer fields in a response");
            r->rx_off += 2;
            RXCHECK(r, r->rx_got == r->rx_plan->actual, "a chunked body of "
                    "%lld bytes, the app wrote %lld", (long long)r->rx_got,
                    (long long)r->rx_plan->actual);
            rx_complete(r);
            continue;
        case RX_EOF_BODY:
            if (avail == 0)
                return;
            rx_body(r, d, avail);
            r->rx_off += avail;
            continue;
        }
    }
}

static void turn(void)
{
    g_st.turns++;
    CHECK(loop_turn(g_loop, 0) == 0);
    check_loop();
}

static rec *slot_rec(uint8_t k)
{
    return g_slots[k % MAX_SLOTS];
}

/* The program of an input, as both targets read it. */
static void open_conn(int slot, uint8_t a);
static void gen_request(rec *r, const uint8_t *d);
static void send_out(rec *r, size_t most);

/* (FUZZ_TLS_TRACE, FUZZ_CONN_TRACE) op, then its next bytes. */
static void trace_op(const cursor *in, const char *name)
{
    fprintf(stderr, "op %s", name);
    for (size_t i = 0; i < 2 && i < in->n; i++)
        fprintf(stderr, " %d", in->p[i]);
    fprintf(stderr, "\n");
}

/* The ops both targets number alike: 0 OPEN k a, 1 GEN k d[GEN_LEN],
 * 14 GENSEND k d[GEN_LEN] (GEN, then send all of k).  Returns 0 for any
 * other op, which the target runs itself. */
static int common_op(cursor *in, uint8_t op, uint8_t *d)
{
    switch (op) {
    case 0: {
        uint8_t k = take(in), a = take(in);
        open_conn(k % MAX_SLOTS, a);
        return 1;
    }
    case 1: case 14: {
        rec *r = slot_rec(take(in));
        for (int i = 0; i < GEN_LEN; i++)
            d[i] = take(in);
        if (r) {
            gen_request(r, d);
            if (op == 14)
                send_out(r, (size_t)-1);
        }
        return 1;
    }
    }
    return 0;
}

/* check_loop: a connection left alone (waits: it has output to send)
 * waits on a timer, if its kind has one. */
static void check_conn_timer(fw_loop *L, fw_conn *c, int waits)
{
    int kind = waits ? T_WRITE
             : c->state == CS_HEAD ? ((c->flags & C_SERVED) &&
                                      c->in.len == c->in.off ? T_IDLE
                                                             : T_HEAD)
             : c->state == CS_BODY ? T_BODY
             : c->state == CS_LINGER ? T_LINGER : T_NONE;
    if (kind != T_NONE && L->timeout_ms[kind] > 0)
        CHECKF(c->timer == kind, "connection %llu in state %d waits on "
               "timer %d, not %d", (unsigned long long)c->id, c->state,
               c->timer, kind);
}

/* check_loop: the timer lists are linked both ways, in deadline order, on
 * their kind (and, with open_only, hold no closed connection); they hold
 * every connection with a timer. */
static void check_timer_lists(fw_loop *L, int open_only)
{
    int timed = 0;
    for (int k = 1; k < T_KINDS; k++) {
        fw_conn *prev = NULL;
        for (fw_conn *c = L->thead[k]; c; c = c->tnext) {
            CHECK(c->tprev == prev && c->timer == k);
            CHECK(prev == NULL || prev->deadline <= c->deadline);
            if (open_only)
                CHECK(c->state != CS_CLOSED);
            prev = c;
            timed++;
        }
        CHECK(L->ttail[k] == prev);
    }
    int with_timer = 0;
    for (fw_conn *c = L->conns; c; c = c->next)
        with_timer += c->timer != T_NONE;
    CHECK(with_timer == timed);
}

/* check_loop: a bound record r is in the loop's list exactly when its
 * server descriptor is open; one that left it must not be streaming.
 * Returns 1 when r is in the list. */
static int check_rec_listed(fw_loop *L, rec *r)
{
    int in_list = 0;
    for (fw_conn *c = L->conns; c; c = c->next)
        if (c->id == r->id) {
            in_list = 1;
            CHECK(c == r->conn);
        }
    struct stat st;
    int fd_open = fstat(r->sfd, &st) == 0 && st.st_ino == r->sino;
    CHECKF(in_list == fd_open, "connection %d: %s the loop's list, its "
           "descriptor %s", r->rid, in_list ? "in" : "not in",
           fd_open ? "open" : "closed");
    if (in_list)
        return 1;
    CHECKF(!r->st.active, "connection %d closed during a streamed "
           "response without fw_py_closed", r->rid);
    r->server_gone = 1;
    return 0;
}

/* open_conn: a client socket (named prefix.pid.rid in the abstract
 * namespace) connected to the listener g_listen_fd. */
static int listener_client(const char *prefix, int rid)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un me = {.sun_family = AF_UNIX};
    int n = snprintf(me.sun_path + 1, sizeof me.sun_path - 1, "%s.%u.%d",
                     prefix, (unsigned)getpid(), rid);
    CHECK(bind(fd, (struct sockaddr *)&me,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                           (size_t)n)) == 0);
    if (g_small_bufs)
        small_bufs(fd);
    struct sockaddr_un to;
    socklen_t tl = sizeof to;
    CHECK(getsockname(g_listen_fd, (struct sockaddr *)&to, &tl) == 0);
    CHECKF(connect(fd, (struct sockaddr *)&to, tl) == 0, "connect: %s",
           strerror(errno));
    return fd;
}

/* open_conn: a connected pair, client end sv[0], server end sv[1]. */
static void client_pair(int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                     sv) == 0);
    if (g_small_bufs) {
        small_bufs(sv[0]);
        small_bufs(sv[1]);
    }
}

/* rx_head: the status line of a response head at h (the response to
 * r->rx_next), and a 100 Continue only for a request that expects one. */
static int rx_status_line(rec *r, const char *h, size_t hl)
{
    req *q = r->rx_next;
    RXCHECK(r, q != NULL, "connection %d: a response to no request", r->rid);
    RXCHECK(r, hl >= 14 && memcmp(h, "HTTP/1.1 ", 9) == 0 &&
            h[9] >= '1' && h[9] <= '5' && h[10] >= '0' && h[10] <= '9' &&
            h[11] >= '0' && h[11] <= '9' && h[12] == ' ',
            "a malformed status line");
    int status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    if (status == 100)
        RXCHECK(r, q->expect100 && !q->http10 && !q->saw100,
                "connection %d: 100 Continue for request %d, which did not "
                "ask for it (or got it already)", r->rid, q->seq);
    return status;
}

/* The reason phrase of status s. */
static const char *reason_of(int s);

/* rx_head: the plan of a response the core gave itself (an error with its
 * reason phrase and a newline as the body, then the close). */
static const plan *rx_core_plan(rec *r, int status)
{
    plan *c = &r->rx_core;
    memset(c, 0, sizeof *c);
    c->status = status;
    c->core_error = 1;
    c->framing = FR_LENGTH;
    c->declared = c->actual = (int64_t)strlen(reason_of(status)) + 1;
    c->close_hdr = 1;
    c->closes = 1;
    return c;
}

/* rx_head: a core error has its own reason phrase. */
static void rx_check_reason(rec *r, const char *h, size_t hl, int status)
{
    const char *reason = reason_of(status);
    RXCHECK(r, hl >= 15 + strlen(reason) &&
            memcmp(h + 13, reason, strlen(reason)) == 0 &&
            memcmp(h + 13 + strlen(reason), "\r\n", 2) == 0,
            "status %d with another reason phrase", status);
}

/* serve: the body the app got (spooled to body_fd when body_fd >= 0,
 * otherwise body_len bytes at body) is the one the client sent (len bytes
 * of pattern seed); with at_start, a spooled one is read from its start. */
static void check_app_body(int body_fd, int at_start, const char *body,
                           size_t body_len, int64_t len, uint32_t seed)
{
    if (body_fd >= 0) {
        struct stat st;
        CHECK(fstat(body_fd, &st) == 0);
        CHECKF(st.st_size == len, "spooled body of %lld bytes, "
               "sent %lld", (long long)st.st_size, (long long)len);
        if (at_start)
            CHECKF(lseek(body_fd, 0, SEEK_CUR) == 0,
                   "a spooled body is not at its start");
        char buf[16384];
        int64_t at = 0;
        while (at < len) {
            ssize_t n = pread(body_fd, buf, sizeof buf, at);
            CHECK(n > 0);
            for (ssize_t i = 0; i < n; i++)
                CHECKF((uint8_t)buf[i] == pat(seed, (uint64_t)(at + i)),
                       "spooled body byte %lld differs",
                       (long long)(at + i));
            at += n;
        }
        close(body_fd);
    } else {
        CHECKF((int64_t)body_len == len, "body of %zu bytes, "
               "sent %lld", body_len, (long long)len);
        for (size_t i = 0; i < body_len; i++)
            CHECKF((uint8_t)body[i] == pat(seed, i),
                   "body byte %zu differs", i);
    }
}

/* The app's callbacks: none runs inside another. */
static void callback_enter(void *ud, const char *name)
{
    CHECK(ud == &g_loop);
    CHECKF(!g_in_callback, "%s inside another callback", name);
    g_in_callback = 1;
    g_progress++;
}

/* fw_py_batch: n requests of counts[i] values each, total in all (and,
 * with distinct, n different connections). */
static void check_batch_counts(fw_conn **conns, const int *counts, int n,
                               int total, int distinct)
{
    int sum = 0;
    for (int i = 0; i < n; i++) {
        CHECKF(counts[i] >= 1, "a batch count of %d", counts[i]);
        sum += counts[i];
        for (int j = 0; distinct && j < i; j++)
            CHECKF(conns[i] != conns[j], "a connection twice in one batch");
    }
    CHECKF(sum == total, "batch counts add up to %d, its block has %d values",
           sum, total);
}

#endif /* FUZZ_HARNESS_REC_H */
