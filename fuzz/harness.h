/*
 * harness.h - what fuzz_conn.c and fuzz_tls.c share: the CHECK macros
 * (check.h, which fuzz_http1.c uses too), byte buffers, arenas and strings, the body pattern, the input cursor,
 * the timeout and clock tables, the loop's clock, the environ model of the
 * app (shape table, learn, envl), the values-block splitter and a few
 * socket and response-parsing helpers.
 *
 * Static definitions, included once by each target after its system
 * headers (with _GNU_SOURCE defined first).  A target may define
 * GB_PRINTF_MAX (the longest line gb_printf formats, plus one) before
 * including it.
 */
#ifndef FUZZ_HARNESS_H
#define FUZZ_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "check.h"
#include "core.h"

#ifndef GB_PRINTF_MAX
#define GB_PRINTF_MAX 512
#endif

#ifndef FUZZ_SELFTEST
#define FUZZ_SELFTEST 0
#endif

/* One past the shape table: keys good for one request only (fw.h). */
#ifndef FW_SHAPE_ONCE
#define FW_SHAPE_ONCE FW_SHAPES
#endif

/* ---- small helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

/* A growable byte buffer. */
typedef struct gbuf {
    char *d;
    size_t len, cap;
} gbuf;

static void gb_reserve(gbuf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    char *nd = realloc(b->d, cap);
    CHECK(nd != NULL);
    b->d = nd;
    b->cap = cap;
}

