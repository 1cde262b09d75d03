/*
 * conn.c - one connection's state machine.
 *
 * read -> parse head -> receive body -> hand over to Python -> write ->
 * keep-alive or close.  Input and output use the loop's shared buffers while
 * a connection is being served, and a connection keeps its own buffer only
 * when bytes are left over (a partial request, unsent output), so an idle
 * keep-alive connection holds no buffer at all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
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
    c->head_since = loop_now(loop);
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

static void body_free(fw_body *b)
{
    if (b == NULL)
        return;
    if (b->fd >= 0)
        close(b->fd);
    free(b->env);
    free(b->keys);
    free(b->mem);
    free(b);
}

static int output_waits(const fw_conn *c);

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

/* ---- buffers ---- */

size_t conn_out_pending(const fw_conn *c)
{
    return c->out.len - c->out.off;
}

/* Make room for `extra` more output bytes; borrows the shared buffer when
 * the connection has none, and moves to its own when that is too small. */
int conn_out_reserve(fw_conn *c, size_t extra)
{
    fw_loop *loop = c->loop;
    fw_buf *b = &c->out;
    if (b->data == NULL && !loop->wbuf_busy && extra <= FW_WBUF_SIZE &&
        !(c->flags & C_JOB)) {       /* app threads write at any time */
        loop->wbuf_busy = 1;
        c->flags |= C_OUT_BORROWED;
        b->data = loop->wbuf;
        b->cap = FW_WBUF_SIZE;
        b->off = b->len = 0;
    }
    if (b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= extra)
        return 0;
    size_t pending = b->len - b->off;
    if (!fw_fits(pending, SIZE_MAX / 2, extra))
        return -1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < pending + extra)
        cap *= 2;
    char *nd = malloc(cap);
    if (nd == NULL)
        return -1;
    if (pending)
        memcpy(nd, b->data + b->off, pending);
    if (c->flags & C_OUT_BORROWED) {
        loop->wbuf_busy = 0;
        c->flags &= ~C_OUT_BORROWED;
    } else {
        free(b->data);
    }
    b->data = nd;
    b->cap = cap;
    b->off = 0;
    b->len = pending;
    return 0;
}

int conn_out_append(fw_conn *c, const char *data, size_t len)
{
    if (conn_out_reserve(c, len) < 0)
        return -1;
    memcpy(c->out.data + c->out.len, data, len);
    c->out.len += len;
    return 0;
}

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

/* Output left in the shared buffer moves to an own one; an idle own one
 * is freed. */
void conn_out_settle(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->flags & C_OUT_BORROWED) {
        size_t left = conn_out_pending(c);
        char *own = NULL;
        if (left) {
            own = malloc(left);
            if (own == NULL)
                c->flags |= C_DEAD;
            else
                memcpy(own, c->out.data + c->out.off, left);
        }
        loop->wbuf_busy = 0;
        c->flags &= ~C_OUT_BORROWED;
        c->out.data = own;
        c->out.off = 0;
        c->out.len = c->out.cap = own ? left : 0;
    } else if (c->out.data && c->out.off == c->out.len) {
        free(c->out.data);
        memset(&c->out, 0, sizeof c->out);
    }
}

uint64_t fw_conn_id(fw_conn *c)
{
    return c->id;
}

fw_extra *fw_request_extra(fw_conn *c)
{
    return &c->loop->extra;
}

/* ---- I/O ---- */

/* Bytes the kernel still holds for the peer (unsent or unacknowledged). */
static uint32_t kernel_queue(const fw_conn *c)
{
    int q = 0;
    /* TIOCOUTQ is SIOCOUTQ, and every libc's <sys/ioctl.h> has it. */
    if (ioctl(c->io.fd, TIOCOUTQ, &q) < 0 || q < 0)
        return 0;
    return (uint32_t)q;
}

/* Arm the write deadline afresh: output was produced or sent. */
static void write_deadline(fw_conn *c)
{
    loop_timer_set(c->loop, c, T_WRITE);
    c->kernel_queue = kernel_queue(c);
}

