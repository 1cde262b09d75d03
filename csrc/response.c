/*
 * response.c - response heads, body framing and the canned error replies.
 *
 * Python hands over the status and headers as one latin-1 block,
 * "STATUS\nname\0value\nname\0value...", and C checks every byte of it before anything
 * is queued: a header value can never smuggle a CR or LF onto the wire.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "core.h"

/* ---- the Date header, rebuilt once a second ---- */

void response_date_refresh(fw_loop *loop, int64_t sec)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu",
                                    "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t t = (time_t)sec;
    gmtime_r(&t, &tm);
    /* Spelled out by hand: strftime would follow the app's locale. */
    int n = snprintf(loop->date, sizeof loop->date,
                     "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    loop->date_len = n > 0 && (size_t)n < sizeof loop->date ? (size_t)n : 0;
    loop->date_sec = sec;
}

/* ---- canned errors ---- */

const char *response_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

int response_error(fw_conn *c, int status)
{
    fw_loop *loop = c->loop;
    const char *reason = response_reason(status);
    char head[512];
    size_t blen = strlen(reason) + 1;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%.*sServer: %s\r\n\r\n",
                     status, reason, blen, (int)loop->date_len, loop->date,
                     loop->server_name);
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;
    c->flags |= C_CLOSE_AFTER | C_ERROR_CLOSE;
    c->status = status;
    if (loop->alog) {
        alog_status(c, status);
        alog_bytes(c, (c->flags & C_REQ_HEAD) ? 0 : (int64_t)blen);
    }
    if (conn_out_append(c, head, (size_t)n) < 0)
        return -1;
    if (!(c->flags & C_REQ_HEAD)) {
        conn_out_append(c, reason, blen - 1);
        conn_out_append(c, "\n", 1);
    }
    return 0;
}

/* ---- checking the head block from Python ---- */

enum { AH_OTHER, AH_LENGTH, AH_DATE, AH_SERVER, AH_CONNECTION, AH_HOP };

static int app_header_kind(const char *n, size_t len)
{
#define IS(lit) (len == sizeof(lit) - 1 && strncasecmp(n, lit, len) == 0)
    if (IS("content-length"))
        return AH_LENGTH;
    if (IS("date"))
        return AH_DATE;
    if (IS("server"))
        return AH_SERVER;
    if (IS("connection"))
        return AH_CONNECTION;
    /* Hop-by-hop fields are the server's business (PEP 3333): dropped. */
    if (IS("transfer-encoding") || IS("keep-alive") || IS("upgrade") ||
        IS("proxy-connection") || IS("te") || IS("trailer"))
        return AH_HOP;
    return AH_OTHER;
#undef IS
}

/* Decimal digits of v at w; returns the end.  (printf is ten times
 * slower, and this runs for every response.) */
static char *put_u64(char *w, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *w++ = tmp[--n];
    return w;
}


