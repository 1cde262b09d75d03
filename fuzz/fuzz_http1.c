/*
 * fuzz_http1.c - libFuzzer target for the request parser and the chunked
 * decoder of csrc/http1.c.
 *
 * Input layout:
 *   byte 0      configuration
 *                 bits 0-1  limits profile (see PROFILES)
 *                 bit  2    allow_underscores
 *                 bit  3    body mode: the rest is a chunked body only
 *                 bits 4-5  max_line of the chunked decoder (see MAX_LINES)
 *   byte 1      how to fragment the input: 0 = one byte at a time, else the
 *               seed of the generator that picks the piece sizes
 *   bytes 2..   the bytes a client sends
 *
 * In request mode the bytes are parsed as a sequence of pipelined requests:
 * each head is parsed whole and incrementally, its body (Content-Length or
 * chunked) skipped or decoded, and the next head parsed from what follows.
 *
 * Every result is checked against invariants; a violation prints what failed
 * and aborts, which libFuzzer reports as a crash.  Every call gets a buffer
 * allocated to the exact length it is told about, so AddressSanitizer sees
 * any read past the end.  It also checks the path the parser cuts out of an
 * absolute-form target (see fuzz/crashes/README.md).
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fw.h"

/* Longest input whose head is also fed one byte at a time (each step copies
 * the prefix, so this is quadratic). */
#define BYTEWISE_MAX 1024
/* Most pipelined requests looked at in one input. */
#define MAX_MESSAGES 8

static const fw_limits PROFILES[4] = {
    /* the server's defaults */
    {.request_line = 8190, .fields = 100, .field_size = 8190, .head = 65536},
    /* tiny limits, so that every 414/431 path is reachable */
    {.request_line = 24, .fields = 3, .field_size = 20, .head = 96},
    /* the smallest values the settings allow */
    {.request_line = 64, .fields = 1, .field_size = 64, .head = 1024},
    /* more fields than the parser can store: its own cap must hold */
    {.request_line = 300, .fields = 1000, .field_size = 64, .head = 65536},
};

static const size_t MAX_LINES[4] = {8190, 64, 5, 1};

/* ---- small helpers ---- */