/* Send progress moves the write deadline; no input does. */
void conn_write_progress(fw_conn *c)
{
    if (c->timer == T_WRITE)
        write_deadline(c);
}

/* Send from one buffer.  Returns bytes sent (0 on EAGAIN, which clears
 * C_WRITABLE), or -1 when the peer is gone (C_DEAD). */
static ssize_t send_some(fw_conn *c, const char *data, size_t len)
{
    for (;;) {
        ssize_t n = send(c->io.fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            c->loop->m.bytes_out += (uint64_t)n;
            conn_write_progress(c);
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            c->flags &= ~C_WRITABLE;
            return 0;
        }
        c->flags |= C_DEAD;
        return -1;
    }
}

/* Whether the peer is a process on this host: a unix socket, a loopback
 * address, or a TCP peer with this end's own address (only the kernel's
 * loopback routes such a connection).  Asked of the socket itself, not of
 * REMOTE_ADDR, which a PROXY header may have replaced. */
static int peer_is_local(int fd)
{
    struct sockaddr_storage me, peer;
    socklen_t melen = sizeof me, peerlen = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &peerlen) < 0)
        return 0;
    if (peer.ss_family == AF_UNIX)
        return 1;
    if (getsockname(fd, (struct sockaddr *)&me, &melen) < 0 ||
        me.ss_family != peer.ss_family)
        return 0;
    if (peer.ss_family == AF_INET) {
        const struct sockaddr_in *p = (const struct sockaddr_in *)&peer;
        const struct sockaddr_in *m = (const struct sockaddr_in *)&me;
        return (ntohl(p->sin_addr.s_addr) >> 24) == 127 ||
               p->sin_addr.s_addr == m->sin_addr.s_addr;
    }
    if (peer.ss_family == AF_INET6) {
        const struct in6_addr *p = &((const struct sockaddr_in6 *)&peer)->sin6_addr;
        const struct in6_addr *m = &((const struct sockaddr_in6 *)&me)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(p) ||
               (IN6_IS_ADDR_V4MAPPED(p) && p->s6_addr[12] == 127) ||
               memcmp(p, m, sizeof *p) == 0;
    }
    return 0;
}

/* Whether this connection's file bodies go through the loop's buffer. */
static int file_by_copy(fw_conn *c)
{
    int mode = c->loop->cfg.file_send;
    if (mode == FW_FILE_SENDFILE)
        return 0;
    if (!(c->flags & C_PEER_KNOWN)) {
        c->flags |= C_PEER_KNOWN;
        if (peer_is_local(c->io.fd)) {
            c->flags |= C_PEER_LOCAL;
            /* At most a buffer's worth waits unsent in the socket: the
             * kernel then transmits it within our send(), not later in
             * the receiver's reads (each ACK it sends would release more
             * of a long queue on the receiver's CPU, already the busier
             * end).  Measured on a 10 MiB file over loopback: about 1.2x
             * the responses, and a p99 five times lower. */
            int lowat = FW_FBUF_SIZE;
            if (c->flags & C_TCP)
                (void)setsockopt(c->io.fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT,
                                 &lowat, sizeof lowat);
        }
    }
    if (mode == FW_FILE_AUTO && !(c->flags & C_PEER_LOCAL))
        return 0;
    if (c->loop->fbuf == NULL)
        c->loop->fbuf = malloc(FW_FBUF_SIZE);
    return c->loop->fbuf != NULL;   /* without it, sendfile still works */
}

/* Up to `want` bytes of the file from f->off, read into the loop's buffer
 * and sent at once, while they are in cache.  Returns what send(2) took,
 * 0 at the file's end, -1 with errno from send(2) (what was read beyond a
 * partial send is read again next time: at most one buffer per wait for
 * the socket), or -2 when the file could not be read. */
static ssize_t file_copy_some(fw_conn *c, const fw_file *f, size_t want)
{
    if (want > FW_FBUF_SIZE)
        want = FW_FBUF_SIZE;
    ssize_t r;
    do
        r = pread(f->fd, c->loop->fbuf, want, (off_t)f->off);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        loop_log(c->loop, FW_LOG_ERROR, "reading the response's file: %s",
                 strerror(errno));
        return -2;
    }
    if (r == 0)
        return 0;
    return send(c->io.fd, c->loop->fbuf, (size_t)r, MSG_NOSIGNAL);
}