/* Validate the whole block.  Returns 0, or -2 with a logged reason. */
static int check_head(fw_loop *loop, const char *h, size_t hlen, int nfields,
                      head_info *hi)
{
    const char *end = h + hlen;
    const char *p = h;
    const char *nl = memchr(p, '\n', hlen);
    const char *se = nl ? nl : end;
    memset(hi, 0, sizeof *hi);
    hi->length = -1;
    if (se - p < 3 || p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9' || (se - p > 3 && p[3] != ' ')) {
        loop_log(loop, FW_LOG_ERROR, "invalid status line from the app");
        return -2;
    }
    for (const char *q = p + 3; q < se; q++)
        if (!fw_is_field_byte((unsigned char)*q)) {
            loop_log(loop, FW_LOG_ERROR, "control character in the status");
            return -2;
        }
    hi->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (hi->status < 200) {
        loop_log(loop, FW_LOG_ERROR, "a 1xx status cannot end a response");
        return -2;
    }
    int seen = 0;
    p = se;
    while (p < end) {
        p++;                    /* the '\n' */
        const char *n = p;
        const char *pe = memchr(n, '\n', (size_t)(end - n));
        if (pe == NULL)
            pe = end;
        const char *ne = memchr(n, '\0', (size_t)(pe - n));
        if (ne == NULL) {
            loop_log(loop, FW_LOG_ERROR,
                     "a header is not a (name, value) pair of str");
            return -2;
        }
        const char *v = ne + 1, *ve = pe;
        if (n == ne) {
            loop_log(loop, FW_LOG_ERROR, "empty header name");
            return -2;
        }
        for (const char *q = n; q < ne; q++)
            if (!fw_tchar[(unsigned char)*q]) {
                loop_log(loop, FW_LOG_ERROR, "invalid header name %.*s",
                         (int)(ne - n), n);
                return -2;
            }
        /* A second NUL means a tuple of more than two items. */
        for (const char *q = v; q < ve; q++)
            if (!fw_is_field_byte((unsigned char)*q)) {
                loop_log(loop, FW_LOG_ERROR,
                         "control character in header %.*s, or a header "
                         "that is not a (name, value) pair", (int)(ne - n), n);
                return -2;
            }
        switch (app_header_kind(n, (size_t)(ne - n))) {
        case AH_LENGTH: {
            int64_t len = 0;
            size_t vl = (size_t)(ve - v);
            if (vl == 0 || vl > 18 || hi->length >= 0)
                goto bad_length;
            for (const char *q = v; q < ve; q++) {
                if (*q < '0' || *q > '9')
                    goto bad_length;
                len = len * 10 + (*q - '0');
            }
            hi->length = len;
            break;
        bad_length:
            loop_log(loop, FW_LOG_ERROR, "invalid Content-Length from the app");
            return -2;
        }
        case AH_DATE:
            hi->has_date = 1;
            break;
        case AH_SERVER:
            hi->has_server = 1;
            break;
        case AH_CONNECTION:
            for (const char *q = v; q + 5 <= ve; q++)
                if (strncasecmp(q, "close", 5) == 0)
                    hi->close = 1;
            break;
        default:
            break;
        }
        seen++;
        p = ve;
    }
    if (seen != nfields) {
        loop_log(loop, FW_LOG_ERROR,
                 "malformed headers: a name or value holds a line break, "
                 "or a header is not a (name, value) pair");
        return -2;
    }
    return 0;
}

/* The status line and the app's headers in wire form, at w; returns the
 * end.  Needs at most 2 * hlen + 16 bytes. */
static char *put_app_head(char *w, const char *h, size_t hlen)
{
    const char *end = h + hlen;
    /* RFC 9110 8.6: no Content-Length in a 204, whatever the app says. */
    int no_length = hlen >= 3 && memcmp(h, "204", 3) == 0;
    const char *p = memchr(h, '\n', hlen);
    if (p == NULL)
        p = end;
    memcpy(w, "HTTP/1.1 ", 9);
    w += 9;
    memcpy(w, h, (size_t)(p - h));
    w += p - h;
    if (p - h == 3)
        *w++ = ' ';             /* status-line needs the SP, reason or not */
    *w++ = '\r';
    *w++ = '\n';
    while (p < end) {
        const char *n = p + 1;
        const char *ve = memchr(n, '\n', (size_t)(end - n));
        if (ve == NULL)
            ve = end;
        const char *ne = memchr(n, '\0', (size_t)(ve - n));
        const char *v = ne + 1;
        int kind = app_header_kind(n, (size_t)(ne - n));
        if (kind != AH_HOP && kind != AH_CONNECTION &&
            !(kind == AH_LENGTH && no_length)) {
            memcpy(w, n, (size_t)(ne - n));
            w += ne - n;
            *w++ = ':';
            *w++ = ' ';
            memcpy(w, v, (size_t)(ve - v));
            w += ve - v;
            *w++ = '\r';
            *w++ = '\n';
        }
        p = ve;
    }
    return w;
}

