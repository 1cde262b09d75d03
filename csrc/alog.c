/*
 * alog.c - the access log: one line per response, formatted in C and
 * written by a thread of its own, so that a slow disk never holds the loop.
 *
 * The loop appends lines to the buffer it fills; at the end of each turn,
 * when the writer is idle, the two buffers change hands and the writer is
 * woken.  A line that finds the filling buffer full is dropped and counted
 * (the loop never waits).  The format is a small program compiled by
 * Python (fw.h: FW_ALOG_*), so that gunicorn's %(x)s atoms cost a switch
 * per atom, not a parse per line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define ALOG_BUF (256 * 1024)   /* each of the two buffers */
#define ALOG_LINE 8192          /* longest line; longer fields are cut */
#define ALOG_FIELD 2048         /* longest single field */
#define ALOG_MIN_FIELD 64       /* escaped bytes each text field keeps room for */

struct fw_alog {
    char *path;                 /* NULL: standard output */
    int fd;
    unsigned char *prog;        /* the compiled format */
    size_t prog_len;
    int nheaders;               /* request fields the format names */
    char headers[FW_ALOG_HEADERS][64];
    size_t header_len[FW_ALOG_HEADERS];
    char *fill, *write;         /* the loop's buffer, the writer's */
    size_t fill_len, write_len;
    uint64_t dropped, dropped_told;
    int64_t tsec;               /* the second `tbuf` holds */
    char tbuf[40];              /* "26/Nov/2026:07:13:38 +0000" */
    size_t tlen;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, reopen;           /* under mu */
    long long pid;
};

/* What a request leaves for its log line, captured when its head is
 * parsed (the head's buffer is reused after that). */
typedef struct alog_req {
    int64_t start_us;
    int64_t bytes;              /* body bytes of the response */
    int status;
    uint16_t off[5 + FW_ALOG_HEADERS], len[5 + FW_ALOG_HEADERS];
    char data[];
} alog_req;

enum { F_METHOD, F_TARGET, F_PROTO, F_PATH, F_QUERY, F_HEADER0 };

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *writer_main(void *arg)
{
    fw_alog *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && a->write_len == 0 && !a->reopen)
            pthread_cond_wait(&a->cv, &a->mu);
        int reopen = a->reopen;
        a->reopen = 0;
        size_t len = a->write_len;
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (reopen && a->path) {
            /* SIGUSR1 after a rotation: the name now leads to a new file. */
            int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) {
                close(a->fd);
                a->fd = fd;
            }
        }
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(a->fd, a->write + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;          /* a full disk: the lines are lost */
            off += (size_t)n;
        }
        pthread_mutex_lock(&a->mu);
        a->write_len = 0;
        if (stop && a->fill_len == 0)
            break;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* The descriptor and the memory (the thread is gone, or never was). */
static void release(fw_alog *a)
{
    if (a->fd >= 0)
        close(a->fd);
    free(a->fill);
    free(a->write);
    free(a->prog);
    free(a->path);
    free(a);
}

/* Under mu, with the writer's buffer empty: what the loop filled becomes
 * the writer's. */
static void hand_over(fw_alog *a)
{
    char *t = a->write;
    a->write = a->fill;
    a->write_len = a->fill_len;
    a->fill = t;
    a->fill_len = 0;
}

int fw_loop_access_log(fw_loop *loop, const char *path, const unsigned char *prog,
                       size_t prog_len, const char *headers)
{
    fw_alog *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -1;
    a->fd = -1;
    a->fill = malloc(ALOG_BUF);
    a->write = malloc(ALOG_BUF);
    a->prog = malloc(prog_len ? prog_len : 1);
    a->path = path && *path ? strdup(path) : NULL;
    if (a->fill == NULL || a->write == NULL || a->prog == NULL ||
        (path && *path && a->path == NULL))
        goto fail;
    memcpy(a->prog, prog, prog_len);
    a->prog_len = prog_len;
    /* "referer\nuser-agent\n..." in the order the program numbers them */
    for (const char *h = headers; h && *h && a->nheaders < FW_ALOG_HEADERS;) {
        const char *nl = strchr(h, '\n');
        size_t n = nl ? (size_t)(nl - h) : strlen(h);
        if (n == 0 || n >= sizeof a->headers[0])
            goto fail;
        memcpy(a->headers[a->nheaders], h, n);
        a->header_len[a->nheaders++] = n;
        h += n + (nl != NULL);
    }
    a->fd = a->path ? open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
                    : dup(STDOUT_FILENO);
    if (a->fd < 0)
        goto fail;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        goto fail;
    }
    a->pid = (long long)getpid();   /* the loop is made in its own process */
    loop->alog = a;
    return 0;