/* Send queued output, then the app's memory being sent in place, then any
 * file, in that order.  Returns -1 when the peer is gone. */
int conn_flush(fw_conn *c)
{
    if (c->flags & C_DEAD)
        return -1;
    while (c->flags & C_WRITABLE) {
        if (conn_out_pending(c)) {
            ssize_t n = send_some(c, c->out.data + c->out.off,
                                  conn_out_pending(c));
            if (n < 0)
                return -1;
            c->out.off += (size_t)n;
            continue;
        }
        c->out.off = c->out.len = 0;
        fw_ext *x = c->ext;
        if (x != NULL) {
            if (x->left) {
                ssize_t n = send_some(c, x->data, x->left);
                if (n < 0)
                    return -1;
                x->data += n;
                x->left -= (size_t)n;
                continue;
            }
            c->ext = NULL;
            int r = x->tail_len ? conn_out_append(c, x->tail, x->tail_len)
                                : 0;
            free(x);
            if (r < 0) {
                c->flags |= C_DEAD;
                return -1;
            }
            continue;
        }
        fw_file *f = c->file;
        if (f == NULL)
            break;
        if (f->left == 0) {
            free(f);
            c->file = NULL;
            break;
        }
        off_t off = (off_t)f->off;
        size_t want = f->left > (1 << 22) ? (1 << 22) : (size_t)f->left;
        ssize_t n = file_by_copy(c) ? file_copy_some(c, f, want)
                                    : sendfile(c->io.fd, f->fd, &off, want);
        if (n == -2) {
            c->flags |= C_DEAD;     /* the body cannot be completed */
            return -1;
        }
        if (n > 0) {
            f->off += n;
            f->left -= n;
            c->loop->m.bytes_out += (uint64_t)n;
            conn_write_progress(c);
        } else if (n == 0) {
            /* The file is shorter than promised: the body is short. */
            loop_log(c->loop, FW_LOG_ERROR,
                     "file ended %lld bytes before the response length",
                     (long long)f->left);
            c->flags |= C_CLOSE_AFTER;
            f->left = 0;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            c->flags &= ~C_WRITABLE;
        } else {
            c->flags |= C_DEAD;
            return -1;
        }
    }
    if (conn_out_pending(c) == 0)
        c->out.off = c->out.len = 0;
    return 0;
}

/* Output of any kind still to send. */
static int output_waits(const fw_conn *c)
{
    return conn_out_pending(c) || c->ext || c->file;
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
        ssize_t n = recv(c->io.fd, b->data + b->len, room, 0);
        if (n > 0) {
            b->len += (size_t)n;
            c->loop->m.bytes_in += (uint64_t)n;
            /* A short read drained the socket: with edge triggering the
             * next bytes bring a new event, so no EAGAIN round trip.  Not
             * after a hang-up: that edge has come already, and only reading
             * on to EOF or the error finds it. */
            if ((size_t)n < room && !(c->flags & C_HUP))
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
        if (errno != EAGAIN)
            c->flags |= C_DEAD;
        return 0;
    }
}

/* ---- the environ block ---- */