/*
 * Queue the head.  The app mostly sends the same block again, so the last
 * one checked is remembered with its wire form: then the check and the
 * translation are one comparison and one copy.
 */
static int write_head(fw_conn *c, const char *h, size_t hlen, int nfields,
                      int64_t length)
{
    fw_loop *loop = c->loop;
    head_memo *m = &loop->memo;
    head_info info;
    const head_info *hi = &m->hi;
    int known = hlen != 0 && hlen == m->src_len && nfields == m->nfields &&
                memcmp(h, m->src, hlen) == 0;
    if (!known) {
        if (check_head(loop, h, hlen, nfields, &info) < 0)
            return -2;
        hi = &info;
    }
    if (conn_out_reserve(c, hlen * 2 + 256) < 0)
        return -1;
    /* The block starts with the 3-digit status. */
    c->status = (h[0] - '0') * 100 + (h[1] - '0') * 10 + (h[2] - '0');
    if (loop->alog)
        alog_status(c, c->status);
    char *w = c->out.data + c->out.len;
    if (known) {
        memcpy(w, m->wire, m->wire_len);
        w += m->wire_len;
    } else {
        char *start = w;
        w = put_app_head(w, h, hlen);
        if (hlen <= sizeof m->src) {
            memcpy(m->src, h, hlen);
            m->src_len = hlen;
            m->nfields = nfields;
            m->hi = info;
            m->wire_len = (size_t)(w - start);
            memcpy(m->wire, start, m->wire_len);
            hi = &m->hi;
        }
    }
    if (!hi->has_date) {
        memcpy(w, loop->date, loop->date_len);
        w += loop->date_len;
    }
    if (!hi->has_server) {
        memcpy(w, loop->server_line, loop->server_line_len);
        w += loop->server_line_len;
    }
    int nobody_status = hi->status == 204 || hi->status == 304;
    if (nobody_status) {
        c->out_mode = OUT_NOBODY;
        c->resp_left = 0;
    } else if (hi->length >= 0) {
        c->out_mode = OUT_LENGTH;
        c->resp_left = hi->length;
    } else if (length > 0 || (length == 0 && !(c->flags & C_REQ_HEAD))) {
        /* (An empty body to a HEAD says nothing of what GET would send,
         * as Flask answers HEAD: then no length rather than a wrong one,
         * RFC 9110 9.3.2.) */
        c->out_mode = OUT_LENGTH;
        c->resp_left = length;
        memcpy(w, "Content-Length: ", 16);
        w = put_u64(w + 16, (uint64_t)length);
        *w++ = '\r';
        *w++ = '\n';
    } else if (c->flags & C_REQ_HEAD) {
        c->out_mode = OUT_NOBODY;
    } else if (!(c->flags & C_REQ_HTTP10)) {
        c->out_mode = OUT_CHUNKED;
        memcpy(w, "Transfer-Encoding: chunked\r\n", 28);
        w += 28;
    } else {
        c->out_mode = OUT_CLOSE;
        c->flags |= C_CLOSE_AFTER;
    }
    if (c->flags & C_REQ_HEAD)
        c->out_mode = OUT_NOBODY;  /* the head says it all */
    if (hi->close || !(c->flags & C_KEEPALIVE) || loop->stopping ||
        share_hand_back(c))
        c->flags |= C_CLOSE_AFTER;
    if (c->flags & C_CLOSE_AFTER) {
        memcpy(w, "Connection: close\r\n", 19);
        w += 19;
    } else if (c->flags & C_REQ_HTTP10) {
        memcpy(w, "Connection: keep-alive\r\n", 24);
        w += 24;
    }
    *w++ = '\r';
    *w++ = '\n';
    c->out.len = (size_t)(w - c->out.data);
    return 0;
}

/* ---- the calls Python makes ---- */