fail:;
    int err = errno ? errno : ENOMEM;
    release(a);
    errno = err;
    return -1;
}

void fw_loop_access_log_reopen(fw_loop *loop)
{
    fw_alog *a = loop->alog;
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->reopen = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* End of a turn: give the writer what was filled, if it is idle.
 * Returns 1 when lines are still waiting (the loop then comes back soon). */
int alog_turn(fw_loop *loop)
{
    fw_alog *a = loop->alog;
    if (a->fill_len == 0)
        return 0;
    pthread_mutex_lock(&a->mu);
    int handed = 0;
    if (a->write_len == 0) {
        hand_over(a);
        pthread_cond_signal(&a->cv);
        handed = 1;
    }
    pthread_mutex_unlock(&a->mu);
    if (a->dropped != a->dropped_told && handed) {
        loop_log(loop, FW_LOG_WARNING, "access log: %llu lines dropped so far "
                 "(the disk did not keep up)", (unsigned long long)a->dropped);
        a->dropped_told = a->dropped;
    }
    return !handed;
}

void alog_free(fw_loop *loop)
{
    fw_alog *a = loop->alog;
    if (a == NULL)
        return;
    loop->alog = NULL;
    pthread_mutex_lock(&a->mu);
    /* What is left goes out before the thread ends. */
    while (a->write_len != 0) {
        pthread_mutex_unlock(&a->mu);
        usleep(1000);
        pthread_mutex_lock(&a->mu);
    }
    if (a->fill_len)
        hand_over(a);
    a->stop = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    release(a);
}

/* ---- a request's record ---- */

static const char *find_field(const char *buf, const fw_head *h, const char *name,
                              size_t nlen, size_t *vlen)
{
    for (uint32_t i = 0; i < h->nfields; i++) {
        const fw_field *f = &h->fields[i];
        if (f->name.len == nlen && strncasecmp(buf + f->name.off, name, nlen) == 0) {
            *vlen = f->value.len;
            return buf + f->value.off;
        }
    }
    return NULL;
}

void alog_begin(fw_conn *c, const char *buf, const fw_head *h)
{
    fw_alog *a = c->loop->alog;
    free(c->alog);
    c->alog = NULL;
    const char *src[5 + FW_ALOG_HEADERS];
    size_t len[5 + FW_ALOG_HEADERS];
    int n = 0;
    src[n] = buf + h->method.off, len[n++] = h->method.len;
    src[n] = buf + h->target.off, len[n++] = h->target.len;
    src[n] = (h->flags & FW_REQ_HTTP11) ? "HTTP/1.1" : "HTTP/1.0", len[n++] = 8;
    src[n] = buf + h->path.off, len[n++] = h->path.len;
    src[n] = buf + h->query.off, len[n++] = h->query.len;
    for (int i = 0; i < a->nheaders; i++) {
        size_t vl = 0;
        const char *v = find_field(buf, h, a->headers[i], a->header_len[i], &vl);
        src[n] = v, len[n++] = v ? vl : 0;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (len[i] > ALOG_FIELD)
            len[i] = ALOG_FIELD;
        total += len[i];
    }
    alog_req *r = malloc(sizeof *r + total + 1);
    if (r == NULL)
        return;                 /* no line for this one */
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        r->off[i] = (uint16_t)at;
        r->len[i] = (uint16_t)len[i];
        if (len[i])
            memcpy(r->data + at, src[i], len[i]);
        at += len[i];
    }
    r->start_us = now_us();
    r->bytes = 0;
    r->status = 0;
    c->alog = r;
}

void alog_status(fw_conn *c, int status)
{
    if (c->alog == NULL) {
        /* Refused before its head was whole: a line with no request. */
        alog_req *r = calloc(1, sizeof *r + 1);
        if (r == NULL)
            return;
        r->start_us = now_us();
        c->alog = r;
    }
    ((alog_req *)c->alog)->status = status;
}

void alog_bytes(fw_conn *c, int64_t n)
{
    if (c->alog)
        ((alog_req *)c->alog)->bytes += n;
}

/* ---- formatting ---- */

typedef struct out {
    char *p, *end;
} out;

static void put(out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n)
        n = (size_t)(o->end - o->p);
    memcpy(o->p, s, n);
    o->p += n;
}

/* A field inside a quoted text field: quotes, backslashes, control bytes
 * and every byte above 0x7e escaped (C1 controls such as 0x9b drive some
 * terminals), so that no request can forge a line or a screen.  An escape
 * is written whole or not at all. */