/* Upper-case CGI spelling of a header name byte: '-' becomes '_'. */
static const unsigned char cgi_char[256] = {
#define R(c) [c] = (c)
    ['-'] = '_', ['_'] = '_', R('!'), R('#'), R('$'), R('%'), R('&'),
    R('\''), R('*'), R('+'), R('.'), R('^'), R('`'), R('|'), R('~'),
    R('0'), R('1'), R('2'), R('3'), R('4'), R('5'), R('6'), R('7'), R('8'),
    R('9'),
    R('A'), R('B'), R('C'), R('D'), R('E'), R('F'), R('G'), R('H'), R('I'),
    R('J'), R('K'), R('L'), R('M'), R('N'), R('O'), R('P'), R('Q'), R('R'),
    R('S'), R('T'), R('U'), R('V'), R('W'), R('X'), R('Y'), R('Z'),
    ['a'] = 'A', ['b'] = 'B', ['c'] = 'C', ['d'] = 'D', ['e'] = 'E',
    ['f'] = 'F', ['g'] = 'G', ['h'] = 'H', ['i'] = 'I', ['j'] = 'J',
    ['k'] = 'K', ['l'] = 'L', ['m'] = 'M', ['n'] = 'N', ['o'] = 'O',
    ['p'] = 'P', ['q'] = 'Q', ['r'] = 'R', ['s'] = 'S', ['t'] = 'T',
    ['u'] = 'U', ['v'] = 'V', ['w'] = 'W', ['x'] = 'X', ['y'] = 'Y',
    ['z'] = 'Z',
#undef R
};

static char *put(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

/* The environ is written as two parallel blocks: keys and values. */
typedef struct env_writer {
    char *k;
    char *v;
} env_writer;

static void put_kv(env_writer *e, const char *k, size_t kn, const char *v,
                   size_t vn)
{
    e->k = put(e->k, k, kn);
    *e->k++ = '\0';
    e->v = put(e->v, v, vn);
    *e->v++ = '\0';
}

#define PUT_KV(e, lit, v, vn) put_kv(e, lit, sizeof(lit) - 1, v, vn)

static int unhex(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Percent-decode the path; -1 if it decodes to a NUL byte (the environ
 * block is NUL-separated, and no sane path contains one). */
static char *put_path(char *w, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n &&
            (hi = unhex((unsigned char)p[i + 1])) >= 0 &&
            (lo = unhex((unsigned char)p[i + 2])) >= 0) {
            int ch = hi * 16 + lo;
            if (ch == 0)
                return NULL;
            *w++ = (char)ch;
            i += 2;
        } else {
            *w++ = p[i];
        }
    }
    return w;
}

/*
 * Write the request-specific environ: keys to loop->keys, values to
 * loop->env, each "A\0B\0...".  Returns the values' length without the
 * final NUL (the keys' in *keys_len), or -400.
 */