static int response_write(fw_conn *c, const char *data, size_t len);

static int response_start(fw_conn *c, const char *head, size_t hlen, int nfields,
                      int64_t length, const char *data, size_t dlen)
{
    if (c->flags & C_DEAD)
        return -1;
    if (c->resp != RS_NONE)
        return -2;
    int r = write_head(c, head, hlen, nfields, length);
    if (r == -2)
        return -2;
    if (r < 0) {
        c->flags |= C_DEAD;
        return -1;
    }
    c->resp = RS_STREAM;
    if (dlen)
        return response_write(c, data, dlen);
    if (c->out_mode == OUT_NOBODY) {
        c->resp = RS_DONE;      /* nothing more can follow */
        return 3;
    }
    if (c->out_mode == OUT_LENGTH && c->resp_left == 0) {
        c->resp = RS_DONE;
        return 2;
    }
    return 1;
}

/*
 * Queue body bytes.  A large piece is sent straight from the caller's
 * memory, and what the socket does not take at once stays there (c->ext)
 * instead of being copied: output memory stays bounded however large the
 * app's bytes are.  Returns 1 when C goes on referring to `data` (the
 * caller must keep it alive until fw_py_writable or fw_py_closed), 0 when
 * it does not, -1 when the peer is gone.
 */
static int queue_body(fw_conn *c, const char *data, size_t len)
{
    if (len < FW_DIRECT_WRITE || c->file || c->ext) {
        if (conn_out_append(c, data, len) < 0) {
            c->flags |= C_DEAD;
            return -1;
        }
        return 0;
    }
    /* Over TLS the bytes become records in conn_flush: they wait there
     * (c->ext), behind the queued output, and are sent as the socket takes
     * them, still without a copy. */
    while (len && (c->flags & C_WRITABLE) && c->tls == NULL) {
        struct iovec iov[2];
        size_t pend = conn_out_pending(c);
        int k = 0;
        if (pend) {
            iov[k].iov_base = c->out.data + c->out.off;
            iov[k++].iov_len = pend;
        }
        iov[k].iov_base = (void *)data;
        iov[k++].iov_len = len;
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t n = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
        if (n > 0) {
            c->loop->m.bytes_out += (uint64_t)n;
            size_t from_out = (size_t)n < pend ? (size_t)n : pend;
            conn_write_progress(c);
            c->out.off += from_out;
            data += (size_t)n - from_out;
            len -= (size_t)n - from_out;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            c->flags &= ~C_WRITABLE;
        } else {
            c->flags |= C_DEAD;
            return -1;
        }
    }
    if (len == 0)
        return 0;
    fw_ext *x = calloc(1, sizeof *x);
    if (x == NULL) {
        c->flags |= C_DEAD;
        return -1;
    }
    x->data = data;
    x->left = len;
    c->ext = x;
    return 1;
}