static void put_text(out *o, const char *s, size_t n, int json)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && o->end - o->p >= 6; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o->p++ = '\\';
            *o->p++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            /* JSON: a byte above 0x7f is the latin-1 character (WSGI's
             * reading of the head); text: \xHH. */
            if (json) {
                memcpy(o->p, "\\u00", 4);
                o->p += 4;
            } else {
                *o->p++ = '\\';
                *o->p++ = 'x';
            }
            *o->p++ = hex[ch >> 4];
            *o->p++ = hex[ch & 15];
        } else {
            *o->p++ = (char)ch;
        }
    }
}

static void put_num(out *o, long long v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", v);
    put(o, t, (size_t)n);
}

static void refresh_time(fw_alog *a)
{
    time_t now = time(NULL);
    if ((int64_t)now == a->tsec)
        return;
    struct tm tm;
    localtime_r(&now, &tm);
    a->tlen = strftime(a->tbuf, sizeof a->tbuf, "%d/%b/%Y:%H:%M:%S %z", &tm);
    a->tsec = (int64_t)now;
}

/* The bytes that operation `op` (operands at *pp, which it passes) writes
 * whatever the request holds; `*texts` the number of the request's text
 * fields it writes, whose length the client decides. */
static size_t op_fixed(const fw_alog *a, const fw_conn *c, int op,
                       const unsigned char **pp, const unsigned char *end, int *texts)
{
    const unsigned char *p = *pp;
    size_t n = 0, left = (size_t)(end - p), skip = 0;
    *texts = 0;
    switch (op) {
    case FW_ALOG_LITERAL:
        if (left >= 2) {
            n = (size_t)p[0] << 8 | p[1];
            skip = 2 + n;
        }
        break;
    case FW_ALOG_PEER:
        n = c->raddr[0] ? strlen(c->raddr) : 1;
        break;
    case FW_ALOG_PEER_JSON:
        n = 6 * strlen(c->raddr);
        break;
    case FW_ALOG_TIME:
        n = a->tlen + 2;
        break;
    case FW_ALOG_TIME_BARE:
        n = a->tlen;
        break;
    case FW_ALOG_REQUEST:
    case FW_ALOG_REQUEST_JSON:
        n = 2;                  /* the two spaces */
        *texts = 3;
        break;
    case FW_ALOG_METHOD:
    case FW_ALOG_TARGET:
    case FW_ALOG_PATH:
    case FW_ALOG_QUERY:
    case FW_ALOG_PROTO:
        skip = 1;
        *texts = 1;
        break;
    case FW_ALOG_HEADER:
        skip = 2;
        *texts = 1;
        break;
    case FW_ALOG_STATUS:
    case FW_ALOG_BYTES:
    case FW_ALOG_BYTES_DASH:
    case FW_ALOG_MICROS:
    case FW_ALOG_MILLIS:
    case FW_ALOG_SECONDS:
    case FW_ALOG_PID:
        n = 20;                 /* the longest int64 */
        break;
    case FW_ALOG_SECONDS_FRAC:
        n = 28;
        break;
    default:
        skip = left;
        break;
    }
    *pp = skip < left ? p + skip : end;   /* (Python compiled it whole) */
    return n;
}

/* Where the next text field may write: what is left of the line less what
 * the rest of the format needs (its fixed parts, and ALOG_MIN_FIELD for
 * each later text field).  A long field is cut; the line never is, so a
 * JSON line keeps its closing quote and brace whatever a client sends. */
static out field_room(const out *o, size_t fixed_after, int texts_after)
{
    size_t left = (size_t)(o->end - o->p);
    size_t keep = fixed_after + (size_t)texts_after * ALOG_MIN_FIELD;
    out f = {o->p, o->p + (left > keep ? left - keep : 0)};
    return f;
}

static void put_field(out *o, const alog_req *r, int f, int json, int dash)
{
    if (r == NULL || r->len[f] == 0) {
        if (dash)
            put(o, "-", 1);
        return;
    }
    put_text(o, r->data + r->off[f], r->len[f], json);
}