static long build_env(fw_conn *c, const char *buf, const fw_head *h,
                      int *in_flags, size_t *keys_len)
{
    fw_loop *loop = c->loop;
    /* What is written is bounded by the head: PATH_INFO, REQUEST_URI and
     * the Host of an absolute-form target are each at most the target,
     * the field values at most the head, a key at most its name plus
     * "HTTP_" and a NUL, and the fixed keys and peer address a few
     * hundred bytes.  Checked here, not assumed from the limits. */
    size_t most = 3 * (size_t)h->head_len + 8 * (size_t)h->nfields + 512;
    if (h->nfields > FW_MAX_FIELDS || most > loop->env_cap)
        return -431;
    env_writer e = {loop->keys, loop->env};
    const int http11 = h->flags & FW_REQ_HTTP11;
    /* RFC 9112 3.2.2: with an absolute-form target, the Host field is
     * replaced by the target's authority. */
    const char *t = buf + h->target.off;
    const char *auth = NULL;
    size_t auth_len = 0;
    if (h->target.len > 0 && t[0] != '/' && t[0] != '*') {
        auth = memmem(t, h->target.len, "://", 3);
        if (auth == NULL)
            return -400;
        auth += 3;
        auth_len = (size_t)(buf + h->path.off - auth);
    }
    int host_seen = 0;
    /* The commonest values go in the key block as KEY=VALUE (no field
     * name can hold '='): then they are part of the shape, and Python
     * finds them already in place instead of making a string each time. */
    const char *m = buf + h->method.off;
    if (h->method.len == 3 && memcmp(m, "GET", 3) == 0)
        e.k = put(e.k, "REQUEST_METHOD=GET", 19);
    else if (h->method.len == 4 && memcmp(m, "POST", 4) == 0)
        e.k = put(e.k, "REQUEST_METHOD=POST", 20);
    else if (h->method.len == 4 && memcmp(m, "HEAD", 4) == 0)
        e.k = put(e.k, "REQUEST_METHOD=HEAD", 20);
    else
        PUT_KV(&e, "REQUEST_METHOD", m, h->method.len);
    e.k = put(e.k, "PATH_INFO", 10);
    if (h->path.len == 0)
        *e.v++ = '/';           /* absolute-form with an empty path */
    e.v = put_path(e.v, buf + h->path.off, h->path.len);
    if (e.v == NULL)
        return -400;
    *e.v++ = '\0';
    if (h->query.len == 0)
        e.k = put(e.k, "QUERY_STRING=", 14);
    else
        PUT_KV(&e, "QUERY_STRING", buf + h->query.off, h->query.len);
    PUT_KV(&e, "REQUEST_URI", buf + h->target.off, h->target.len);
    e.k = put(e.k, http11 ? "SERVER_PROTOCOL=HTTP/1.1" : "SERVER_PROTOCOL=HTTP/1.0",
              25);
    PUT_KV(&e, "REMOTE_ADDR", c->raddr, strlen(c->raddr));
    PUT_KV(&e, "REMOTE_PORT", c->rport, strlen(c->rport));
    if (c->flags & C_PROXY_ANON)
        e.k = put(e.k, "fastwsgi.proxy_client=unknown", 30);

    uint64_t seen = 0;
    int dups = 0;
    for (uint32_t i = 0; i < h->nfields; i++) {
        const char *n = buf + h->fields[i].name.off;
        size_t nl = h->fields[i].name.len;
        char *key = e.k;
        if (nl == 12 && strncasecmp(n, "content-type", 12) == 0) {
            e.k = put(e.k, "CONTENT_TYPE", 12);
        } else if (nl == 14 && strncasecmp(n, "content-length", 14) == 0) {
            e.k = put(e.k, "CONTENT_LENGTH", 14);
        } else {
            e.k = put(e.k, "HTTP_", 5);
            for (size_t j = 0; j < nl; j++)
                *e.k++ = (char)cgi_char[(unsigned char)n[j]];
        }
        /* A 64-bit filter over the names finds repeats in one pass. */
        size_t kl = (size_t)(e.k - key);
        uint64_t bit = 1ull << ((kl * 7 + (unsigned char)key[kl - 1] * 3 +
                                 (unsigned char)key[kl / 2]) & 63);
        if (seen & bit)
            dups = 1;
        seen |= bit;
        *e.k++ = '\0';
        if (auth && kl == 9 && memcmp(key, "HTTP_HOST", 9) == 0) {
            e.v = put(e.v, auth, auth_len);
            host_seen = 1;
        } else {
            e.v = put(e.v, buf + h->fields[i].value.off,
                      h->fields[i].value.len);
        }
        *e.v++ = '\0';
    }
    if (auth && !host_seen)     /* HTTP/1.0 may come without Host */
        PUT_KV(&e, "HTTP_HOST", auth, auth_len);
    if (h->flags & FW_REQ_CHUNKED) {
        /* Its value, the decoded length, is added once the body is in. */
        e.k = put(e.k, "CONTENT_LENGTH", 15);
    }
    if (dups)
        *in_flags |= FW_IN_DUPS;
    *keys_len = (size_t)(e.k - loop->keys) - 1;
    return (long)(e.v - loop->env) - 1;
}