static int response_write(fw_conn *c, const char *data, size_t len)
{
    if (c->flags & C_DEAD)
        return -1;
    if (c->resp != RS_STREAM)
        return -2;
    if (c->out_mode == OUT_NOBODY) {
        c->resp = RS_DONE;
        return 3;
    }
    if (len == 0)
        return 1;
    int complete = 0, held;
    if (c->out_mode == OUT_LENGTH) {
        if ((int64_t)len > c->resp_left) {
            complete = 1;
            if (!(c->flags & C_CLOSE_AFTER) || c->resp_left)
                loop_log(c->loop, FW_LOG_ERROR,
                         "the app sent more than its Content-Length; "
                         "the rest is dropped and the connection closed");
            c->flags |= C_CLOSE_AFTER;
            len = (size_t)c->resp_left;
        }
        c->resp_left -= (int64_t)len;
        if (c->loop->alog)
            alog_bytes(c, (int64_t)len);
        held = len ? queue_body(c, data, len) : 0;
        complete |= c->resp_left == 0;
    } else if (c->out_mode == OUT_CHUNKED) {
        if (c->loop->alog)
            alog_bytes(c, (int64_t)len);
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        if (conn_out_append(c, size, (size_t)n) < 0) {
            c->flags |= C_DEAD;
            return -1;
        }
        held = queue_body(c, data, len);
        if (held > 0) {
            memcpy(c->ext->tail, "\r\n", 2);
            c->ext->tail_len = 2;
        } else if (held == 0 && conn_out_append(c, "\r\n", 2) < 0) {
            c->flags |= C_DEAD;
            return -1;
        }
    } else {
        if (c->loop->alog)
            alog_bytes(c, (int64_t)len);
        held = queue_body(c, data, len);
    }
    if (held < 0)
        return -1;
    if (held) {
        /* C sends from the caller's bytes: nothing more until they are
         * out, and the response stays open until Python ends it then. */
        conn_flush(c);
        return (c->flags & C_DEAD) ? -1 : 0;
    }
    if (complete) {
        c->resp = RS_DONE;      /* the declared length is used up */
        return 2;
    }
    /* PEP 3333: a block is on its way before the app is asked for the
     * next one, which may take long.  Inline, the app runs on the loop's
     * thread: the block is sent now.  On an app thread, the loop sends it
     * (leave() kicks the connection) while the app produces the next, and
     * the blocks that come meanwhile go out in one send. */
    if (fw_tls_worker == NULL) {
        conn_flush(c);
        if (c->flags & C_DEAD)
            return -1;
    }
    return conn_out_pending(c) >= FW_OUT_HIGH ? 0 : 1;
}

static int response_sendfile(fw_conn *c, int fd, int64_t offset, int64_t count)
{
    if (c->flags & C_DEAD)
        return -1;
    if (c->resp != RS_STREAM || c->file || offset < 0 || count < 0 ||
        c->out_mode == OUT_CHUNKED)
        return -2;
    if (c->out_mode == OUT_NOBODY || count == 0)
        return 1;
    if (c->out_mode == OUT_LENGTH) {
        if (count > c->resp_left)
            count = c->resp_left;   /* the app's Content-Length rules */
        c->resp_left -= count;
    }
    if (c->loop->alog)
        alog_bytes(c, count);
    fw_file *f = malloc(sizeof *f);
    if (f == NULL)
        return -1;
    f->fd = fd;
    f->off = offset;
    f->left = count;
    c->file = f;
    if (conn_flush(c) < 0)
        return -1;
    return c->file ? 0 : 1;
}

static int response_end(fw_conn *c)
{
    if (c->resp != RS_STREAM)
        return -2;
    if (c->out_mode == OUT_CHUNKED && !(c->flags & C_DEAD))
        conn_out_append(c, "0\r\n\r\n", 5);
    if (c->out_mode == OUT_LENGTH && c->resp_left > 0) {
        loop_log(c->loop, FW_LOG_ERROR,
                 "the app sent %lld bytes less than its Content-Length; "
                 "closing the connection",
                 (long long)c->resp_left);
        c->flags |= C_CLOSE_AFTER;
    }
    c->resp = RS_DONE;
    return (c->flags & C_DEAD) ? -1 : 1;
}

static int response_simple(fw_conn *c, const char *head, size_t hlen, int nfields,
                       const char *body, size_t blen)
{
    int r = response_start(c, head, hlen, nfields, (int64_t)blen, body,
                           blen);
    if (r == -2 || r == -1)
        return r;
    if (c->ext)
        return 0;               /* sending from the body in place: Python
                                   keeps it and ends the response later */
    if (c->resp == RS_STREAM)
        response_end(c);
    return (c->flags & C_DEAD) ? -1 : 1;
}

static int response_error_call(fw_conn *c, int status)
{
    if (c->resp != RS_NONE)
        return -2;
    if (c->flags & C_DEAD)
        return -1;
    response_error(c, status);
    c->resp = RS_DONE;
    return 1;
}