static char *dup_exact(const uint8_t *p, size_t n)
{
    char *b = malloc(n ? n : 1);
    CHECK(b != NULL);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* xorshift32: deterministic piece sizes from the seed byte. */
typedef struct rng {
    uint32_t s;
} rng;

static void rng_init(rng *r, uint8_t seed, size_t len)
{
    r->s = 0x9e3779b9u ^ ((uint32_t)seed * 0x01000193u) ^ (uint32_t)len;
    if (r->s == 0)
        r->s = 1;
}

static uint32_t rng_next(rng *r)
{
    uint32_t x = r->s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->s = x;
    return x;
}

/* Size of the next piece: the top bits of the seed pick the spread. */
static size_t piece_size(rng *r, uint8_t seed)
{
    static const uint32_t spread[4] = {3, 16, 64, 700};
    if (seed == 0)
        return 1;
    return 1 + rng_next(r) % spread[seed >> 6];
}

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ieq(const uint8_t *p, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

/* p[0..n) is scheme "://" authority, the authority without '/' or '?'. */
static int is_absolute_prefix(const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (n == 0 || !((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z'))
        return 0;
    while (i < n && (((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z') ||
                     (p[i] >= '0' && p[i] <= '9') || p[i] == '+' ||
                     p[i] == '-' || p[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(p + i, "://", 3) != 0)
        return 0;
    for (i += 3; i < n; i++)
        if (p[i] == '/' || p[i] == '?')
            return 0;
    return 1;
}

static void check_slice(fw_slice s, size_t bound)
{
    CHECK(s.off <= bound);
    CHECK(s.len <= bound - s.off);
}

static int slices_eq(fw_slice a, fw_slice b)
{
    return a.off == b.off && a.len == b.len;
}

static int heads_eq(const fw_head *a, const fw_head *b)
{
    if (!slices_eq(a->method, b->method) || !slices_eq(a->target, b->target) ||
        !slices_eq(a->path, b->path) || !slices_eq(a->query, b->query) ||
        a->flags != b->flags || a->content_length != b->content_length ||
        a->nfields != b->nfields || a->head_len != b->head_len)
        return 0;
    for (uint32_t i = 0; i < a->nfields; i++)
        if (!slices_eq(a->fields[i].name, b->fields[i].name) ||
            !slices_eq(a->fields[i].value, b->fields[i].value))
            return 0;
    return 1;
}

/* ---- request heads ---- */

static int call_parse(const uint8_t *data, size_t len, const fw_limits *lim,
                      fw_head *out, size_t *scanned)
{
    char *b = dup_exact(data, len);
    int rc = fw_parse_head(b, len, lim, out, scanned);
    /* the parser only reads */
    CHECK(memcmp(b, data, len) == 0);
    free(b);
    return rc;
}

static int known_status(int rc)
{
    return rc == -400 || rc == -414 || rc == -417 || rc == -431 ||
           rc == -501 || rc == -505;
}

/* What an accepted head must look like, checked from the bytes. */
static void check_accepted(const uint8_t *d, size_t len, const fw_limits *lim,
                           int rc, const fw_head *h)
{
    size_t n = (size_t)rc;
    CHECK(n <= len);
    CHECK(h->head_len == n);
    CHECK(n <= lim->head);
    CHECK(n >= 4 && memcmp(d + n - 4, "\r\n\r\n", 4) == 0);

    /* request line: method SP target SP version CRLF */
    check_slice(h->method, n);
    check_slice(h->target, n);
    CHECK(h->method.len > 0 && h->target.len > 0);
    for (uint32_t i = 0; i < h->method.len; i++)
        CHECK(is_tchar(d[h->method.off + i]));
    CHECK(d[h->method.off + h->method.len] == ' ');
    CHECK(h->target.off == h->method.off + h->method.len + 1);
    for (uint32_t i = 0; i < h->target.len; i++)
        CHECK(d[h->target.off + i] > 0x20 && d[h->target.off + i] < 0x7f &&
              d[h->target.off + i] != '#');    /* never a fragment */
    /* the asterisk form only with OPTIONS */
    CHECK(d[h->target.off] != '*' ||
          (h->method.len == 7 && memcmp(d + h->method.off, "OPTIONS", 7) == 0));
    uint32_t tend = h->target.off + h->target.len;
    CHECK(d[tend] == ' ');
    CHECK(tend + 11 <= n && memcmp(d + tend + 1, "HTTP/1.", 7) == 0);
    CHECK(d[tend + 9] == '\r' && d[tend + 10] == '\n');
    CHECK(tend + 9 - h->method.off <= lim->request_line);
    /* HTTP/1.1 and any later 1.x are served as 1.1 (RFC 9110 2.5) */
    int http11 = d[tend + 8] != '0';
    CHECK(d[tend + 8] >= '0' && d[tend + 8] <= '9');
    CHECK(!!(h->flags & FW_REQ_HTTP11) == http11);
    /* only empty lines before the request line */
    for (uint32_t i = 0; i < h->method.off; i += 2)
        CHECK(d[i] == '\r' && d[i + 1] == '\n');

    /* path and query lie inside the target */
    check_slice(h->path, n);
    check_slice(h->query, n);
    CHECK(h->path.off >= h->target.off && h->path.off + h->path.len <= tend);
    CHECK(h->query.off >= h->target.off && h->query.off + h->query.len <= tend);
    for (uint32_t i = 0; i < h->path.len; i++)
        CHECK(d[h->path.off + i] != '?');
    if (h->query.len)
        CHECK(d[h->query.off - 1] == '?');
    /* A path that starts inside the target follows "scheme://authority"
     * with a real scheme (RFC 3986 3.1), not a "://" found anywhere. */
    if (h->path.off != h->target.off)
        CHECK(is_absolute_prefix(d + h->target.off, h->path.off - h->target.off));

    /* fields */
    CHECK(h->nfields <= lim->fields && h->nfields <= FW_MAX_FIELDS);
    int cl_fields = 0, te_fields = 0, host_fields = 0;
    uint32_t prev_end = tend + 11;
    for (uint32_t i = 0; i < h->nfields; i++) {
        const fw_field *f = &h->fields[i];
        check_slice(f->name, n);
        check_slice(f->value, n);
        CHECK(f->name.len > 0);
        CHECK(f->name.off >= prev_end);
        CHECK(f->name.off == 0 || d[f->name.off - 1] == '\n');
        for (uint32_t j = 0; j < f->name.len; j++) {
            unsigned char c = d[f->name.off + j];
            CHECK(is_tchar(c));
            CHECK(lim->allow_underscores || c != '_');
        }
        CHECK(d[f->name.off + f->name.len] == ':');
        CHECK(f->value.off > f->name.off + f->name.len);
        for (uint32_t j = 0; j < f->value.len; j++) {
            unsigned char c = d[f->value.off + j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f->value.len) {
            unsigned char a = d[f->value.off];
            unsigned char z = d[f->value.off + f->value.len - 1];
            CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t');
        }
        CHECK(f->name.len + 1 + f->value.len <= lim->field_size);
        prev_end = f->value.off + f->value.len;
        const uint8_t *nm = d + f->name.off;
        if (ieq(nm, f->name.len, "content-length")) {
            cl_fields++;
            int64_t v = 0;
            CHECK(f->value.len >= 1 && f->value.len <= 18);
            for (uint32_t j = 0; j < f->value.len; j++) {
                unsigned char c = d[f->value.off + j];
                CHECK(c >= '0' && c <= '9');
                v = v * 10 + (c - '0');
            }
            CHECK(v == h->content_length);
        } else if (ieq(nm, f->name.len, "transfer-encoding")) {
            te_fields++;
        } else if (ieq(nm, f->name.len, "host")) {
            host_fields++;
        }
    }

    /* framing: never both, never a guess */
    CHECK(cl_fields <= 1 && host_fields <= 1);
    CHECK(!(cl_fields && te_fields));
    CHECK((cl_fields == 1) == (h->content_length >= 0));
    CHECK(h->content_length >= -1);
    CHECK(!!(h->flags & FW_REQ_CHUNKED) == (te_fields > 0));
    if (h->flags & FW_REQ_CHUNKED)
        CHECK(http11);
    if (http11)
        CHECK(host_fields == 1);
    if (h->flags & FW_REQ_CONTINUE)
        CHECK(http11);
    CHECK(!!(h->flags & FW_REQ_HEAD) ==
          (h->method.len == 4 && memcmp(d + h->method.off, "HEAD", 4) == 0));
}

/*
 * Parse the head at d[0..len) whole, then again in pieces with the scanned
 * hint carried along, and compare.  Returns the whole-buffer result.
 */
static int check_head(const uint8_t *d, size_t len, const fw_limits *lim,
                      uint8_t seed, fw_head *whole)
{
    size_t scanned = 0;
    memset(whole, 0, sizeof *whole);
    int rc = call_parse(d, len, lim, whole, &scanned);

    /* the result does not depend on what the output held before */
    static fw_head dirty;
    memset(&dirty, 0xa5, sizeof dirty);
    size_t scanned2 = 0;
    int rc2 = call_parse(d, len, lim, &dirty, &scanned2);
    CHECK(rc2 == rc);
    if (rc > 0) {
        CHECK(heads_eq(whole, &dirty));
        check_accepted(d, len, lim, rc, whole);
        CHECK(scanned == 0);
    } else if (rc == 0) {
        CHECK(len <= lim->head);
        CHECK(scanned == len);
    } else {
        CHECK(known_status(rc));
    }

    /* an accepted head parses the same without what follows it */
    if (rc > 0 && (size_t)rc < len) {
        static fw_head alone;
        size_t s = 0;
        int r = call_parse(d, (size_t)rc, lim, &alone, &s);
        CHECK(r == rc);
        CHECK(heads_eq(whole, &alone));
    }

    /* incremental: growing prefixes, one scanned hint, one fw_head */
    if (seed == 0 && len > BYTEWISE_MAX)
        seed = 0x41;
    rng r;
    rng_init(&r, seed, len);
    static fw_head inc;
    memset(&inc, 0, sizeof inc);
    size_t hint = 0, pos = 0;
    int ri = 0;
    while (pos < len) {
        pos += piece_size(&r, seed);
        if (pos > len)
            pos = len;
        ri = call_parse(d, pos, lim, &inc, &hint);
        if (ri != 0)
            break;
        CHECK(hint == pos);
    }
    if (ri > 0) {
        /* the head was complete at pos: the same answer as the whole */
        CHECK(ri == rc);
        CHECK((size_t)ri <= pos);
        CHECK(heads_eq(whole, &inc));
    } else if (ri < 0) {
        /* a prefix may be refused with another status (414 before the
         * 400 the whole line earns, say), but never one that is accepted */
        CHECK(rc < 0);
        CHECK(known_status(ri));
        if (pos == len)
            CHECK(ri == rc);
    } else {
        CHECK(rc == 0);
    }
    return rc;
}

/* ---- chunked bodies ---- */

/* Feed b[0..len) to a fresh decoder in pieces; 0 as seed = byte by byte.
 * The data goes to out, the decoder ends in *st. */
static int feed_chunked(const uint8_t *b, size_t len, size_t max_line,
                        uint8_t seed, fw_chunked *st, uint8_t *out,
                        size_t *consumed, size_t *produced)
{
    rng r;
    rng_init(&r, seed, len);
    memset(st, 0, sizeof *st);
    size_t pos = 0, nout = 0;
    int rc = 0;
    while (pos < len) {
        size_t n = piece_size(&r, seed);
        if (n > len - pos)
            n = len - pos;
        char *piece = dup_exact(b + pos, n);
        size_t c = (size_t)-1, p = (size_t)-1;
        rc = fw_chunked_decode(st, piece, n, max_line, &c, &p);
        CHECK(c <= n && p <= c);
        /* untouched beyond what was consumed */
        CHECK(memcmp(piece + c, b + pos + c, n - c) == 0);
        memcpy(out + nout, piece, p);
        free(piece);
        nout += p;
        pos += c;
        CHECK(rc == 0 || rc == 1 || rc == -400);
        if (rc != 0)
            break;
        CHECK(c == n);
    }
    *consumed = pos;
    *produced = nout;
    return rc;
}

static int chunked_states_eq(const fw_chunked *a, const fw_chunked *b)
{
    return a->state == b->state && a->remaining == b->remaining &&
           a->line_len == b->line_len && a->trailer_len == b->trailer_len;
}

/*
 * Decode b[0..len) whole, byte by byte and in pieces; all three must agree
 * on the verdict, the bytes consumed, the data and the final state.
 * Returns the verdict; *consumed is where the body ended.
 */
static int check_chunked(const uint8_t *b, size_t len, size_t max_line,
                         uint8_t seed, size_t *consumed)
{
    char *whole = dup_exact(b, len);
    fw_chunked st;
    memset(&st, 0, sizeof st);
    size_t c = (size_t)-1, p = (size_t)-1;
    int rc = fw_chunked_decode(&st, whole, len, max_line, &c, &p);
    CHECK(rc == 0 || rc == 1 || rc == -400);
    CHECK(c <= len && p <= c);
    if (rc == 0)
        CHECK(c == len);
    CHECK(memcmp(whole + c, b + c, len - c) == 0);

    uint8_t *out = malloc(len ? len : 1);
    CHECK(out != NULL);
    fw_chunked st2;
    size_t c2, p2;
    int rc2 = feed_chunked(b, len, max_line, 0, &st2, out, &c2, &p2);
    CHECK(rc2 == rc && c2 == c && p2 == p);
    CHECK(memcmp(out, whole, p) == 0);
    CHECK(chunked_states_eq(&st, &st2));
    if (seed != 0) {
        rc2 = feed_chunked(b, len, max_line, seed, &st2, out, &c2, &p2);
        CHECK(rc2 == rc && c2 == c && p2 == p);
        CHECK(memcmp(out, whole, p) == 0);
        CHECK(chunked_states_eq(&st, &st2));
    }

    /* once done, the decoder takes nothing more */
    if (rc == 1 && c < len) {
        char one = (char)b[c];
        size_t c3 = 1, p3 = 1;
        int rc3 = fw_chunked_decode(&st, &one, 1, max_line, &c3, &p3);
        CHECK(rc3 != 0 && c3 == 0 && p3 == 0);
    }
    free(out);
    free(whole);
    *consumed = c;
    return rc;
}

/* ---- entry point ---- */

/* The PROXY header parser: the whole input and every prefix of it must
 * agree (a header is found at its full length and "need more" before; a
 * refusal stays a refusal), and what it reports is well formed. */
static void check_proxy(const uint8_t *data, size_t size)
{
    char *b = malloc(size ? size : 1);  /* exact size: ASan sees overreads */
    CHECK(b != NULL);
    memcpy(b, data, size);
    fw_proxy px;
    int full = fw_parse_proxy(b, size, &px);
    CHECK(full >= -1 && full <= (int)size);
    if (full > 0) {
        CHECK(px.family == 0 || px.family == AF_INET || px.family == AF_INET6);
        CHECK(memchr(px.addr, '\0', sizeof px.addr) != NULL);
        CHECK(memchr(px.port, '\0', sizeof px.port) != NULL);
        if (px.family) {
            unsigned char bin[16];
            CHECK(inet_pton(px.family, px.addr, bin) == 1);
            CHECK(px.port[0] != '\0' && atoi(px.port) <= 65535);
        }
        CHECK(memcmp(b, "PROXY ", 6) == 0 ||
              memcmp(b, "\r\n\r\n\0\r\nQUIT\n", 12) == 0);
    }
    int refused = 0;
    for (size_t n = 0; n <= size && n <= 1200; n++) {
        fw_proxy p2;
        char *pre = malloc(n ? n : 1);
        CHECK(pre != NULL);
        memcpy(pre, b, n);
        int r = fw_parse_proxy(pre, n, &p2);
        free(pre);
        if (full > 0 && (size_t)full > n)
            CHECK(r == 0);
        if (full > 0 && (size_t)full <= n)
            CHECK(r == full && memcmp(&p2, &px, sizeof px) == 0);
        if (refused)
            CHECK(r == -1);
        refused |= r == -1;
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cfg = data[0], seed = data[1];
    fw_limits lim = PROFILES[cfg & 3];
    lim.allow_underscores = (cfg >> 2) & 1;
    size_t max_line = MAX_LINES[(cfg >> 4) & 3];
    data += 2;
    size -= 2;

    if ((cfg & 0xc0) == 0xc0) {
        check_proxy(data, size);
        return 0;
    }
    if (cfg & 8) {
        size_t used;
        check_chunked(data, size, max_line, seed, &used);
        return 0;
    }

    static fw_head head;
    size_t off = 0;
    for (int i = 0; i < MAX_MESSAGES && off < size; i++) {
        int rc = check_head(data + off, size - off, &lim, seed, &head);
        if (rc <= 0)
            break;
        off += (size_t)rc;
        if (head.flags & FW_REQ_CHUNKED) {
            size_t used;
            if (check_chunked(data + off, size - off, max_line, seed,
                              &used) != 1)
                break;
            off += used;
        } else if (head.content_length > 0) {
            if ((uint64_t)head.content_length > size - off)
                break;
            off += (size_t)head.content_length;
        }
    }
    return 0;
}