static uint64_t hash_bytes(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

/* Count the keys that take a value (not the KEY=VALUE ones). */
static int count_valued_keys(const char *keys, size_t len)
{
    int n = 0;
    for (size_t i = 0; i <= len; i++) {
        size_t j = i;
        while (j < len && keys[j] != '\0')
            j++;
        n += memchr(keys + i, '=', j - i) == NULL;
        i = j;
    }
    return n;
}

/*
 * The number of this key sequence.  *fresh is set when Python has not seen
 * the number with these keys (new, or its slot was taken over): then the
 * keys cross over with the request.
 *
 * Nothing here depends on the hash being good: a match is an exact
 * comparison, and a slot a batched request still refers to is never taken
 * over, so a collision costs speed only.  When both of a sequence's slots
 * are in use that way it gets FW_SHAPE_ONCE: its keys go with the request
 * and name nothing afterwards.
 */
static int shape_of(fw_loop *loop, const char *keys, size_t len, int *fresh)
{
    uint64_t h = hash_bytes(loop->hash_seed, keys, len);
    int slot = (int)(h & (FW_SHAPES - 1));
    for (int way = 0; way < 2; way++) {
        fw_shape *s = &loop->shapes[slot ^ way];
        if (s->hash == h && s->keys && s->len == len &&
            memcmp(s->keys, keys, len) == 0) {
            *fresh = 0;
            return slot ^ way;
        }
    }
    *fresh = 1;
    /* Replace an empty way, else one nobody refers to, alternating on the
     * hash when both are free to go. */
    fw_shape *a = &loop->shapes[slot], *b = &loop->shapes[slot ^ 1];
    int victim;
    if (a->keys == NULL)
        victim = slot;
    else if (b->keys == NULL)
        victim = slot ^ 1;
    else if (a->refs == 0 && b->refs == 0)
        victim = slot ^ (int)((h >> 8) & 1);
    else if (a->refs == 0)
        victim = slot;
    else if (b->refs == 0)
        victim = slot ^ 1;
    else
        return FW_SHAPE_ONCE;
    fw_shape *s = &loop->shapes[victim];
    char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, keys, len);
    free(s->keys);
    s->keys = copy;
    s->len = len;
    s->nkeys = count_valued_keys(copy, len);
    s->hash = h;
    s->gen = ++loop->shape_gen;
    return victim;
}

/* ---- request dispatch ---- */

#define FW_SLOW_CALL_MS 1000    /* an inline app call this long is named */
#define FW_SLOW_EVERY_MS 60000  /* at most once a minute */

/*
 * Inline, the app runs on the loop's thread: a call that blocks holds up
 * every other client.  Say so (once a minute at most), naming the request
 * when there was one, and what to do about it.  `keys` and `env` are one
 * request's (NULL for a round of `n` requests together).
 */
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

static void fail(fw_conn *c, int status);
static void send_deferred(fw_loop *loop, int all);

static void dispatch_shaped(fw_conn *c, const char *env, size_t env_len,
                            const char *keys, size_t keys_len,
                            const char *body, size_t body_len, int body_fd,
                            int in_flags, int shape, int fresh);