static void gb_put(gbuf *b, const void *p, size_t n)
{
    gb_reserve(b, n);
    if (n)
        memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void gb_puts(gbuf *b, const char *s)
{
    gb_put(b, s, strlen(s));
}

static void gb_printf(gbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void gb_printf(gbuf *b, const char *fmt, ...)
{
    char tmp[GB_PRINTF_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < sizeof tmp);
    gb_put(b, tmp, (size_t)n);
}

static void gb_free(gbuf *b)
{
    free(b->d);
    memset(b, 0, sizeof *b);
}

/* An arena: everything an input allocates for its model, freed at once. */
typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->head == NULL || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        ablock *b = xmalloc(sizeof *b + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a)
{
    while (a->head) {
        ablock *b = a->head;
        a->head = b->next;
        free(b);
    }
}

static arena g_arena;           /* per input */
static arena g_scratch;         /* per app call */

static char *adup(arena *a, const char *p, size_t n)
{
    char *s = arena_alloc(a, n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

typedef struct str {
    const char *p;
    size_t n;
} str;

static int str_eq(str a, str b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

static int str_cmp(str a, str b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int r = memcmp(a.p, b.p, n);
    if (r)
        return r;
    return a.n < b.n ? -1 : a.n > b.n;
}

static str S(const char *s)
{
    return (str){s, strlen(s)};
}

/* The byte at position i of a body, different per (seed, position). */
static inline uint8_t pat(uint32_t seed, uint64_t i)
{
    return (uint8_t)(seed + i * 31 + (i >> 7) * 7 + (i >> 14) * 3);
}

static void pat_fill(char *dst, uint32_t seed, uint64_t from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)pat(seed, from + i);
}

typedef struct cursor {
    const uint8_t *p;
    size_t n;
} cursor;

static uint8_t take(cursor *c)
{
    if (c->n == 0)
        return 0;
    c->n--;
    return *c->p++;
}

/* ---- configuration ---- */

/* keepalive, header, body, write (ms); 0 disables a timer */
static const int TIMEOUTS[4][4] = {
    {5000, 10000, 30000, 30000},
    {300, 500, 700, 900},
    {1, 1, 1, 1},
    {0, 400, 0, 600},
};

static const int CLOCK_STEPS[16] = {
    1, 2, 50, 100, 299, 300, 301, 450, 500, 501, 699, 900, 1000, 2001, 5000,
    60000,
};

/* ---- the client side: response parser states ---- */

enum {
    RX_HEAD, RX_LEN, RX_CK_SIZE, RX_CK_DATA, RX_CK_CRLF, RX_CK_TRAILER,
    RX_EOF_BODY, RX_AFTER_CLOSE, RX_DISCARD
};

/* ---- global state of one input ---- */

static fw_loop *g_loop;
static fw_config g_cfg;
static int64_t g_clock;
static int64_t g_min_timeout;
static int g_listen_fd = -1;
static unsigned g_listen_no;
static int g_verbose, g_trace;

#define TRACE(...)                                                           \
    do {                                                                     \
        if (g_trace)                                                         \
            fprintf(stderr, __VA_ARGS__);                                    \
    } while (0)

int64_t loop_clock_ms(void)
{
    return g_clock;
}

/* ---- the app side: environ ---- */

/* The shape table, as wsgi.py keeps it (one more for FW_SHAPE_ONCE). */
typedef struct shape {
    int known;
    int nconst;
    str *ck, *cv;
    int nkeys;
    str *keys;
} shape;

static shape g_shapes[FW_SHAPES + 1];

static void learn(int sh, const char *keys, size_t n)
{
    shape *s = &g_shapes[sh];
    memset(s, 0, sizeof *s);
    int total = 1;
    for (size_t i = 0; i < n; i++)
        total += keys[i] == '\0';
    s->ck = arena_alloc(&g_arena, sizeof(str) * (size_t)total);
    s->cv = arena_alloc(&g_arena, sizeof(str) * (size_t)total);
    s->keys = arena_alloc(&g_arena, sizeof(str) * (size_t)total);
    const char *copy = adup(&g_arena, keys, n);
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && copy[j] != '\0')
            j++;
        str k = {copy + i, j - i};
        const char *eq = memchr(k.p, '=', k.n);
        if (eq) {
            s->ck[s->nconst] = (str){k.p, (size_t)(eq - k.p)};
            s->cv[s->nconst] = (str){eq + 1, k.n - (size_t)(eq - k.p) - 1};
            s->nconst++;
        } else {
            CHECKF(k.n > 0, "an empty environ key in shape %d", sh);
            s->keys[s->nkeys++] = k;
        }
        if (j >= n)
            break;
        i = j + 1;
    }
    s->known = 1;
}

typedef struct envl {
    int n, cap;
    str *k, *v;
} envl;

static void env_init(envl *e, int cap)
{
    e->n = 0;
    e->cap = cap;
    e->k = arena_alloc(&g_scratch, sizeof(str) * (size_t)cap);
    e->v = arena_alloc(&g_scratch, sizeof(str) * (size_t)cap);
}

/* Store like a dict: merge joins a repeated key's values with ", "
 * (wsgi.py _merge_repeated), else the last value wins. */
static void env_set(envl *e, str k, str v, int merge)
{
    for (int i = 0; i < e->n; i++) {
        if (str_eq(e->k[i], k)) {
            if (merge) {
                char *m = arena_alloc(&g_scratch, e->v[i].n + 2 + v.n + 1);
                memcpy(m, e->v[i].p, e->v[i].n);
                memcpy(m + e->v[i].n, ", ", 2);
                memcpy(m + e->v[i].n + 2, v.p, v.n);
                e->v[i] = (str){m, e->v[i].n + 2 + v.n};
            } else {
                e->v[i] = v;
            }
            return;
        }
    }
    CHECK(e->n < e->cap);
    e->k[e->n] = k;
    e->v[e->n] = v;
    e->n++;
}

static void env_sort(envl *e)
{
    for (int i = 1; i < e->n; i++) {
        str k = e->k[i], v = e->v[i];
        int j = i - 1;
        while (j >= 0 && str_cmp(e->k[j], k) > 0) {
            e->k[j + 1] = e->k[j];
            e->v[j + 1] = e->v[j];
            j--;
        }
        e->k[j + 1] = k;
        e->v[j + 1] = v;
    }
}

/* ---- the app side: connections ---- */

static int conn_listed(fw_conn *c)
{
    for (fw_conn *x = g_loop->conns; x; x = x->next)
        if (x == c)
            return 1;
    return 0;
}

/* Split a values block into its NUL-separated values. */
static int split_values(const char *env, size_t len, str **out)
{
    int n = 1;
    for (size_t i = 0; i < len; i++)
        n += env[i] == '\0';
    str *v = arena_alloc(&g_scratch, sizeof(str) * (size_t)n);
    size_t i = 0;
    for (int k = 0; k < n; k++) {
        size_t j = i;
        while (j < len && env[j] != '\0')
            j++;
        v[k] = (str){env + i, j - i};
        i = j + 1;
    }
    *out = v;
    return n;
}

void fw_py_wakeup(void *ud)
{
    (void)ud;
    CHECKF(0, "fw_py_wakeup without a wake-up descriptor");
}

/* ---- the client side: sockets ---- */

static void small_bufs(int fd)
{
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

static int hdr_is(const char *p, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(p, name, n) == 0;
}

#endif /* FUZZ_HARNESS_H */