/* Write the line of the response that just ended, and forget the request. */
void alog_end(fw_conn *c)
{
    fw_loop *loop = c->loop;
    fw_alog *a = loop->alog;
    alog_req *r = c->alog;
    c->alog = NULL;
    if (r == NULL && c->resp == RS_NONE)
        return;                 /* nothing was asked: an idle connection */
    int status = r ? r->status : 0;
    int64_t us = r ? now_us() - r->start_us : 0;
    int64_t bytes = r ? r->bytes : 0;
    if (ALOG_BUF - a->fill_len < ALOG_LINE) {
        a->dropped++;
        free(r);
        return;
    }
    refresh_time(a);
    out o = {a->fill + a->fill_len, a->fill + a->fill_len + ALOG_LINE - 1};
    const unsigned char *p = a->prog, *end = a->prog + a->prog_len;
    /* What the whole format needs besides the request's text fields. */
    size_t fixed_after = 0;
    int texts_after = 0;
    for (const unsigned char *q = p; q < end;) {
        int op = *q++, t;
        fixed_after += op_fixed(a, c, op, &q, end, &t);
        texts_after += t;
    }
    while (p < end) {
        int op = *p++, t;
        const unsigned char *q = p;
        fixed_after -= op_fixed(a, c, op, &q, end, &t);
        texts_after -= t;
        out f;                  /* a text field's share of the line */
        switch (op) {
        case FW_ALOG_LITERAL: {
            size_t n = (size_t)p[0] << 8 | p[1];
            p += 2;
            put(&o, (const char *)p, n);
            p += n;
            break;
        }
        case FW_ALOG_PEER:
            put(&o, c->raddr[0] ? c->raddr : "-", c->raddr[0] ? strlen(c->raddr) : 1);
            break;
        case FW_ALOG_PEER_JSON:
            put_text(&o, c->raddr, strlen(c->raddr), 1);
            break;
        case FW_ALOG_TIME:      /* as gunicorn writes %(t)s */
            put(&o, "[", 1);
            put(&o, a->tbuf, a->tlen);
            put(&o, "]", 1);
            break;
        case FW_ALOG_TIME_BARE:
            put(&o, a->tbuf, a->tlen);
            break;
        case FW_ALOG_REQUEST:
        case FW_ALOG_REQUEST_JSON:
            if (r == NULL || r->len[F_METHOD] == 0) {
                /* refused before its head was whole */
                put(&o, "-", op == FW_ALOG_REQUEST);
                break;
            }
            for (int i = 0; i < 3; i++) {
                static const int part[] = {F_METHOD, F_TARGET, F_PROTO};
                if (i)
                    put(&o, " ", 1);
                f = field_room(&o, fixed_after + (size_t)(2 - i), texts_after + 2 - i);
                put_field(&f, r, part[i], op == FW_ALOG_REQUEST_JSON, 0);
                o.p = f.p;
            }
            break;
        case FW_ALOG_METHOD:
        case FW_ALOG_TARGET:
        case FW_ALOG_PATH:
        case FW_ALOG_QUERY:
        case FW_ALOG_PROTO: {
            static const int which[] = {
                [FW_ALOG_METHOD] = F_METHOD, [FW_ALOG_TARGET] = F_TARGET,
                [FW_ALOG_PATH] = F_PATH, [FW_ALOG_QUERY] = F_QUERY,
                [FW_ALOG_PROTO] = F_PROTO};
            int json = *p++;
            f = field_room(&o, fixed_after, texts_after);
            put_field(&f, r, which[op], json, !json && op != FW_ALOG_QUERY);
            o.p = f.p;
            break;
        }
        case FW_ALOG_HEADER: {
            int i = *p++;
            int json = *p++;
            f = field_room(&o, fixed_after, texts_after);
            if (i < a->nheaders)
                put_field(&f, r, F_HEADER0 + i, json, !json);
            o.p = f.p;
            break;
        }
        case FW_ALOG_STATUS:
            put_num(&o, status);
            break;
        case FW_ALOG_BYTES:
            put_num(&o, bytes);
            break;
        case FW_ALOG_BYTES_DASH:
            if (bytes)
                put_num(&o, bytes);
            else
                put(&o, "-", 1);
            break;
        case FW_ALOG_MICROS:
            put_num(&o, us);
            break;
        case FW_ALOG_MILLIS:
            put_num(&o, us / 1000);
            break;
        case FW_ALOG_SECONDS:
            put_num(&o, us / 1000000);
            break;
        case FW_ALOG_SECONDS_FRAC: {
            char t[32];
            int n = snprintf(t, sizeof t, "%lld.%06lld", (long long)(us / 1000000),
                             (long long)(us % 1000000));
            put(&o, t, (size_t)n);
            break;
        }
        case FW_ALOG_PID:
            put_num(&o, a->pid);
            break;
        default:
            p = end;            /* Python compiled it: cannot happen */
            break;
        }
    }
    *o.p++ = '\n';
    a->fill_len = (size_t)(o.p - a->fill);
    free(r);
}
