/*
 * body.c - request bodies: read after the head, decoded when chunked,
 * kept in memory or spooled to an unlinked file past the threshold, then
 * handed over with the environ saved from the head.
 *
 * A body consumes the connection's input buffer and owns c->body until it
 * is dispatched or dropped; when it is read is up to the state machine
 * (conn.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

void body_free(fw_body *b)
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
int body_feed(fw_conn *c)
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

void body_dispatch(fw_conn *c)
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