static void dispatch(fw_conn *c, const char *env, size_t env_len,
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
static void dispatch_shaped(fw_conn *c, const char *env, size_t env_len,
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

static int enqueue(fw_conn *c, long env_len, int in_flags, int shape,
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
static void fail(fw_conn *c, int status)
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

/* Create a spool file for a large body. */
static int spool_open(fw_loop *loop)
{
    int fd = open(loop->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    snprintf(path, sizeof path, "%s/fastwsgi-body-XXXXXX", loop->spool_dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* Append decoded body bytes to the body store, spilling to a file when the
 * in-memory part would pass the threshold. */
static int body_store(fw_conn *c, const char *data, size_t n)
{
    fw_loop *loop = c->loop;
    fw_body *b = c->body;
    b->received += (int64_t)n;
    if (b->received > loop->cfg.max_body_size)
        return -413;
    if (b->fd < 0 &&
        !fw_fits(b->mem_len, (size_t)loop->cfg.spool_threshold, n)) {
        b->fd = spool_open(loop);
        if (b->fd < 0) {
            loop_log(loop, FW_LOG_ERROR, "cannot spool a request body in %s: %s",
                     loop->spool_dir, strerror(errno));
            return -500;
        }
        if (b->mem_len && write(b->fd, b->mem, b->mem_len) != (ssize_t)b->mem_len)
            return -500;
        free(b->mem);
        b->mem = NULL;
        b->mem_len = b->mem_cap = 0;
    }
    if (b->fd >= 0) {
        while (n) {
            ssize_t w = write(b->fd, data, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                loop_log(loop, FW_LOG_ERROR, "spooling a request body: %s",
                         strerror(errno));
                return -500;
            }
            data += w;
            n -= (size_t)w;
        }
        return 0;
    }
    if (b->mem_len + n > b->mem_cap) {
        size_t cap = b->mem_cap ? b->mem_cap : 16384;
        while (cap < b->mem_len + n)
            cap *= 2;
        char *nm = realloc(b->mem, cap);
        if (nm == NULL)
            return -500;
        b->mem = nm;
        b->mem_cap = cap;
    }
    memcpy(b->mem + b->mem_len, data, n);
    b->mem_len += n;
    return 0;
}

/* Feed buffered input to the body.  Returns 1 complete, 0 more, <0 status. */
static int body_feed(fw_conn *c)
{
    fw_body *b = c->body;
    fw_buf *in = &c->in;
    size_t avail = in->len - in->off;
    if (!b->chunked) {
        int64_t need = b->expected - b->received;
        size_t n = (int64_t)avail < need ? avail : (size_t)need;
        int r = body_store(c, in->data + in->off, n);
        in->off += n;
        if (r < 0)
            return r;
        return b->received == b->expected;
    }
    size_t consumed, produced;
    int r = fw_chunked_decode(&b->ck, in->data + in->off, avail,
                              c->loop->cfg.limits.field_size, &consumed,
                              &produced);
    int s = produced ? body_store(c, in->data + in->off, produced) : 0;
    in->off += consumed;
    if (r < 0)
        return r;
    if (s < 0)
        return s;
    /* A chunk declared past the limit is refused now, not once it came. */
    if (b->received + (int64_t)b->ck.remaining > c->loop->cfg.max_body_size)
        return -413;
    return r;
}

static void body_dispatch(fw_conn *c)
{
    fw_body *b = c->body;
    char *env = b->env;
    size_t env_len = b->env_len;
    if (b->chunked) {
        /* Tell the app the decoded length: the body is all here. */
        char num[24];
        int nl = snprintf(num, sizeof num, "%lld", (long long)b->received);
        char *ne = realloc(env, env_len + (size_t)nl + 2);
        if (ne == NULL) {
            fail(c, 500);
            return;
        }
        env = b->env = ne;
        memcpy(env + env_len + 1, num, (size_t)nl + 1);
        env_len += 1 + (size_t)nl;
    }
    int fd = b->fd;
    if (fd >= 0) {
        lseek(fd, 0, SEEK_SET);
        b->fd = -1;             /* Python owns it from here */
    }
    dispatch(c, env, env_len, b->keys, b->keys_len, b->mem, b->mem_len, fd,
             b->in_flags);
    body_free(c->body);
    c->body = NULL;
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

/* Parse and answer what is buffered.  Returns 1 if progress was made. */
/* The PROXY header a load balancer sends first: the client it names
 * becomes REMOTE_ADDR.  Returns 1 when read, 0 when more must come, -1
 * when it is missing or malformed (the connection is closed without a
 * word: there is no HTTP client to answer yet). */
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

/* Start closing: linger after errors so the client sees the response. */
static void begin_close(fw_conn *c)
{
    if ((c->flags & (C_ERROR_CLOSE | C_PEER_EOF)) == C_ERROR_CLOSE &&
        !(c->flags & C_DEAD)) {
        shutdown(c->io.fd, SHUT_WR);
        c->state = CS_LINGER;
        c->in.off = c->in.len;
        c->scanned = 0;
        loop_timer_set(c->loop, c, T_LINGER);
        return;
    }
    conn_close(c);
}

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
static int defer(fw_conn *c)
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
static void send_deferred(fw_loop *loop, int all)
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
            /* Discard what the client still sends, so that the response
             * is not lost to a reset; but only so much, and only until
             * the deadline, read afresh: a flood must not hold the loop. */
            c->in.off = c->in.len;
            ssize_t n = (c->flags & C_READABLE) ? conn_read(c) : 0;
            if (n > 0)
                c->scanned += (size_t)n;
            c->in.off = c->in.len;
            if ((c->flags & (C_PEER_EOF | C_DEAD)) ||
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
