/*
 * send.c - a connection's output: its buffer and every way of sending it.
 *
 * Output is queued in c->out (the loop's shared write buffer while the
 * connection is being served, a buffer of its own when bytes are left
 * over) and sent by conn_flush: the queued bytes, then the app's memory
 * sent in place (c->ext), then a file (c->file) by sendfile(2) or through
 * the loop's copy buffer.  Only the output side of a connection is touched
 * here, with its write deadline and its send flags; nothing is read or
 * parsed, the connection's state never changes, and Python is not called.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"

/* ---- the output buffer ---- */

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

/* ---- sending ---- */

/* Bytes the kernel still holds for the peer (unsent or unacknowledged). */
uint32_t kernel_queue(const fw_conn *c)
{
    int q = 0;
    /* TIOCOUTQ is SIOCOUTQ, and every libc's <sys/ioctl.h> has it. */
    if (ioctl(c->io.fd, TIOCOUTQ, &q) < 0 || q < 0)
        return 0;
    return (uint32_t)q;
}

/* Arm the write deadline afresh: output was produced or sent. */
void write_deadline(fw_conn *c)
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
        ssize_t n = c->tls ? tls_write(c, data, len)
                           : send(c->io.fd, data, len, MSG_NOSIGNAL);
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
    if (c->tls) {
        /* Records are made in this process: the file passes through. */
        if (c->loop->fbuf == NULL)
            c->loop->fbuf = malloc(FW_FBUF_SIZE);
        return c->loop->fbuf != NULL;
    }
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
    if (c->tls == NULL)
        return send(c->io.fd, c->loop->fbuf, (size_t)r, MSG_NOSIGNAL);
    /* A TLS write takes one record (16 KiB) at a time: the whole read is
     * offered record after record, or the file would be read again for
     * each one (16 times the bytes). */
    size_t done = 0;
    while (done < (size_t)r) {
        ssize_t n = tls_write(c, c->loop->fbuf + done, (size_t)r - done);
        if (n <= 0)
            return done ? (ssize_t)done : n;
        done += (size_t)n;
    }
    return (ssize_t)done;
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
        int copy = file_by_copy(c);
        if (!copy && c->tls) {
            c->flags |= C_DEAD; /* no copy buffer, and no sendfile into TLS */
            return -1;
        }
        ssize_t n = copy ? file_copy_some(c, f, want)
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
