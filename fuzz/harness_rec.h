/*
 * harness_rec.h - what fuzz_conn.c and fuzz_tls.c share that works on
 * their connection record: finding a record, ending its response stream,
 * fw_py_writable, the client's response parser past the head, one loop
 * turn.
 *
 * Static definitions, included once by each target where its `rec` type
 * and the global state of an input (g_loop, g_recs, g_slots, g_st,
 * g_in_callback, g_progress, ...) are defined.  rec has: next, id, rid,
 * bound, via_listener; st (held, memfd, active, r); rx, rx_off, rx_state,
 * rx_left, rx_got, rx_plan (actual), rx_next (kind).  The target defines
 * the functions declared below.
 */
#ifndef FUZZ_HARNESS_REC_H
#define FUZZ_HARNESS_REC_H

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

#endif /* FUZZ_HARNESS_REC_H */
