/*
 * environ.c - a request's environ, built in C from its parsed head, and
 * the shape cache.
 *
 * build_env writes the request's keys and values into the loop's scratch
 * blocks (loop->keys, loop->env); shape_of numbers the sequence of keys,
 * so that Python, which keeps a ready environ for each number, is sent
 * the keys only the first time.  Only the head, the connection's peer
 * address and flags are read here; only those blocks and the loop's shape
 * table are written.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "core.h"

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
long build_env(fw_conn *c, const char *buf, const fw_head *h,
               int *in_flags, size_t *keys_len)
{
    fw_loop *loop = c->loop;
    /* What is written is bounded by the head: PATH_INFO, REQUEST_URI and
     * the Host of an absolute-form target are each at most the target,
     * the field values at most the head, a key at most its name plus
     * "HTTP_" and a NUL, and the fixed keys and peer address a few
     * hundred bytes.  Checked here, not assumed from the limits. */
    size_t most = 3 * (size_t)h->head_len + 8 * (size_t)h->nfields + 512 +
                  (c->tls_dn ? FW_TLS_DN_MAX : 0);
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
    if (c->tls_dn) {
        /* At most FW_TLS_DN_MAX bytes, within the room counted above. */
        e.k = put(e.k, "SSL_CLIENT_VERIFY=SUCCESS", 26);
        PUT_KV(&e, "SSL_CLIENT_S_DN", c->tls_dn, strlen(c->tls_dn));
    }

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
int shape_of(fw_loop *loop, const char *keys, size_t len, int *fresh)
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