/* A response cut short.  Where only the close delimits the body, the
 * close is a reset, so that the client cannot take it for the end. */
void response_abort(fw_conn *c)
{
    if (c->resp == RS_STREAM && c->out_mode == OUT_CLOSE)
        c->flags |= C_RESET;
    c->flags |= C_CLOSE_AFTER;
    c->resp = RS_DONE;
}

/* Past the graceful deadline (or after a second signal) a response still
 * streaming is cut: the loop gets control between blocks, and an app
 * that keeps producing must not hold the shutdown past its bound. */
int stop_passed(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (loop->stopping == 2 ||
        (loop->stopping == 1 && loop_now(loop) >= loop->stop_deadline)) {
        c->flags |= C_DEAD;
        return 1;
    }
    return 0;
}

/*
 * Who may act on `c`.  Python may hold a connection pointer past its
 * request (an app that keeps write() for later).  Inline, C acts only on
 * the thread running the app call (another thread's call is refused
 * before `c` is read) and for a connection whose Python call is on the
 * stack and that is still open.
 * On an app thread, only for the request that thread was given, which is
 * compared before `c` is read at all (a pointer kept from another request
 * may be freed), and with the loop's mutex taken: returns 1 then, and
 * leave() must follow.  Returns -1 when the call must fail.
 */
static int enter(fw_conn *c)
{
    fw_worker *w = fw_tls_worker;
    if (w == NULL) {            /* inline: only from within the app call */
        if (!fw_tls_in_call) {
            errno = EPERM;      /* a thread of the app's own: Python says so */
            return -1;
        }
        if (c->state != CS_CLOSED && (c->flags & C_IN_APP))
            return 0;
        errno = EPIPE;
        return -1;
    }
    pthread_mutex_lock(&w->loop->mu);
    if (w->job.conn != c || c->state == CS_CLOSED || (c->flags & C_EXPIRED)) {
        pthread_mutex_unlock(&w->loop->mu);
        errno = EPIPE;
        return -1;
    }
    return 1;
}

/* Send what the round's held responses have queued, in the batch's order. */
void response_release_held(fw_loop *loop)
{
    if (loop->held_n == 0)
        return;
    for (int i = 0; i < loop->batch_n; i++) {
        fw_conn *c = loop->batch_conns[i];
        if (c->flags & C_HELD) {
            c->flags &= ~C_HELD;
            if (c->state != CS_CLOSED)
                conn_flush(c);
        }
    }
    loop->held_n = 0;
}

/* Whether a finished response in a batch waits for the round's burst of
 * sends.  Sent as each app call ends, a response wakes the client once per
 * response when app calls take longer than the client needs to read one
 * (it sleeps again in between), and on a local client the wake-up is paid
 * in the send.  Held, the round's responses go out together when the
 * round ends (conn_run after fw_py_batch) or, if that is not within
 * FW_HOLD_US of the first held one, by the first call after that moment.
 * Only a small response that is complete is held: a stream's blocks, and
 * a body still being produced, are sent at once. */
static int hold(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->resp != RS_DONE || c->ext || c->file || (c->flags & C_CLOSE_AFTER) ||
        conn_out_pending(c) > FW_HOLD_BYTES)
        return 0;
    int64_t now = loop_clock_us();
    if (loop->held_n == 0) {
        loop->held_since_us = now;
    } else if (now - loop->held_since_us >= FW_HOLD_US) {
        response_release_held(loop);
        return 0;
    }
    c->flags |= C_HELD;
    loop->held_n++;
    return 1;
}

/* Within a batch, what a call queued leaves the shared write buffer
 * before Python moves on to the next connection, which needs it free.  It
 * is sent now unless the connection has more requests buffered (the next
 * round answers one of those, and one send then carries both) or it is a
 * finished response held for the round's burst (see hold()).  On an app
 * thread, the loop is told to send it, and the mutex is released. */
static int leave(fw_conn *c, int how, int rc)
{
    if (how == 1) {
        pool_kick(c);
        pthread_mutex_unlock(&c->loop->mu);
    } else if (c->flags & C_BATCHED) {
        /* The time since the round's previous call ended was this
         * request's app call (the slow-call warning names the slowest). */
        fw_loop *loop = c->loop;
        int64_t now = loop_clock_ms();
        if (now - loop->round_mark_ms > loop->round_slowest_ms) {
            loop->round_slowest_ms = now - loop->round_mark_ms;
            loop->round_slowest = c;
        }
        loop->round_mark_ms = now;
        if ((c->in.len == c->in.off || conn_out_pending(c) >= FW_OUT_HIGH) &&
            !(c->flags & C_HELD) && !hold(c))
            conn_flush(c);
        conn_out_settle(c);
    }
    return rc;
}

void fw_response_abort(fw_conn *c)
{
    int how = enter(c);
    if (how < 0)
        return;
    response_abort(c);
    leave(c, how, 0);
}

int fw_response_start(fw_conn *c, const char *head, size_t hlen, int nfields,
                      int64_t length, const char *data, size_t dlen)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    return leave(c, how, response_start(c, head, hlen, nfields, length, data,
                                        dlen));
}

int fw_response_write(fw_conn *c, const char *data, size_t len)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    if (stop_passed(c))
        return leave(c, how, -1);
    return leave(c, how, response_write(c, data, len));
}

int fw_response_sendfile(fw_conn *c, int fd, int64_t offset, int64_t count)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    return leave(c, how, response_sendfile(c, fd, offset, count));
}

int fw_response_end(fw_conn *c)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    return leave(c, how, response_end(c));
}

int fw_response_simple(fw_conn *c, const char *head, size_t hlen, int nfields,
                       const char *body, size_t blen)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    return leave(c, how, response_simple(c, head, hlen, nfields, body, blen));
}

/* fw_response_simple, and when the response is complete (1), also
 * fw_pool_next: one crossing and one hold of the mutex for both. */
int fw_pool_simple_next(fw_loop *loop, fw_job *job, fw_conn *c,
                        const char *head, size_t hlen, int nfields,
                        const char *body, size_t blen)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    int rc = response_simple(c, head, hlen, nfields, body, blen);
    if (how != 1 || rc != 1)
        return leave(c, how, rc);
    return pool_next_locked(loop, (fw_worker *)job) ? FW_NEXT_TAKEN
                                                    : FW_POOL_STOPS;
}

int fw_response_error(fw_conn *c, int status)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    return leave(c, how, response_error_call(c, status));
}

/* Inline: poll the socket, sending, until the output drained (the app runs
 * on the loop's thread, so nothing else sends meanwhile).  On an app
 * thread: the loop sends, and this waits for it. */
int fw_conn_drain(fw_conn *c)
{
    int how = enter(c);
    if (how < 0)
        return -1;
    if (how == 1) {
        int r = pool_drain(c);
        pthread_mutex_unlock(&c->loop->mu);
        return r;
    }
    if (stop_passed(c))
        return -1;
    for (;;) {
        if (conn_flush(c) < 0)
            return -1;
        if (conn_out_pending(c) < FW_OUT_LOW && c->file == NULL &&
            c->ext == NULL)
            return 1;
        /* A TLS write may wait for input instead (tls_want). */
        short events = (c->tls_want & TLS_WRITE_WANTS_IN) ? POLLIN : POLLOUT;
        struct pollfd pfd = {.fd = c->io.fd, .events = events};
        int timeout = c->loop->cfg.write_timeout_ms;
        int r = poll(&pfd, 1, timeout > 0 ? timeout : -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            c->flags |= C_DEAD;
            return -1;
        }
        c->tls_want &= ~TLS_WRITE_WANTS_IN;
        c->flags |= C_WRITABLE;
    }
}
