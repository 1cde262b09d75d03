/*
 * fuzz_tls.c - libFuzzer target for TLS on a connection: csrc/tls.c under
 * the connection layer (conn.c with send.c, environ.c, batch.c and
 * body.c), csrc/response.c, csrc/loop.c and csrc/http1.c, with no Python.
 * The loop serves listener 0 with a real server context (fw_tls_context
 * from the certificates in tls_cert.h, given with fw_loop_tls); listener 1
 * has none.  The harness plays both sides:
 *
 *   - clients: up to MAX_SLOTS sockets, one end of a socketpair adopted
 *     with conn_new + conn_run, or a connect() to listener 0's unix socket
 *     that the loop accepts.  A TLS client is an OpenSSL client session over
 *     memory BIOs (its functions looked up in the same libssl, below): its
 *     ClientHello and the records that carry its requests go out split
 *     where the input says, in records of the size it says, with bytes
 *     flipped or raw bytes put in between, and it may close, shut down,
 *     say close_notify or update its keys at any point.  A garbage client
 *     sends the input's raw bytes only; a plain client speaks HTTP to
 *     listener 1;
 *   - the app: fw_py_request / fw_py_batch / fw_py_writable / fw_py_closed
 *     written in C.  It rebuilds each environ as fastwsgi/wsgi.py does and
 *     is the ORACLE: the environ and body must be exactly those the client
 *     of that connection sent, in order (TLS protects them: a damaged
 *     record may end a connection, never change a request), with the
 *     client certificate's subject when one was verified.  The clients
 *     decrypt every response and check that it is the app's answer to that
 *     request, and that a connection the server ends ends with close_notify.
 *
 * The loop's clock is the harness's (-DFW_EXTERNAL_CLOCK) and OpenSSL's
 * random bytes come from a generator seeded by the input, so that a run
 * repeats.  The input format is in fuzz/README.md and at "the program"
 * below.
 *
 * A violated expectation prints what failed and aborts (a crash for
 * libFuzzer).  Build with -DFUZZ_SELFTEST=1 (the app changes one byte of a
 * response body) or -DFUZZ_SELFTEST=2 (the app swaps two environ values)
 * to see the oracle fail.  Linked with -Wl,--wrap= for tls_read,
 * tls_write and tls_close_notify: the harness checks and counts what they
 * return, and FUZZ_TLS_STATS=1 prints the counts at exit (scripts/fuzz
 * requires that the seeds made tls_read return data).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"
#include "tls_cert.h"

/* (its lines are shorter than fuzz_conn's) */
#define GB_PRINTF_MAX 256
#include "harness.h"

#define MAX_SLOTS 8             /* client sockets open at once */
#define MAX_RECS 24             /* connections per input */
#define MAX_OPS 3000            /* operations per input */
#define REQ_BUDGET (1u << 20)   /* request bytes generated per input */
#define RESP_BUDGET (2u << 20)  /* large response bodies per input */
#define GEN_LEN 4               /* bytes of one request description */

/* ---- small helpers ---- */

/* Drop b's first n bytes. */
static void gb_consume(gbuf *b, size_t n)
{
    CHECK(n <= b->len);
    memmove(b->d, b->d + n, b->len - n);
    b->len -= n;
}

static str astr(const char *s)
{
    return (str){adup(&g_arena, s, strlen(s)), strlen(s)};
}

/* ---- OpenSSL, the client side ---- */

/* The constants used, as OpenSSL 1.1.1 and 3.x both define them. */
#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_ERROR_ZERO_RETURN 6
#define SSL_FILETYPE_PEM 1
#define SSL_VERIFY_PEER 1
#define SSL_CTRL_SET_TLSEXT_HOSTNAME 55
#define SSL_CTRL_SET_MIN_PROTO_VERSION 123
#define SSL_CTRL_SET_MAX_PROTO_VERSION 124
#define SSL_KEY_UPDATE_NOT_REQUESTED 0
#define SSL_KEY_UPDATE_REQUESTED 1
#define BIO_C_SET_BUF_MEM_EOF_RETURN 130
#define TLS1_2_VERSION 0x0303
#define TLS1_3_VERSION 0x0304
#define X509_V_OK 0

/* OpenSSL's RAND_METHOD (the same in 1.1.1 and 3.x). */
typedef struct rand_method {
    int (*seed)(const void *buf, int num);
    int (*bytes)(unsigned char *buf, int num);
    void (*cleanup)(void);
    int (*add)(const void *buf, int num, double randomness);
    int (*pseudorand)(unsigned char *buf, int num);
    int (*status)(void);
} rand_method;

/* What the clients use, from the libssl that tls.c loaded (dlopen gives
 * the same library again; libcrypto's functions come through it). */
static struct {
    void *lib;
    const void *(*TLS_client_method)(void);
    void *(*SSL_CTX_new)(const void *);
    void (*SSL_CTX_free)(void *);
    void (*SSL_CTX_flush_sessions)(void *, long);
    void (*SSL_CTX_set_verify)(void *, int, void *);
    int (*SSL_CTX_load_verify_locations)(void *, const char *, const char *);
    int (*SSL_CTX_use_certificate_chain_file)(void *, const char *);
    int (*SSL_CTX_use_PrivateKey_file)(void *, const char *, int);
    void *(*SSL_new)(void *);
    void (*SSL_free)(void *);
    long (*SSL_ctrl)(void *, int, long, void *);
    void (*SSL_set_bio)(void *, void *, void *);
    void (*SSL_set_connect_state)(void *);
    int (*SSL_set_cipher_list)(void *, const char *);
    int (*SSL_set_alpn_protos)(void *, const unsigned char *, unsigned int);
    void (*SSL_get0_alpn_selected)(const void *, const unsigned char **,
                                   unsigned int *);
    int (*SSL_do_handshake)(void *);
    int (*SSL_read)(void *, void *, int);
    int (*SSL_write)(void *, const void *, int);
    int (*SSL_get_error)(const void *, int);
    int (*SSL_shutdown)(void *);
    int (*SSL_key_update)(void *, int);
    int (*SSL_version)(const void *);
    long (*SSL_get_verify_result)(const void *);
    void *(*SSL_get1_session)(void *);
    int (*SSL_set_session)(void *, void *);
    int (*SSL_session_reused)(const void *);
    void (*SSL_SESSION_free)(void *);
    const void *(*BIO_s_mem)(void);
    void *(*BIO_new)(const void *);
    int (*BIO_read)(void *, void *, int);
    int (*BIO_write)(void *, const void *, int);
    long (*BIO_ctrl)(void *, int, long, void *);
    unsigned long (*ERR_get_error)(void);
    void (*ERR_error_string_n)(unsigned long, char *, size_t);
    void (*ERR_clear_error)(void);
    int (*RAND_set_rand_method)(const rand_method *);
} K;

/* OpenSSL's random bytes: splitmix64 from the input's seed. */
static uint64_t g_rand;

static int fz_rand_bytes(unsigned char *buf, int num)
{
    for (int i = 0; i < num; i++) {
        if ((i & 7) == 0)
            g_rand += 0x9e3779b97f4a7c15ull;
        uint64_t z = g_rand;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        buf[i] = (unsigned char)(z >> (8 * (i & 7)));
    }
    return 1;
}

static int fz_rand_seed(const void *buf, int num)
{
    (void)buf, (void)num;
    return 1;
}

static int fz_rand_add(const void *buf, int num, double randomness)
{
    (void)buf, (void)num, (void)randomness;
    return 1;
}

static int fz_rand_status(void)
{
    return 1;
}

static const rand_method FZ_RAND = {
    fz_rand_seed, fz_rand_bytes, NULL, fz_rand_add, fz_rand_bytes,
    fz_rand_status,
};

static void load_client_side(void)
{
    char err[256];
    CHECKF(fw_tls_load(NULL, err, sizeof err) == 0, "fw_tls_load: %s", err);
    K.lib = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (K.lib == NULL)
        K.lib = dlopen("libssl.so.1.1", RTLD_NOW | RTLD_LOCAL);
    CHECKF(K.lib != NULL, "dlopen libssl: %s", dlerror());
#define SYM(name)                                                            \
    do {                                                                     \
        *(void **)&K.name = dlsym(K.lib, #name);                             \
        CHECKF(K.name != NULL, "libssl lacks %s", #name);                    \
    } while (0)
    SYM(TLS_client_method);
    SYM(SSL_CTX_new);
    SYM(SSL_CTX_free);
    SYM(SSL_CTX_flush_sessions);
    SYM(SSL_CTX_set_verify);
    SYM(SSL_CTX_load_verify_locations);
    SYM(SSL_CTX_use_certificate_chain_file);
    SYM(SSL_CTX_use_PrivateKey_file);
    SYM(SSL_new);
    SYM(SSL_free);
    SYM(SSL_ctrl);
    SYM(SSL_set_bio);
    SYM(SSL_set_connect_state);
    SYM(SSL_set_cipher_list);
    SYM(SSL_set_alpn_protos);
    SYM(SSL_get0_alpn_selected);
    SYM(SSL_do_handshake);
    SYM(SSL_read);
    SYM(SSL_write);
    SYM(SSL_get_error);
    SYM(SSL_shutdown);
    SYM(SSL_key_update);
    SYM(SSL_version);
    SYM(SSL_get_verify_result);
    SYM(SSL_get1_session);
    SYM(SSL_set_session);
    SYM(SSL_session_reused);
    SYM(SSL_SESSION_free);
    SYM(BIO_s_mem);
    SYM(BIO_new);
    SYM(BIO_read);
    SYM(BIO_write);
    SYM(BIO_ctrl);
    SYM(ERR_get_error);
    SYM(ERR_error_string_n);
    SYM(ERR_clear_error);
    SYM(RAND_set_rand_method);
#undef SYM
    CHECK(K.RAND_set_rand_method(&FZ_RAND) == 1);
}

/* OpenSSL's first queued error, as text, and the queue emptied. */
static const char *ssl_errors(void)
{
    static char buf[256];
    unsigned long e = K.ERR_get_error();
    buf[0] = '\0';
    if (e)
        K.ERR_error_string_n(e, buf, sizeof buf);
    K.ERR_clear_error();
    return buf;
}

/* ---- keys and certificates, as files ---- */

/* A PEM text in a memfd, named by its /proc path (OpenSSL opens files). */
static char *pem_file(const char *name, const char *a, const char *b)
{
    int fd = memfd_create(name, 0);
    CHECK(fd >= 0);
    CHECK(write(fd, a, strlen(a)) == (ssize_t)strlen(a));
    if (b)
        CHECK(write(fd, b, strlen(b)) == (ssize_t)strlen(b));
    char *path = xmalloc(40);
    snprintf(path, 40, "/proc/self/fd/%d", fd);
    return path;
}

static char *g_server_key, *g_server_cert, *g_big_cert, *g_client_key,
    *g_client_cert, *g_trusted;
static void *g_cctx[2];         /* client contexts: [1] has a certificate */

/* ---- configuration ---- */

/* Server profiles (byte 0, bits 0-1). */
enum { P_ANY, P_TLS13, P_BIG, P_CLIENT_CERT };

/* Plaintext bytes per record (RECSIZE). */
static const size_t REC_SIZES[16] = {
    16384, 1, 2, 3, 5, 7, 16, 64, 100, 300, 512, 1000, 1500, 4096, 8000,
    16383,
};

/* ---- the model: requests and connections ---- */

enum { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_EOF };

/* What the client must receive for a request. */
typedef struct plan {
    int status;
    int framing;                /* FR_* (for a non-HEAD request) */
    int64_t declared;           /* Content-Length sent, -1 none */
    int64_t actual;             /* body bytes that come */
    int close_hdr;              /* "Connection: close" */
    int ka_hdr;                 /* "Connection: keep-alive" */
    int closes;                 /* the connection ends after it */
    int core_error;             /* the body is the core's error text */
    uint32_t seed;              /* of the body bytes */
    const char *xid;            /* an X-Id field to find, or NULL */
} plan;

enum { Q_REQ, Q_POISON };

typedef struct req {
    struct req *next;
    int kind;                   /* Q_* */
    int seq;
    uint64_t end;               /* plaintext offset just past its bytes */
    uint64_t wire_end;          /* wire offset past the last record that
                                   carries it; 0 while not in records */
    int cut;                    /* never sent whole (close, shut, notify) */
    int nenv;
    str *ek, *ev;               /* the environ the app must see */
    int head, http10, keepalive, expect100;
    int64_t body_len;
    uint32_t body_seed;
    int refuse;                 /* the status the core must answer, or 0 */
    int mode, param;            /* how the app answers */
    int handled;                /* the app answered: p is its plan */
    plan p;
    int saw100;
} req;

/* A response the app is producing over several calls. */
typedef struct stream {
    int active;
    req *r;
    int64_t total, done;
    size_t piece;
    int per_call;               /* one piece per fw_py_writable */
    char *held;                 /* memory C may still send from */
    int memfd;                  /* sendfile source, -1 */
    uint32_t seed;
} stream;

/* Client kinds (OPEN, a & 3). */
enum { K_TLS, K_TLS_ACCEPTED, K_GARBAGE, K_PLAIN };

typedef struct rec {
    struct rec *next;
    int rid, slot, kind;
    int fd;                     /* client end, -1 once closed */
    int sfd;                    /* server end (the core owns it) */
    ino_t sino;
    int via_listener, bound;
    uint64_t id;
    fw_conn *conn;
    int listener;
    char raddr[48], rport[8];
    int server_gone;            /* the core closed it */
    int client_closed, shut;
    int damaged;                /* a flipped or foreign byte among its
                                   records: TLS may end it at any point */
    int doomed;                 /* no handshake can succeed (versions or
                                   ciphers the server refuses) */
    int unchecked;              /* raw plaintext reached the app */
    int closing;                /* the app's answer ends the connection */
    int saw_gone;               /* a response call said -1 */
    int64_t opened_at;
    /* its TLS session */
    void *ssl, *rbio, *wbio;
    int versions, alpn, with_cert, resume;
    int hs_done, tls_failed, notified, got_notify, hs_started;
    int resumed, dn;            /* the server must report its certificate */
    size_t rec_size;
    gbuf pt;                    /* plaintext not yet in records */
    uint64_t pt_queued, pt_done;
    /* the wire */
    gbuf out;                   /* not yet sent */
    uint64_t wire_queued, sent;
    int nseq;
    req *qh, *qt, *app_next, *rx_next;
    stream st;
    /* what comes back: plaintext for the response reader, or the raw
     * records of a garbage client */
    gbuf rx;
    size_t rx_off;
    int rx_state;
    int64_t rx_left, rx_got;
    const plan *rx_plan;
    plan rx_core;
    int rx_eof;
    char first[8];              /* a garbage client's first bytes */
    size_t first_len;
} rec;

/* ---- global state of one input ---- */

static int g_profile, g_suppress, g_small_bufs;
static int g_cert_big;          /* listener 0 serves the big certificate */
static rec *g_recs;
static rec *g_slots[MAX_SLOTS];
static int g_nrecs;
static int g_in_callback, g_freeing;
static uint64_t g_req_bytes, g_resp_bytes, g_progress;
/* The last session a client can resume, by its versions (OPEN): a client
 * offers a session only with the versions and ciphers that made it. */
static void *g_session[4];
static int g_session_dn[4];     /* its handshake verified a certificate */
static struct stats {
    long opened, handshakes, resumed, dn, failed, doomed, requests,
        tls_requests, batched, bodies, spooled, responses, refusals,
        notifies, key_updates, renewals, damaged, garbage_bytes, streams,
        writable, closed, turns;
    uint64_t wire_hash;         /* FNV-1a of every byte the clients sent:
                                   the same input, the same bytes */
} g_st;

/* What tls_read, tls_write and tls_close_notify returned (over the
 * process). */
static struct {
    long rd_data, rd_eof, rd_again, rd_error, rd_wants_out;
    long wr_data, wr_again, wr_error, wr_wants_in;
    long notify_waits;
    long inputs;
} g_io;

ssize_t __real_tls_read(fw_conn *c, char *buf, size_t len);
ssize_t __real_tls_write(fw_conn *c, const char *data, size_t len);
int __real_tls_close_notify(fw_conn *c);
ssize_t __wrap_tls_read(fw_conn *c, char *buf, size_t len);
ssize_t __wrap_tls_write(fw_conn *c, const char *data, size_t len);
int __wrap_tls_close_notify(fw_conn *c);

/* Check what tls_read or tls_write (what) returned for len bytes, with
 * errno e, and count it: data, end of stream (eof NULL: not counted),
 * EAGAIN or another error. */
static void count_io(const char *what, ssize_t n, size_t len, int e,
                     long *data, long *eof, long *again, long *error)
{
    CHECKF(n >= -1 && n <= (ssize_t)len, "%s returned %zd for %zu", what,
           n, len);
    if (n > 0)
        (*data)++;
    else if (n == 0) {
        if (eof)
            (*eof)++;
    } else if (e == EAGAIN)
        (*again)++;
    else
        (*error)++;
}

ssize_t __wrap_tls_read(fw_conn *c, char *buf, size_t len)
{
    CHECK(c->tls != NULL && c->state != CS_LINGER && len > 0);
    ssize_t n = __real_tls_read(c, buf, len);
    int e = errno;
    count_io("tls_read", n, len, e, &g_io.rd_data, &g_io.rd_eof,
             &g_io.rd_again, &g_io.rd_error);
    if (n < 0 && (c->tls_want & TLS_READ_WANTS_OUT))
        g_io.rd_wants_out++;
    TRACE("  tls_read %zu: %zd%s%s\n", len, n,
          n < 0 && e == EAGAIN ? " (EAGAIN)" : n < 0 ? " (error)" : "",
          c->tls_want & TLS_READ_WANTS_OUT ? ", waits to send" : "");
    errno = e;
    return n;
}

ssize_t __wrap_tls_write(fw_conn *c, const char *data, size_t len)
{
    CHECK(c->tls != NULL);
    ssize_t n = __real_tls_write(c, data, len);
    int e = errno;
    count_io("tls_write", n, len, e, &g_io.wr_data, NULL, &g_io.wr_again,
             &g_io.wr_error);
    if (n < 0 && (c->tls_want & TLS_WRITE_WANTS_IN))
        g_io.wr_wants_in++;
    errno = e;
    return n;
}

int __wrap_tls_close_notify(fw_conn *c)
{
    int r = __real_tls_close_notify(c);
    CHECK(r == 0 || r == 1);
    CHECK(r == !!(c->tls_want & TLS_NOTIFY_WAITS));
    g_io.notify_waits += r;
    TRACE("  tls_close_notify: %s\n", r ? "waits for room" : "done");
    return r;
}

/* Some timer may have run out for this connection: it may be gone, a
 * request may get 408 and a response be cut short. */
static int lossy(const rec *r)
{
    return g_min_timeout > 0 && g_clock - r->opened_at >= g_min_timeout;
}

/* Whether the connection may end at any point, and its requests go
 * unanswered: its bytes were damaged, its handshake cannot succeed, a
 * timer may have run out, or its client ended its side with an EOF that
 * OpenSSL 3 takes for a truncation (without suppress_ragged_eofs). */
static int may_end(const rec *r)
{
    return r->damaged || r->doomed || lossy(r) || r->client_closed ||
           (r->shut && r->ssl && !g_suppress);
}

/* ---- the app side: environ ---- */

static void env_dump(const char *title, const envl *e)
{
    fprintf(stderr, "  %s (%d keys):\n", title, e->n);
    for (int i = 0; i < e->n; i++) {
        fprintf(stderr, "    %.*s = ", (int)e->k[i].n, e->k[i].p);
        size_t n = e->v[i].n > 100 ? 100 : e->v[i].n;
        for (size_t j = 0; j < n; j++) {
            unsigned char ch = (unsigned char)e->v[i].p[j];
            if (ch >= 0x20 && ch < 0x7f)
                fputc(ch, stderr);
            else
                fprintf(stderr, "\\x%02x", ch);
        }
        fprintf(stderr, "%s\n", e->v[i].n > 100 ? "..." : "");
    }
}

/* ---- the app side: connections ---- */

#include "harness_rec.h"

/* A connection the loop accepted: its peer's address names the client. */
static rec *bind_accepted(fw_conn *c)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    CHECKF(getpeername(c->io.fd, (struct sockaddr *)&sa, &len) == 0,
           "getpeername of an accepted connection: %s", strerror(errno));
    CHECK(len > offsetof(struct sockaddr_un, sun_path) + 1);
    unsigned pid = 0;
    int rid = -1;
    CHECKF(sscanf(sa.sun_path + 1, "fzt.%u.%d", &pid, &rid) == 2,
           "an accepted connection from an unknown peer");
    for (rec *r = g_recs; r; r = r->next) {
        if (r->via_listener && !r->bound && r->rid == rid) {
            r->bound = 1;
            r->id = fw_conn_id(c);
            r->conn = c;
            r->sfd = c->io.fd;
            struct stat st;
            CHECK(fstat(r->sfd, &st) == 0);
            r->sino = st.st_ino;
            TRACE("  conn %d accepted as %llu\n", r->rid,
                  (unsigned long long)r->id);
            return r;
        }
    }
    CHECKF(0, "an accepted connection from client %d, which is not waiting",
           rid);
    return NULL;
}

/* The record of a connection a callback names.  A connection whose
 * client went away after its request was batched is still in the batch,
 * closed (batch.c: every response call then says -1). */
static rec *rec_of(fw_conn *c, const char *cb, int batched)
{
    CHECK(c != NULL);
    uint64_t id = fw_conn_id(c);
    rec *r = rec_by_id(id);
    if (r == NULL)
        r = bind_accepted(c);
    CHECKF(!r->server_gone, "%s for connection %llu after it was closed", cb,
           (unsigned long long)id);
    CHECKF(r->conn == c, "%s: connection %llu has another pointer", cb,
           (unsigned long long)id);
    if (batched && c->state == CS_CLOSED)
        return r;
    CHECKF(conn_listed(c) && c->state != CS_CLOSED,
           "%s for connection %llu that is not open", cb,
           (unsigned long long)id);
    return r;
}

/* ---- the app side: answering ---- */

/* A body's bytes [from, from+n); with FUZZ_SELFTEST=1 the second request
 * of each connection gets one byte wrong. */
static char *body_buf(uint32_t seed, int64_t from, size_t n, int corrupt)
{
    char *b = xmalloc(n);
    pat_fill(b, seed, (uint64_t)from, n);
#if FUZZ_SELFTEST == 1
    if (corrupt && n > 0)
        b[n / 2] ^= 0x20;
#else
    (void)corrupt;
#endif
    return b;
}

/* rc of a response call that the app does not expect to fail. */
static void rc_ok(rec *r, int rc, const char *what)
{
    CHECKF(rc != -2, "%s refused the app's call (-2)", what);
    CHECKF(rc != -1 || may_end(r) || r->unchecked,
           "%s says connection %d is gone (-1), but its client is there",
           what, r->rid);
    if (rc == -1)
        r->saw_gone = 1;
}

/* Produce more of a streamed response. */
static void pump(rec *r, fw_conn *c)
{
    stream *s = &r->st;
    free(s->held);              /* C no longer refers to it */
    s->held = NULL;
    if (s->memfd >= 0) {
        int rc = fw_response_end(c);
        rc_ok(r, rc, "fw_response_end after sendfile");
        stream_finish(r);
        return;
    }
    while (s->done < s->total) {
        size_t n = s->piece;
        if ((int64_t)n > s->total - s->done)
            n = (size_t)(s->total - s->done);
        char *b = body_buf(s->seed, s->done, n, s->r && s->r->seq == 1);
        int rc = fw_response_write(c, b, n);
        s->done += (int64_t)n;
        if (rc == 0) {
            s->held = b;
            return;
        }
        free(b);
        if (rc == 2 || rc == 3) {
            stream_finish(r);
            return;
        }
        rc_ok(r, rc, "fw_response_write");
        if (rc < 0) {
            stream_finish(r);
            return;
        }
        if (s->per_call && s->done < s->total)
            return;
    }
    int rc = fw_response_end(c);
    rc_ok(r, rc, "fw_response_end");
    stream_finish(r);
}

static const char HEAD_OK[] = "200 OK\nContent-Type\0text/plain";
#define HEAD_OK_N 1

static const char *reason_of(int s)
{
    switch (s) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/*
 * Answer request q on c; what the client must get goes to q->p.  Modes
 * (q->mode, with q->param 0-31):
 *   0  fw_response_simple, up to 700 bytes, with an X-Id field
 *   1  fw_response_simple of 64-190 KiB (over TLS it waits in place)
 *   2  fw_response_start with a length, writes in pieces
 *   3  fw_response_start without a length (chunked, or close-delimited
 *      on HTTP/1.0), one piece per fw_py_writable
 *   4  fw_response_sendfile from a memfd (over TLS: through the copy buffer)
 *   5  fw_response_error 500 or 503 (the connection closes)
 *   6  fw_response_simple with the app's Connection: close
 *   7  204 No Content
 */
static void respond(rec *r, req *q, fw_conn *c)
{
    plan *p = &q->p;
    int head = q->head, h10 = q->http10, prm = q->param;
    memset(p, 0, sizeof *p);
    p->seed = (uint32_t)r->rid * 7919u + (uint32_t)q->seq * 104729u + 91u;
    p->declared = -1;
    p->close_hdr = p->closes = !q->keepalive;
    p->ka_hdr = h10 && q->keepalive;
    stream *s = &r->st;
    CHECK(!s->active);
    memset(s, 0, sizeof *s);
    s->memfd = -1;
    s->seed = p->seed;
    s->r = q;
    int big_ok = g_resp_bytes < RESP_BUDGET;
    int rc;
    switch (q->mode) {
    case 0: case 1: case 6: {
        int64_t len = (prm * 37 + q->seq * 5) % 700;
        gbuf hx = {0};
        int nf = 1;
        p->status = 200;
        if (q->mode == 0) {
            char *xid = arena_alloc(&g_arena, 32);
            snprintf(xid, 32, "t%dr%d", r->rid, q->seq);
            p->xid = xid;
            gb_printf(&hx, "200 OK\nX-Id%c%s", 0, xid);
        } else if (q->mode == 1) {
            gb_put(&hx, HEAD_OK, sizeof HEAD_OK - 1);
            if (big_ok)
                len = 65536 + prm * 4099 + q->seq % 100;
        } else {
            gb_printf(&hx, "200 OK\nConnection%cclose\nContent-Type%ctext/x",
                      0, 0);
            nf = 2;
            p->close_hdr = p->closes = 1;
            p->ka_hdr = 0;
        }
        p->framing = FR_LENGTH;
        p->declared = head && len == 0 ? -1 : len;
        p->actual = head ? 0 : len;
        g_resp_bytes += (uint64_t)len;
        char *b = body_buf(p->seed, 0, (size_t)len, q->seq == 1);
        rc = fw_response_simple(c, hx.d, hx.len, nf, b, (size_t)len);
        gb_free(&hx);
        if (rc == 0) {
            s->active = 1;      /* C sends from b: end when called back */
            s->held = b;
            s->total = s->done = len;
            g_st.streams++;
            return;
        }
        free(b);
        rc_ok(r, rc, "fw_response_simple");
        return;
    }
    case 2: case 3: {
        int64_t len, length;
        if (q->mode == 2) {
            len = big_ok ? prm * 2053 + q->seq % 7 : prm;
            length = len;
            s->piece = 1 + (size_t)((prm * 997 + q->seq * 13) % 20000);
        } else {
            len = big_ok ? prm * 1009 : prm;
            length = -1;
            s->piece = 1 + (size_t)(prm * 577 % 5000);
            s->per_call = 1;
        }
        if (s->piece < (size_t)(len / 64))
            s->piece = (size_t)(len / 64);
        g_resp_bytes += (uint64_t)len;
        p->status = 200;
        p->actual = head ? 0 : len;
        if (length > 0 || (length == 0 && !head)) {
            p->framing = FR_LENGTH;
            p->declared = length;
        } else if (head) {
            p->framing = FR_NONE;
        } else if (!h10) {
            p->framing = FR_CHUNKED;
        } else {
            p->framing = FR_EOF;
            p->close_hdr = p->closes = 1;
            p->ka_hdr = 0;
        }
        s->total = len;
        rc = fw_response_start(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N,
                               length, NULL, 0);
        if (rc == 3 || rc == 2)
            return;             /* no body (HEAD) or a zero length */
        rc_ok(r, rc, "fw_response_start");
        if (rc < 0)
            return;
        s->active = 1;
        g_st.streams++;
        if (q->mode == 3)
            return;             /* the rest when C asks for it */
        pump(r, c);
        return;
    }
    case 4: {
        int64_t len = 1 + (big_ok ? prm * 5003 : prm);
        int64_t off = prm * 3;
        g_resp_bytes += (uint64_t)len;
        p->status = 200;
        p->framing = FR_LENGTH;
        p->declared = len;
        p->actual = head ? 0 : len;
        rc = fw_response_start(c, HEAD_OK, sizeof HEAD_OK - 1, HEAD_OK_N,
                               len, NULL, 0);
        if (rc == 3)
            return;
        rc_ok(r, rc, "fw_response_start for sendfile");
        if (rc < 0)
            return;
        int fd = memfd_create("fuzz-tls", MFD_CLOEXEC);
        CHECK(fd >= 0);
        char *b = xmalloc((size_t)(len + off));
        memset(b, '#', (size_t)off);
        pat_fill(b + off, p->seed, 0, (size_t)len);
#if FUZZ_SELFTEST == 1
        if (q->seq == 1)
            b[off + len / 2] ^= 0x20;
#endif
        CHECK(write(fd, b, (size_t)(len + off)) == len + off);
        free(b);
        s->active = 1;
        s->memfd = fd;
        g_st.streams++;
        rc = fw_response_sendfile(c, fd, off, len);
        if (rc == 0)
            return;             /* C calls back once the file is sent */
        rc_ok(r, rc, "fw_response_sendfile");
        if (rc == 1) {
            rc = fw_response_end(c);
            rc_ok(r, rc, "fw_response_end after sendfile");
        }
        stream_finish(r);
        return;
    }
    case 5: {
        int st = (prm & 1) ? 503 : 500;
        p->status = st;
        p->core_error = 1;
        p->framing = FR_LENGTH;
        p->declared = (int64_t)strlen(reason_of(st)) + 1;
        p->actual = head ? 0 : p->declared;
        p->close_hdr = p->closes = 1;
        p->ka_hdr = 0;
        rc = fw_response_error(c, st);
        rc_ok(r, rc, "fw_response_error");
        return;
    }
    case 7: {
        p->status = 204;
        p->framing = FR_NONE;
        rc = fw_response_simple(c, "204 No Content", 14, 0, "", 0);
        rc_ok(r, rc, "fw_response_simple 204");
        return;
    }
    }
    CHECK(0);
}

static void compare_env(rec *r, req *q, envl *got, int flags)
{
    envl want;
    env_init(&want, q->nenv + 4);
    for (int i = 0; i < q->nenv; i++)
        env_set(&want, q->ek[i], q->ev[i], 1);
    if (r->dn) {
        env_set(&want, S("SSL_CLIENT_VERIFY"), S("SUCCESS"), 0);
        env_set(&want, S("SSL_CLIENT_S_DN"), S(FZ_CLIENT_DN), 0);
    }
    env_sort(&want);
    env_sort(got);
    int same = want.n == got->n;
    for (int i = 0; same && i < want.n; i++)
        same = str_eq(want.k[i], got->k[i]) && str_eq(want.v[i], got->v[i]);
    if (!same) {
        fprintf(stderr, "environ of request %d on connection %d (flags %#x, "
                "shape %d) differs from what its client sent\n", q->seq,
                r->rid, flags, flags >> 16);
        env_dump("client sent", &want);
        env_dump("app got", got);
    }
    CHECK(same);
}

/* Whether the bytes of q have all gone out on the wire. */
static int on_wire(const rec *r, const req *q)
{
    return q->wire_end > 0 && r->sent >= q->wire_end;
}

/* One request, from either callback. */
static void serve(fw_conn *c, int flags, str *vals, int nvals, int batched)
{
    rec *r = rec_of(c, batched ? "fw_py_batch" : "fw_py_request", batched);
    CHECKF((c->state == CS_APP || c->state == CS_CLOSED) &&
           (c->flags & C_IN_APP),
           "a request for a connection not in the app's hands");
    CHECKF(!r->st.active, "a new request on connection %d while its "
           "previous response is still streaming", r->rid);
    int sh = flags >> 16;
    CHECKF(sh >= 0 && sh <= FW_SHAPE_ONCE, "shape number %d", sh);
    CHECKF(((flags >> 8) & 255) == r->listener, "listener %d, expected %d",
           (flags >> 8) & 255, r->listener);
    CHECKF((c->tls != NULL) == (r->listener == 0),
           "connection %d on listener %d %s a TLS session", r->rid,
           r->listener, c->tls ? "has" : "has no");
    g_st.requests++;
    g_st.tls_requests += c->tls != NULL;
    g_st.bodies += (flags & FW_IN_BODY) != 0;
    fw_extra *x = batched ? NULL : fw_request_extra(c);
    if (flags & FW_IN_FRESH) {
        CHECKF(!batched, "a batch carries a fresh shape (%d)", sh);
        CHECK(x->keys != NULL);
        learn(sh, x->keys, x->keys_len);
    } else {
        CHECKF(sh != FW_SHAPE_ONCE, "FW_SHAPE_ONCE without its keys");
    }
    shape *s = &g_shapes[sh];
    CHECKF(s->known, "shape %d used before its keys came", sh);
    CHECKF(nvals == s->nkeys, "%d values for shape %d of %d keys (%s)",
           nvals, sh, s->nkeys, batched ? "batch" : "request");
    if (sh == FW_SHAPE_ONCE)
        s->known = 0;
#if FUZZ_SELFTEST == 2
    if (nvals > 4) {
        str t = vals[2];
        vals[2] = vals[3];
        vals[3] = t;
    }
#endif
    envl got;
    env_init(&got, s->nconst + s->nkeys + 4);
    for (int i = 0; i < s->nconst; i++)
        env_set(&got, s->ck[i], s->cv[i], 0);
    int merge = (flags & (FW_IN_DUPS | FW_IN_FRESH)) != 0;
    for (int i = 0; i < s->nkeys; i++)
        env_set(&got, s->keys[i], vals[i], merge);
    const char *body = NULL;
    size_t body_len = 0;
    int body_fd = -1;
    if (flags & FW_IN_BODY) {
        CHECKF(!batched, "a batch carries a body");
        body = x->body;
        body_len = x->body_len;
        body_fd = x->body_fd;
    }
    req *q = r->app_next;
    if (r->kind == K_GARBAGE || (q && q->kind == Q_POISON))
        r->unchecked = 1;
    if (r->unchecked) {
        /* Raw plaintext (or a garbage client's lucky bytes): nothing to
         * compare with; the app still answers. */
        if (body_fd >= 0)
            close(body_fd);
        static req dummy;
        memset(&dummy, 0, sizeof dummy);
        dummy.keepalive = 1;
        respond(r, &dummy, c);
        return;
    }
    CHECKF(q != NULL, "connection %d: a request its client never sent",
           r->rid);
    CHECKF(!r->doomed, "connection %d: a request over a handshake the "
           "server must refuse", r->rid);
    CHECKF(!r->closing, "connection %d: request %d after a response that "
           "closes the connection", r->rid, q->seq);
    CHECKF(q->refuse == 0, "connection %d: request %d reached the app; the "
           "core must refuse it with %d", r->rid, q->seq, q->refuse);
    CHECKF(!q->cut && on_wire(r, q), "connection %d: request %d reached the "
           "app before all of it was sent", r->rid, q->seq);
    compare_env(r, q, &got, flags);
    CHECKF(!!(flags & FW_IN_HEAD) == q->head, "FW_IN_HEAD for %d", q->seq);
    CHECKF(!!(flags & FW_IN_HTTP10) == q->http10, "FW_IN_HTTP10 for %d",
           q->seq);
    CHECKF(!!(flags & FW_IN_BODY) == (q->body_len > 0),
           "FW_IN_BODY %d for a body of %lld bytes", !!(flags & FW_IN_BODY),
           (long long)q->body_len);
    if (flags & FW_IN_BODY) {
        int spooled = body_fd >= 0;
        CHECKF(spooled == (q->body_len > g_cfg.spool_threshold),
               "a body of %lld bytes %s spooled", (long long)q->body_len,
               spooled ? "is" : "is not");
        g_st.spooled += spooled;
        check_app_body(body_fd, 0, body, body_len, q->body_len,
                       q->body_seed);
    }
    TRACE("  app: conn %d seq %d flags %#x%s\n", r->rid, q->seq, flags,
          batched ? " (batch)" : "");
    r->app_next = q->next;
    q->handled = 1;
    respond(r, q, c);
    if (q->p.closes)
        r->closing = 1;
}

int fw_py_request(void *ud, fw_conn *c, const char *env, size_t env_len,
                  int flags)
{
    callback_enter(ud, "fw_py_request");
    str *vals;
    int n = split_values(env, env_len, &vals);
    serve(c, flags, vals, n, 0);
    arena_free(&g_scratch);
    g_in_callback = 0;
    return 0;
}

void fw_py_batch(void *ud, fw_conn **conns, int *flags, int *counts,
                 const char *env, size_t env_len, int n)
{
    callback_enter(ud, "fw_py_batch");
    CHECKF(n >= 1 && n <= FW_BATCH, "a batch of %d", n);
    g_st.batched += n;
    str *vals;
    int total = split_values(env, env_len, &vals);
    check_batch_counts(conns, counts, n, total, 0);
    int at = 0;
    for (int i = 0; i < n; i++) {
        CHECKF(!(flags[i] & (FW_IN_FRESH | FW_IN_BODY)), "batch flags %#x",
               flags[i]);
        serve(conns[i], flags[i], vals + at, counts[i], 1);
        at += counts[i];
    }
    arena_free(&g_scratch);
    g_in_callback = 0;
}

void fw_py_closed(void *ud, uint64_t id)
{
    CHECK(ud == &g_loop);
    g_progress++;
    rec *r = rec_by_id(id);
    CHECKF(r != NULL, "fw_py_closed for an unknown connection %llu",
           (unsigned long long)id);
    CHECKF(!r->server_gone, "fw_py_closed twice for connection %d", r->rid);
    CHECKF(r->st.active || r->saw_gone, "fw_py_closed for connection %d "
           "with no response streaming", r->rid);
    CHECKF(may_end(r) || g_freeing || r->unchecked, "connection %d closed in "
           "the middle of a response for no reason", r->rid);
    stream_finish(r);
    r->server_gone = 1;
    g_st.closed++;
}

void fw_py_log(void *ud, int level, const char *msg)
{
    CHECK(ud == &g_loop);
    CHECKF(level < FW_LOG_ERROR, "unexpected error from the core: %s", msg);
    TRACE("  log %d: %s\n", level, msg);
}

/* ---- the client side: requests ---- */

static const char *const METHODS[4] = {"GET", "POST", "HEAD", "PUT"};

static void add_req(rec *r, req *q)
{
    if (r->qt)
        r->qt->next = q;
    else
        r->qh = q;
    r->qt = q;
    if (r->app_next == NULL)
        r->app_next = q;
    if (r->rx_next == NULL)
        r->rx_next = q;
}

/* Where a client's requests go: a TLS client's into its plaintext (they
 * become records once the handshake is done), a plain client's straight
 * onto the wire. */
static gbuf *req_out(rec *r)
{
    return r->ssl ? &r->pt : &r->out;
}

static uint64_t *req_queued(rec *r)
{
    return r->ssl ? &r->pt_queued : &r->wire_queued;
}

/* Whether the client can still add requests. */
static int can_send(const rec *r)
{
    return r->fd >= 0 && !r->shut && !r->notified && !r->tls_failed &&
           r->kind != K_GARBAGE;
}

/*
 * Append a request to what r sends, described by d[0..GEN_LEN):
 *   d0  bits 0-1 method (GET, POST, HEAD, PUT); bit 2 HTTP/1.0; bit 3
 *       Connection: close (HTTP/1.1) or keep-alive (HTTP/1.0); bits 4-5
 *       body: none, Content-Length, chunked (Content-Length on HTTP/1.0),
 *       none; bit 6 Expect: 100-continue; bit 7 broken (a field name with
 *       a space: 400)
 *   d1  body size: d1*53 bytes below 192, else (d1-191)*5101
 *   d2  bits 0-2 how the app answers (see respond), bits 3-7 its parameter
 *   d3  an X-Pad field of d3*31 bytes
 */
static void gen_request(rec *r, const uint8_t *d)
{
    if (!can_send(r) || g_req_bytes >= REQ_BUDGET)
        return;
    req *q = arena_alloc(&g_arena, sizeof *q);
    q->kind = Q_REQ;
    q->seq = r->nseq++;
    int midx = d[0] & 3;
    int broken = d[0] >> 7;
    if (midx == 2)
        broken = 0;             /* a HEAD is refused only for its size */
    const char *method = METHODS[midx];
    q->head = midx == 2;
    q->http10 = (d[0] >> 2) & 1;
    int conn_hdr = (d[0] >> 3) & 1;
    int body_kind = q->head ? 0 : (d[0] >> 4) & 3;
    if (body_kind == 3)
        body_kind = 0;
    if (body_kind == 2 && q->http10)
        body_kind = 1;
    int64_t blen = d[1] < 192 ? d[1] * 53 : (d[1] - 191) * 5101;
    if (body_kind == 0 || g_req_bytes + (uint64_t)blen > REQ_BUDGET)
        blen = 0;
    if (blen == 0)
        body_kind = 0;
    int chunked = body_kind == 2;
    q->expect100 = (d[0] >> 6) & 1 && blen > 0;
    q->mode = d[2] & 7;
    q->param = d[2] >> 3;
    size_t pad = (size_t)d[3] * 31;
    q->keepalive = q->http10 ? conn_hdr : !conn_hdr;
    q->body_len = blen;
    q->body_seed = (uint32_t)r->rid * 7919u + (uint32_t)q->seq * 104729u + 17u;

    char path[48], host[32], num[32];
    snprintf(path, sizeof path, "/t%d/r%d", r->rid, q->seq);
    snprintf(host, sizeof host, "h%d.fuzz.test", r->rid);
    q->ek = arena_alloc(&g_arena, sizeof(str) * 16);
    q->ev = arena_alloc(&g_arena, sizeof(str) * 16);
#define WANT(k, v) (q->ek[q->nenv] = (k), q->ev[q->nenv] = (v), q->nenv++)
    WANT(S("REQUEST_METHOD"), S(method));
    WANT(S("PATH_INFO"), astr(path));
    WANT(S("QUERY_STRING"), S(""));
    WANT(S("REQUEST_URI"), astr(path));
    WANT(S("SERVER_PROTOCOL"), S(q->http10 ? "HTTP/1.0" : "HTTP/1.1"));
    WANT(S("REMOTE_ADDR"), S(r->raddr));
    WANT(S("REMOTE_PORT"), S(r->rport));
    WANT(S("HTTP_HOST"), astr(host));

    gbuf *o = req_out(r);
    size_t start = o->len;
    gb_printf(o, "%s %s %s\r\nHost: %s\r\n", method, path,
              q->http10 ? "HTTP/1.0" : "HTTP/1.1", host);
    if (conn_hdr) {
        const char *v = q->http10 ? "keep-alive" : "close";
        gb_printf(o, "Connection: %s\r\n", v);
        WANT(S("HTTP_CONNECTION"), S(v));
    }
    if (broken)
        gb_puts(o, "Bad Name: v\r\n");
    if (body_kind == 1) {
        snprintf(num, sizeof num, "%lld", (long long)blen);
        gb_printf(o, "Content-Length: %s\r\n", num);
        WANT(S("CONTENT_LENGTH"), astr(num));
    } else if (chunked) {
        gb_puts(o, "Transfer-Encoding: chunked\r\n");
        WANT(S("HTTP_TRANSFER_ENCODING"), S("chunked"));
        snprintf(num, sizeof num, "%lld", (long long)blen);
        WANT(S("CONTENT_LENGTH"), astr(num));
    }
    if (q->expect100) {
        gb_puts(o, "Expect: 100-continue\r\n");
        WANT(S("HTTP_EXPECT"), S("100-continue"));
    }
    if (pad) {
        char *pv = arena_alloc(&g_arena, pad + 1);
        for (size_t i = 0; i < pad; i++)
            pv[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(i + (size_t)q->seq) % 36];
        gb_puts(o, "X-Pad: ");
        gb_put(o, pv, pad);
        gb_puts(o, "\r\n");
        WANT(S("HTTP_X_PAD"), ((str){pv, pad}));
    }
#undef WANT
    gb_puts(o, "\r\n");
    size_t head_len = o->len - start;
    if (chunked) {
        int64_t at = 0;
        uint32_t cs = (uint32_t)q->seq * 2654435761u + d[1];
        while (at < blen) {
            cs = cs * 1103515245u + 12345u;
            int64_t n = 1 + (cs >> 8) % 20000;
            if (n > blen - at)
                n = blen - at;
            gb_printf(o, "%llx\r\n", (long long)n);
            size_t at0 = o->len;
            gb_reserve(o, (size_t)n);
            pat_fill(o->d + at0, q->body_seed, (uint64_t)at, (size_t)n);
            o->len += (size_t)n;
            gb_puts(o, "\r\n");
            at += n;
        }
        gb_puts(o, "0\r\n\r\n");
    } else if (blen) {
        size_t at0 = o->len;
        gb_reserve(o, (size_t)blen);
        pat_fill(o->d + at0, q->body_seed, 0, (size_t)blen);
        o->len += (size_t)blen;
    }
    /* (The head limit is checked first, on the bytes as they come.) */
    if (head_len > g_cfg.limits.head)
        q->refuse = 431;
    else if (broken)
        q->refuse = 400;
    size_t n = o->len - start;
    g_req_bytes += n;
    *req_queued(r) += n;
    q->end = *req_queued(r);
    if (!r->ssl)
        q->wire_end = q->end;
    add_req(r, q);
    TRACE("  gen conn %d seq %d: %s mode %d param %d body %lld%s pad %zu, "
          "%zu bytes\n", r->rid, q->seq, method, q->mode, q->param,
          (long long)blen, chunked ? " chunked" : "", pad, n);
}

/* Raw plaintext: from here on, nothing is predicted for r's requests. */
static void gen_poison(rec *r, cursor *in, size_t n)
{
    req *q = arena_alloc(&g_arena, sizeof *q);
    q->kind = Q_POISON;
    q->seq = -1;
    gbuf *o = req_out(r);
    for (size_t i = 0; i < n; i++) {
        char ch = (char)take(in);
        gb_put(o, &ch, 1);
    }
    *req_queued(r) += n;
    q->end = *req_queued(r);
    if (!r->ssl)
        q->wire_end = q->end;
    add_req(r, q);
}

/* Requests never sent whole are cut: no answer is due. */
static void cut_unsent(rec *r)
{
    for (req *q = r->qh; q; q = q->next)
        if (!on_wire(r, q))
            q->cut = 1;
    r->out.len = 0;
    r->pt.len = 0;
}

/* ---- the client side: TLS ---- */

/* Move what the client's session wrote to the wire. */
static void take_wbio(rec *r)
{
    char buf[16384];
    for (;;) {
        int n = K.BIO_read(r->wbio, buf, sizeof buf);
        if (n <= 0)
            break;
        gb_put(&r->out, buf, (size_t)n);
        r->wire_queued += (uint64_t)n;
    }
}

/* The client's TLS failed (an alert, a bad record, a failed handshake):
 * only where the connection may end. */
static void tls_fail(rec *r, const char *where, int err)
{
    const char *why = ssl_errors();
    TRACE("  conn %d: client TLS fails in %s (%d: %s)\n", r->rid, where, err,
          why);
    CHECKF(may_end(r) || r->notified || r->rx_eof, "connection %d: the "
           "client's TLS failed in %s (error %d: %s)%s", r->rid, where, err,
           why, r->hs_done ? "" : " before the handshake was done");
    r->tls_failed = 1;
    g_st.failed++;
    if (r->rx_state != RX_AFTER_CLOSE)
        r->rx_state = RX_DISCARD;
    cut_unsent(r);
    take_wbio(r);               /* its alert goes out, nothing else */
}

static void handshake_done(rec *r)
{
    r->hs_done = 1;
    g_st.handshakes++;
    CHECKF(!r->doomed || r->damaged, "connection %d: a handshake the server "
           "must refuse succeeded", r->rid);
    CHECKF(K.SSL_get_verify_result(r->ssl) == X509_V_OK,
           "the server's certificate was not verified");
    r->resumed = K.SSL_session_reused(r->ssl);
    g_st.resumed += r->resumed;
    /* The server names the certificate it verified: this connection's, or
     * the one of the session it resumed. */
    r->dn = g_profile == P_CLIENT_CERT &&
            (r->resumed ? g_session_dn[r->versions] : r->with_cert);
    g_st.dn += r->dn;
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    K.SSL_get0_alpn_selected(r->ssl, &alpn, &alen);
    if (r->alpn)
        CHECKF(alen == 8 && memcmp(alpn, "http/1.1", 8) == 0,
               "ALPN: the server did not choose http/1.1");
    else
        CHECKF(alen == 0, "ALPN: a protocol no client offered");
    TRACE("  conn %d: handshake done, %s%s%s\n", r->rid,
          K.SSL_version(r->ssl) == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2",
          r->resumed ? ", resumed" : "", r->dn ? ", client certificate" : "");
}

/* Mark the requests whose last byte is in records by now. */
static void note_records(rec *r)
{
    for (req *q = r->qh; q; q = q->next)
        if (q->wire_end == 0 && q->end <= r->pt_done)
            q->wire_end = r->wire_queued;
}

/* Drive the client's session: its handshake, then its plaintext into
 * records of r->rec_size bytes. */
static void client_step(rec *r)
{
    if (r->ssl == NULL || r->tls_failed || r->fd < 0)
        return;
    if (!r->hs_done) {
        r->hs_started = 1;
        int rc = K.SSL_do_handshake(r->ssl);
        if (rc == 1) {
            handshake_done(r);
        } else {
            int e = K.SSL_get_error(r->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                tls_fail(r, "the handshake", e);
                return;
            }
        }
    }
    if (r->hs_done && !r->notified && !r->shut) {
        size_t off = 0;
        while (off < r->pt.len) {
            size_t n = r->pt.len - off;
            if (n > r->rec_size)
                n = r->rec_size;
            int w = K.SSL_write(r->ssl, r->pt.d + off, (int)n);
            if (w <= 0) {
                int e = K.SSL_get_error(r->ssl, w);
                tls_fail(r, "a write", e);
                return;
            }
            off += (size_t)w;
            r->pt_done += (uint64_t)w;
            take_wbio(r);
            note_records(r);
        }
        r->pt.len = 0;
    }
    take_wbio(r);
}

/* ---- the client side: sockets ---- */

static void new_session(rec *r)
{
    r->ssl = K.SSL_new(g_cctx[r->with_cert]);
    CHECK(r->ssl != NULL);
    r->rbio = K.BIO_new(K.BIO_s_mem());
    r->wbio = K.BIO_new(K.BIO_s_mem());
    CHECK(r->rbio && r->wbio);
    K.BIO_ctrl(r->rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, NULL);
    K.SSL_set_bio(r->ssl, r->rbio, r->wbio);
    K.SSL_set_connect_state(r->ssl);
    K.SSL_ctrl(r->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, (void *)"fuzz.test");
    static const long lo[4] = {TLS1_2_VERSION, TLS1_2_VERSION, TLS1_3_VERSION,
                               TLS1_2_VERSION};
    static const long hi[4] = {TLS1_3_VERSION, TLS1_2_VERSION, TLS1_3_VERSION,
                               TLS1_2_VERSION};
    CHECK(K.SSL_ctrl(r->ssl, SSL_CTRL_SET_MIN_PROTO_VERSION, lo[r->versions],
                     NULL) == 1);
    CHECK(K.SSL_ctrl(r->ssl, SSL_CTRL_SET_MAX_PROTO_VERSION, hi[r->versions],
                     NULL) == 1);
    if (r->versions == 3)
        CHECK(K.SSL_set_cipher_list(r->ssl, "ECDHE-ECDSA-CHACHA20-POLY1305") == 1);
    if (r->alpn) {
        static const unsigned char protos[] = "\x02h2\x08http/1.1";
        CHECK(K.SSL_set_alpn_protos(r->ssl, protos, sizeof protos - 1) == 0);
    }
    if (r->resume && g_session[r->versions])
        CHECK(K.SSL_set_session(r->ssl, g_session[r->versions]) == 1);
    /* What the server refuses: TLS 1.2 where it asks for 1.3, ChaCha20
     * alone where it allows AES-GCM alone. */
    r->doomed = (g_profile == P_TLS13 && (r->versions & 1)) ||
                (g_profile == P_BIG && r->versions == 3);
    g_st.doomed += r->doomed;
}

static rec *new_rec(int slot)
{
    rec *r = calloc(1, sizeof *r);
    CHECK(r != NULL);
    r->rid = g_nrecs++;
    r->slot = slot;
    r->fd = -1;
    r->sfd = -1;
    r->st.memfd = -1;
    r->opened_at = g_clock;
    r->rec_size = 16384;
    r->next = g_recs;
    g_recs = r;
    g_slots[slot] = r;
    g_st.opened++;
    return r;
}

/*
 * OPEN k a: a&3 the kind (a TLS client on a socketpair, a TLS client
 * through listener 0's socket, a garbage client on a socketpair of
 * listener 0, a plain HTTP client on listener 1); (a>>2)&3 the TLS
 * versions (1.2-1.3, 1.2, 1.3, 1.2 with ChaCha20 alone); bit 4 ALPN (h2,
 * http/1.1); bit 5 a client certificate; bit 6 resume the last session
 * kept by a client of the same versions; bit 7 an IPv6 peer address (else
 * IPv4).
 */
static void open_conn(int slot, uint8_t a)
{
    if (g_slots[slot] || g_nrecs >= MAX_RECS)
        return;
    rec *r = new_rec(slot);
    r->kind = a & 3;
    r->listener = r->kind == K_PLAIN;
    if (r->kind == K_TLS || r->kind == K_TLS_ACCEPTED) {
        r->versions = (a >> 2) & 3;
        r->alpn = (a >> 4) & 1;
        r->with_cert = (a >> 5) & 1;
        r->resume = (a >> 6) & 1;
        new_session(r);
    }
    TRACE("  open conn %d in slot %d: kind %d versions %d alpn %d cert %d "
          "resume %d%s\n", r->rid, slot, r->kind, r->versions, r->alpn,
          r->with_cert, r->resume, r->doomed ? " (doomed)" : "");
    if (r->kind == K_TLS_ACCEPTED) {
        if (g_listen_fd < 0) {
            int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            CHECK(lfd >= 0);
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1,
                             "fztl.%u.%u", (unsigned)getpid(), g_listen_no++);
            CHECK(bind(lfd, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                   (size_t)n)) == 0);
            if (g_small_bufs)
                small_bufs(lfd);
            CHECK(listen(lfd, 64) == 0);
            CHECK(fw_loop_listen(g_loop, lfd, 0) == 0);
            g_listen_fd = lfd;
        }
        r->via_listener = 1;
        r->fd = listener_client("fzt", r->rid);
        return;
    }
    int sv[2];
    client_pair(sv);
    r->fd = sv[0];
    r->sfd = sv[1];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned salen;
    if (a & 0x80) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)(40000 + r->rid));
        in6->sin6_addr.s6_addr[0] = 0xfd;
        in6->sin6_addr.s6_addr[15] = (uint8_t)(r->rid + 1);
        salen = sizeof *in6;
        snprintf(r->raddr, sizeof r->raddr, "fd00::%x", r->rid + 1);
        snprintf(r->rport, sizeof r->rport, "%d", 40000 + r->rid);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)(2000 + r->rid));
        in->sin_addr.s_addr = htonl(0x0a000001u | (uint32_t)r->rid << 8);
        salen = sizeof *in;
        snprintf(r->raddr, sizeof r->raddr, "10.0.%d.1", r->rid);
        snprintf(r->rport, sizeof r->rport, "%d", 2000 + r->rid);
    }
    struct stat st;
    CHECK(fstat(sv[1], &st) == 0);
    r->sino = st.st_ino;
    fw_conn *c = conn_new(g_loop, sv[1], r->listener, &ss, salen);
    CHECK(c != NULL);
    r->conn = c;
    r->id = fw_conn_id(c);
    conn_run(c);
}

/* Send up to `most` bytes of r's wire (the session runs first). */
static void send_out(rec *r, size_t most)
{
    client_step(r);
    while (r->fd >= 0 && r->out.len && most) {
        size_t n = r->out.len;
        if (n > most)
            n = most;
        ssize_t w = send(r->fd, r->out.d, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0) {
            /* the server closed: nothing more will be read */
            CHECKF(errno == EPIPE || errno == ECONNRESET, "send: %s",
                   strerror(errno));
            r->shut = 1;
            cut_unsent(r);
            break;
        }
        for (ssize_t i = 0; i < w; i++)
            g_st.wire_hash = (g_st.wire_hash ^ (uint8_t)r->out.d[i]) *
                             0x100000001b3ull;
        while (r->first_len < sizeof r->first &&
               r->first_len < r->sent + (size_t)w) {
            r->first[r->first_len] = r->out.d[r->first_len - r->sent];
            r->first_len++;
        }
        gb_consume(&r->out, (size_t)w);
        r->sent += (uint64_t)w;
        TRACE("  conn %d sent %zd\n", r->rid, w);
        most -= (size_t)w;
        g_progress++;
    }
}

/* ---- the client side: responses ---- */

/* A TLS session that is not done yet, or one that may be reused. */
static void keep_session(rec *r)
{
    if (!r->ssl || !r->hs_done || r->damaged)
        return;
    void *s = K.SSL_get1_session(r->ssl);
    if (s == NULL)
        return;
    if (g_session[r->versions])
        K.SSL_SESSION_free(g_session[r->versions]);
    g_session[r->versions] = s;
    g_session_dn[r->versions] = r->dn;
    TRACE("  conn %d: its session kept\n", r->rid);
}

static void rx_complete(rec *r)
{
    const plan *p = r->rx_plan;
    g_st.responses++;
    r->rx_next = r->rx_next->next;
    r->rx_state = p->closes ? RX_AFTER_CLOSE : RX_HEAD;
    r->rx_plan = NULL;
    keep_session(r);
}

static void rx_body(rec *r, const char *b, size_t n)
{
    const plan *p = r->rx_plan;
    RXCHECK(r, r->rx_got + (int64_t)n <= p->actual, "response to request %d "
            "of connection %d: more than %lld body bytes", r->rx_next->seq,
            r->rid, (long long)p->actual);
    if (p->core_error) {
        const char *reason = reason_of(p->status);
        size_t rl = strlen(reason);
        for (size_t i = 0; i < n; i++) {
            int64_t at = r->rx_got + (int64_t)i;
            char want = at < (int64_t)rl ? reason[at] : '\n';
            RXCHECK(r, b[i] == want, "error body differs at %lld",
                    (long long)at);
        }
    } else {
        for (size_t i = 0; i < n; i++)
            RXCHECK(r, (uint8_t)b[i] == pat(p->seed, (uint64_t)r->rx_got + i),
                    "response to request %d of connection %d: body byte "
                    "%lld differs (not the app's body for it)",
                    r->rx_next->seq, r->rid,
                    (long long)(r->rx_got + (int64_t)i));
    }
    r->rx_got += (int64_t)n;
}

static void rx_head(rec *r, const char *h, size_t hl)
{
    req *q = r->rx_next;
    int status = rx_status_line(r, h, hl);
    if (status == 100) {
        RXCHECK(r, hl == 25, "a malformed 100 Continue");
        q->saw100 = 1;
        return;
    }
    const plan *p;
    if (q->handled) {
        p = &q->p;
        RXCHECK(r, status == p->status, "connection %d: request %d was "
                "answered %d by the app, the client got %d", r->rid, q->seq,
                p->status, status);
    } else {
        RXCHECK(r, status == q->refuse || (status == 408 && lossy(r)),
                "connection %d: request %d (never seen by the app) got "
                "status %d; the core must answer %d", r->rid, q->seq,
                status, q->refuse);
        g_st.refusals++;
        p = rx_core_plan(r, status);
    }
    if (p->core_error)
        rx_check_reason(r, h, hl, status);
    rx_head_fields h_f;
    rx_fields(r, h, hl, 0, &h_f);
    /* (The core cannot know the method of a request it refuses: its
     * answer to a HEAD has the body.) */
    rx_head_end(r, p, q->seq, &h_f, status, status == 204,
                (q->head && q->handled) || status == 204);
}

/* The last byte of a Content-Length body came. */
static void rx_length_done(rec *r)
{
    rx_complete(r);
}

/* The server closed (EOF or reset): is that consistent? */
static void rx_eof(rec *r)
{
    if (r->rx_eof)
        return;
    TRACE("  conn %d: EOF%s\n", r->rid, r->got_notify ? " after close_notify"
                                                      : "");
    r->rx_eof = 1;
    g_progress++;
    size_t avail = r->rx.len - r->rx_off;
    /* A TLS server ends what it meant to end with close_notify: without
     * it, the client cannot tell the end from a cut. */
    int clean = !r->ssl || r->got_notify || r->tls_failed || may_end(r) ||
                r->shut || r->notified;
    switch (r->rx_state) {
    case RX_HEAD:
        RXCHECK(r, avail == 0 || may_end(r) || r->tls_failed,
                "connection %d: closed in the middle of a response head",
                r->rid);
        break;
    case RX_EOF_BODY:
        RXCHECK(r, may_end(r) || (r->rx_got == r->rx_plan->actual && clean),
                "connection %d: a close-delimited body of %lld bytes, the app "
                "wrote %lld%s", r->rid, (long long)r->rx_got,
                (long long)r->rx_plan->actual,
                clean ? "" : ", and no close_notify came");
        r->rx_next = r->rx_next->next;
        r->rx_state = RX_AFTER_CLOSE;
        g_st.responses++;
        break;
    case RX_AFTER_CLOSE:
        CHECKF(clean, "connection %d: the server closed after its last "
               "response without close_notify", r->rid);
        break;
    case RX_DISCARD:
        break;
    default:
        RXCHECK(r, may_end(r) || r->tls_failed, "connection %d: closed in "
                "the middle of the response to request %d (%lld bytes of it "
                "came)", r->rid, r->rx_next ? r->rx_next->seq : -1,
                (long long)r->rx_got);
        r->rx_state = RX_DISCARD;
        break;
    }
}

/* tls.c's answer to plain HTTP on a TLS listener. */
static const char PLAIN_400[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
    "Content-Length: 42\r\nConnection: close\r\n\r\n"
    "This port speaks HTTPS: use an https URL.\n";

/* A garbage client: what comes back must be TLS records (alerts, a
 * handshake), or, to bytes that began as an HTTP request does, the
 * plain 400 that says the port speaks HTTPS, and nothing after it. */
static void rx_records(rec *r)
{
    if (r->rx.len > 0 && r->rx.d[0] == 'H') {
        size_t n = r->rx.len < sizeof PLAIN_400 - 1 ? r->rx.len
                                                    : sizeof PLAIN_400 - 1;
        RXCHECK(r, r->rx.len <= sizeof PLAIN_400 - 1 &&
                memcmp(r->rx.d, PLAIN_400, n) == 0, "connection %d: the TLS "
                "listener sent plaintext other than its plain 400", r->rid);
        static const char *const methods[4] = {"GET ", "POST ", "HEAD ",
                                               "PUT "};
        int http = 0;
        for (int i = 0; i < 4; i++)
            http |= r->first_len >= strlen(methods[i]) &&
                    memcmp(r->first, methods[i], strlen(methods[i])) == 0;
        RXCHECK(r, http, "connection %d: the plain 400 to bytes that are "
                "no HTTP request", r->rid);
        r->rx_off = r->rx.len;
        return;
    }
    for (;;) {
        size_t avail = r->rx.len - r->rx_off;
        const unsigned char *d = (const unsigned char *)r->rx.d + r->rx_off;
        if (avail < 5)
            return;
        size_t len = (size_t)d[3] << 8 | d[4];
        RXCHECK(r, d[0] >= 0x14 && d[0] <= 0x17 && d[1] == 3 && d[2] <= 4 &&
                len <= 16384 + 2048, "connection %d: the TLS listener sent "
                "something other than TLS records", r->rid);
        if (avail < 5 + len)
            return;
        r->rx_off += 5 + len;
    }
}

/* Decrypt what the client's session has, into the response reader. */
static void client_read(rec *r)
{
    if (r->tls_failed)
        return;
    if (!r->hs_done) {
        client_step(r);
        if (!r->hs_done)
            return;
    }
    for (;;) {
        if (r->rx_off > 0 && r->rx_off == r->rx.len) {
            r->rx.len = r->rx_off = 0;
        } else if (r->rx_off > 65536) {
            gb_consume(&r->rx, r->rx_off);
            r->rx_off = 0;
        }
        gb_reserve(&r->rx, 16384);
        int n = K.SSL_read(r->ssl, r->rx.d + r->rx.len, 16384);
        if (n > 0) {
            r->rx.len += (size_t)n;
            rx_parse(r);
            continue;
        }
        int e = K.SSL_get_error(r->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            take_wbio(r);       /* a KeyUpdate the server asked for */
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            if (!r->got_notify) {
                TRACE("  conn %d: close_notify\n", r->rid);
                g_st.notifies++;
            }
            r->got_notify = 1;
            return;
        }
        /* The end without close_notify is judged by rx_eof. */
        if (r->rx_eof) {
            K.ERR_clear_error();
            return;
        }
        tls_fail(r, "a read", e);
        return;
    }
}

/* Read up to `most` bytes (0: all there is) from r and check them. */
static void read_in(rec *r, size_t most)
{
    if (r->fd < 0 || r->rx_eof)
        return;
    size_t got = 0;
    char buf[16384];
    for (;;) {
        size_t want = sizeof buf;
        if (most && most - got < want)
            want = most - got;
        if (want == 0)
            break;
        ssize_t n = recv(r->fd, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n > 0) {
            TRACE("  conn %d read %zd\n", r->rid, n);
            got += (size_t)n;
            g_progress++;
            if (r->ssl) {
                CHECK(K.BIO_write(r->rbio, buf, (int)n) == n);
                client_read(r);
            } else {
                if (r->rx_off > 0 && r->rx_off == r->rx.len)
                    r->rx.len = r->rx_off = 0;
                gb_put(&r->rx, buf, (size_t)n);
                if (r->kind == K_GARBAGE)
                    rx_records(r);
                else
                    rx_parse(r);
            }
            continue;
        }
        /* EOF or a reset: the session sees its end too */
        if (r->ssl && !r->tls_failed) {
            K.BIO_ctrl(r->rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, 0, NULL);
            r->rx_eof = 1;      /* (for client_read) */
            client_read(r);
            r->rx_eof = 0;
        }
        rx_eof(r);
        break;
    }
}

/* ---- operations ---- */

static void close_client(rec *r)
{
    TRACE("  client %d closes\n", r->rid);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->client_closed = 1;
    cut_unsent(r);
    g_slots[r->slot] = NULL;
}

/* A server context as fw_tls_context makes it from the settings. */
static void *server_context(int profile, int big, int suppress)
{
    char err[256];
    fw_tls_config tc = {
        .certfile = big ? g_big_cert : g_server_cert,
        .keyfile = g_server_key,
        .ca_certs = profile == P_CLIENT_CERT ? g_client_cert : NULL,
        .cert_reqs = profile == P_CLIENT_CERT ? 1 : 0,
        .ciphers = profile == P_BIG ? "ECDHE-ECDSA-AES128-GCM-SHA256" : NULL,
        .min_version = profile == P_TLS13 ? TLS1_3_VERSION : TLS1_2_VERSION,
        .suppress_ragged_eofs = suppress,
    };
    void *ctx = fw_tls_context(&tc, err, sizeof err);
    CHECKF(ctx != NULL, "fw_tls_context: %s", err);
    return ctx;
}

/* Contexts made once (OpenSSL 3 takes milliseconds to make one), by
 * profile, certificate and suppress_ragged_eofs.  Their TLS 1.2 session
 * caches are emptied for each input. */
static void *g_sctx[4][2][2];

/* Listener 0's certificate renewed: a context of its own (the other
 * certificate), which lives on in the sessions that use it; the
 * connections open keep theirs. */
static void renew(void)
{
    g_cert_big = !g_cert_big;
    void *ctx = server_context(g_profile, g_cert_big, g_suppress);
    CHECK(fw_loop_tls(g_loop, 0, ctx) == 0);
    fw_tls_context_free(ctx);   /* the loop has its own reference */
}

/* After a turn: what the core says about its connections must match. */
static void check_loop(void)
{
    fw_loop *L = g_loop;
    CHECKF(L->batch_n == 0, "a batch of %d left after a turn", L->batch_n);
    CHECK(L->zombies == NULL);
    CHECK(!L->rbuf_busy && !L->wbuf_busy);
    int listed = 0;
    for (fw_conn *c = L->conns; c; c = c->next) {
        listed++;
        CHECK(c->state != CS_CLOSED && c->state != CS_QUEUED);
        CHECK(!(c->flags & (C_IN_APP | C_BATCHED)));
        CHECK(!(c->flags & (C_IN_BORROWED | C_OUT_BORROWED)));
        CHECKF((c->tls != NULL) == (c->listener == 0), "connection %llu on "
               "listener %d: TLS %p", (unsigned long long)c->id, c->listener,
               c->tls);
        CHECK((c->tls_want & ~(TLS_READ_WANTS_OUT | TLS_WRITE_WANTS_IN |
                               TLS_PEER_SEEN | TLS_NOTIFIED | TLS_PLAIN_HTTP |
                               TLS_NOTIFY_WAITS)) == 0);
        if (rec_by_id(c->id) == NULL)
            bind_accepted(c);
        int waits = output_waits(c);
        check_conn_timer(L, c, waits);
    }
    CHECKF(listed == fw_loop_connections(L), "%d connections listed, "
           "fw_loop_connections says %d", listed, fw_loop_connections(L));
    check_timer_lists(L, 0);
    int alive = 0;
    for (rec *r = g_recs; r; r = r->next) {
        if (r->server_gone)
            continue;
        if (r->via_listener && !r->bound) {
            /* never seen: accepted and closed within the turn (its
             * handshake failed at once), or its client went first */
            if (r->fd >= 0) {
                struct pollfd pf = {.fd = r->fd, .events = POLLIN | POLLRDHUP};
                CHECK(poll(&pf, 1, 0) >= 0);
                CHECKF(pf.revents & (POLLHUP | POLLRDHUP), "client %d was "
                       "not accepted in a turn", r->rid);
            }
            r->server_gone = 1;
            continue;
        }
        alive += check_rec_listed(L, r);
    }
    CHECK(alive == listed);
}

/* Every client sends all, one turn, every client reads all. */
static void step(void)
{
    for (rec *r = g_recs; r; r = r->next)
        send_out(r, (size_t)-1);
    turn();
    for (rec *r = g_recs; r; r = r->next)
        read_in(r, 0);
}

/* Send and read everything, turning the loop, until nothing moves. */
static void drain(void)
{
    int idle = 0;
    for (int i = 0; i < 20000 && idle < 3; i++) {
        uint64_t before = g_progress;
        int conns = fw_loop_connections(g_loop);
        step();
        if (g_progress == before && conns == fw_loop_connections(g_loop))
            idle++;
        else
            idle = 0;
    }
    CHECKF(idle >= 3, "the loop never settled");
}

/* After draining, without the clock moving: every request sent has its
 * answer, every handshake that can succeed did, every connection meant to
 * close did. */
static void check_settled(void)
{
    for (rec *r = g_recs; r; r = r->next) {
        if (r->client_closed || r->kind == K_GARBAGE)
            continue;
        if (r->doomed && !r->damaged) {
            CHECKF(!r->hs_done && r->rx_eof, "connection %d: a handshake "
                   "the server must refuse is not over (done %d, closed %d)",
                   r->rid, r->hs_done, r->rx_eof);
            continue;
        }
        if (may_end(r) || r->rx_state == RX_DISCARD)
            continue;
        if (r->rx_state == RX_AFTER_CLOSE) {
            CHECKF(r->rx_eof, "connection %d: the response said the "
                   "connection ends, but it stays open", r->rid);
            continue;
        }
        if (r->ssl && r->hs_started && !r->shut && !r->notified)
            CHECKF(r->hs_done, "connection %d: the handshake never ended",
                   r->rid);
        CHECKF(r->out.len == 0, "connection %d: unsent bytes", r->rid);
        CHECKF(r->rx_state == RX_HEAD, "connection %d: a response stopped "
               "half-way (state %d, %lld bytes of it)", r->rid, r->rx_state,
               (long long)r->rx_got);
        req *q = r->rx_next;
        if (q && q->kind == Q_POISON)
            continue;
        if (q && !q->cut)
            CHECKF(0, "connection %d: request %d (%s) was sent but never "
                   "answered%s", r->rid, q->seq,
                   q->refuse ? "to be refused" : q->handled ? "the app "
                   "answered it" : "the app never saw it",
                   r->rx_eof ? "; the connection closed" : "");
        if (!r->rx_eof)
            continue;
        CHECKF(r->shut || r->notified, "connection %d: closed by the server "
               "for no reason", r->rid);
    }
}

/*
 * The program.  Each operation is one byte, op % 16, and its operands
 * (k names a slot, k % MAX_SLOTS):
 *
 *   0  OPEN k a        open a client in slot k (see open_conn)
 *   1  GEN k d[4]      a request on k (see gen_request), not sent yet
 *   2  SEND k n        send n bytes of k's wire (0: all, 128-254:
 *                      (n-127)*64, 255: all but the last byte); a TLS
 *                      client first runs its session (ClientHello,
 *                      Finished, records of its requests)
 *   3  TURN            one loop turn
 *   4  READ k n        read n*64 bytes on k (0: all there is), decrypt,
 *                      check
 *   5  RECSIZE k n     k's requests go into records of REC_SIZES[n%16]
 *                      plaintext bytes
 *   6  FLIP k p1 p2 x  XOR byte (p1*256+p2) % unsent of k's unsent wire
 *                      with x (0: 0x80)
 *   7  RAW k n b[n]    n raw bytes onto k's wire (before its ClientHello
 *                      when it has not started, else between records)
 *   8  PTRAW k n b[n]  n raw plaintext bytes among k's requests (in
 *                      records: valid TLS, unpredictable HTTP)
 *   9  SHUT k          shutdown(SHUT_WR) on k (unsent bytes dropped)
 *  10  CLOSE k         close k
 *  11  TLSCTL k m      m%4: 0 close_notify from k, 1 a KeyUpdate that
 *                      asks the server to update too, 2 one that does
 *                      not, 3 renew listener 0's certificate
 *  12  CLOCK n         advance the clock by CLOCK_STEPS[n] (n >= 16:
 *                      n*7 ms)
 *  13  STEP n          1 + n%4 times: all clients send all, a turn, all
 *                      clients read all
 *  14  GENSEND k d[4]  GEN, then send all of k
 *  15  PIPE k m d[4]   1 + m%8 requests on k (the X-Pad length varied),
 *                      sent at once
 */
static void run_program(cursor *in)
{
    uint8_t d[GEN_LEN];
    for (int ops = 0; in->n > 0 && ops < MAX_OPS; ops++) {
        uint8_t op = take(in) & 15;
        if (g_trace) {
            static const char *const names[16] = {
                "OPEN", "GEN", "SEND", "TURN", "READ", "RECSIZE", "FLIP",
                "RAW", "PTRAW", "SHUT", "CLOSE", "TLSCTL", "CLOCK", "STEP",
                "GENSEND", "PIPE"};
            trace_op(in, names[op]);
        }
        if (common_op(in, op, d))
            continue;
        switch (op) {
        case 2: {
            rec *r = slot_rec(take(in));
            uint8_t n = take(in);
            if (r == NULL)
                break;
            if (n == 255) {
                client_step(r);
                if (r->out.len > 1)
                    send_out(r, r->out.len - 1);
            } else {
                send_out(r, n == 0 ? (size_t)-1 : n < 128 ? n
                         : (size_t)(n - 127) * 64);
            }
            break;
        }
        case 3:
            turn();
            break;
        case 4: {
            rec *r = slot_rec(take(in));
            uint8_t n = take(in);
            if (r)
                read_in(r, (size_t)n * 64);
            break;
        }
        case 5: {
            rec *r = slot_rec(take(in));
            uint8_t n = take(in);
            if (r)
                r->rec_size = REC_SIZES[n % 16];
            break;
        }
        case 6: {
            rec *r = slot_rec(take(in));
            size_t at = (size_t)take(in) << 8;
            at |= take(in);
            uint8_t x = take(in);
            if (r == NULL || r->fd < 0)
                break;
            client_step(r);
            if (r->out.len == 0)
                break;
            at %= r->out.len;
            r->out.d[at] ^= (char)(x ? x : 0x80);
            TRACE("  conn %d: byte %zu of the unsent %zu flipped\n", r->rid,
                  at, r->out.len);
            if (r->ssl) {
                r->damaged = 1;
                g_st.damaged++;
            } else if (r->kind == K_PLAIN) {
                /* plain HTTP: the request that holds the byte (and what
                 * follows it) is no longer predictable */
                uint64_t pos = r->sent + at;
                for (req *q = r->qh; q; q = q->next)
                    if (q->end > pos) {
                        q->kind = Q_POISON;
                        break;
                    }
            }
            break;
        }
        case 7: case 8: {
            rec *r = slot_rec(take(in));
            size_t n = take(in);
            if (n > in->n)
                n = in->n;
            if (r == NULL || r->fd < 0 || r->shut ||
                (op == 8 && !can_send(r))) {
                in->p += n;
                in->n -= n;
                break;
            }
            if (op == 8 || r->kind == K_PLAIN) {
                gen_poison(r, in, n);
                send_out(r, (size_t)-1);
                break;
            }
            /* a TLS client's records before it: out with them first */
            if (r->ssl && r->hs_started)
                client_step(r);
            for (size_t i = 0; i < n; i++) {
                char ch = (char)take(in);
                gb_put(&r->out, &ch, 1);
            }
            r->wire_queued += n;
            g_st.garbage_bytes += (long)n;
            if (r->ssl) {
                r->damaged = 1;
                g_st.damaged++;
            }
            send_out(r, (size_t)-1);
            break;
        }
        case 9: {
            rec *r = slot_rec(take(in));
            if (r && !r->shut && r->fd >= 0) {
                cut_unsent(r);
                shutdown(r->fd, SHUT_WR);
                r->shut = 1;
            }
            break;
        }
        case 10: {
            rec *r = slot_rec(take(in));
            if (r)
                close_client(r);
            break;
        }
        case 11: {
            rec *r = slot_rec(take(in));
            uint8_t m = take(in) % 4;
            if (m == 3) {
                renew();
                g_st.renewals++;
                break;
            }
            if (r == NULL || r->ssl == NULL || !r->hs_done || r->tls_failed ||
                r->notified || r->shut || r->fd < 0)
                break;
            client_step(r);     /* its requests go before it */
            if (r->tls_failed)
                break;
            if (m == 0) {
                K.SSL_shutdown(r->ssl);
                K.ERR_clear_error();
                r->notified = 1;
                take_wbio(r);
                TRACE("  conn %d: client close_notify\n", r->rid);
            } else if (K.SSL_version(r->ssl) == TLS1_3_VERSION &&
                       !r->got_notify && !r->rx_eof) {
                int rc = K.SSL_key_update(r->ssl, m == 1
                                          ? SSL_KEY_UPDATE_REQUESTED
                                          : SSL_KEY_UPDATE_NOT_REQUESTED);
                if (rc == 1)
                    rc = K.SSL_do_handshake(r->ssl);
                if (rc != 1) {
                    tls_fail(r, "a KeyUpdate", K.SSL_get_error(r->ssl, rc));
                    break;
                }
                take_wbio(r);
                g_st.key_updates++;
            }
            break;
        }
        case 12: {
            uint8_t n = take(in);
            g_clock += n < 16 ? CLOCK_STEPS[n] : n * 7;
            break;
        }
        case 13: {
            int n = 1 + take(in) % 4;
            for (int i = 0; i < n; i++)
                step();
            break;
        }
        case 15: {
            rec *r = slot_rec(take(in));
            int m = 1 + take(in) % 8;
            for (int i = 0; i < GEN_LEN; i++)
                d[i] = take(in);
            if (r) {
                for (int i = 0; i < m; i++) {
                    gen_request(r, d);
                    d[3] = (uint8_t)(d[3] * 5 + 1);
                }
                send_out(r, (size_t)-1);
            }
            break;
        }
        }
    }
}

static void teardown(void)
{
    g_freeing = 1;
    fw_loop_free(g_loop);
    g_loop = NULL;
    g_listen_fd = -1;
    while (g_recs) {
        rec *r = g_recs;
        g_recs = r->next;
        if (r->fd >= 0)
            close(r->fd);
        if (r->ssl)
            K.SSL_free(r->ssl);     /* and its BIOs */
        stream_finish(r);
        gb_free(&r->pt);
        gb_free(&r->out);
        gb_free(&r->rx);
        free(r);
    }
    for (int i = 0; i < 4; i++) {
        if (g_session[i])
            K.SSL_SESSION_free(g_session[i]);
        g_session[i] = NULL;
    }
    K.ERR_clear_error();
    memset(g_slots, 0, sizeof g_slots);
    memset(g_shapes, 0, sizeof g_shapes);
    arena_free(&g_arena);
    arena_free(&g_scratch);
}

static void print_stats(void)
{
    fprintf(stderr, "fuzz_tls: %ld inputs; tls_read: %ld with data, %ld "
            "end, %ld EAGAIN (%ld waiting to send), %ld errors; tls_write: "
            "%ld with data, %ld EAGAIN (%ld waiting for input), %ld errors; "
            "close_notify waited for room %ld times\n",
            g_io.inputs, g_io.rd_data, g_io.rd_eof, g_io.rd_again,
            g_io.rd_wants_out, g_io.rd_error, g_io.wr_data, g_io.wr_again,
            g_io.wr_wants_in, g_io.wr_error, g_io.notify_waits);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    g_verbose = getenv("FUZZ_TLS_VERBOSE") != NULL;
    g_trace = getenv("FUZZ_TLS_TRACE") != NULL;
    load_client_side();
    g_server_key = pem_file("server-key", FZ_SERVER_KEY, NULL);
    g_server_cert = pem_file("server-cert", FZ_SERVER_CERT, NULL);
    g_big_cert = pem_file("big-cert", FZ_BIG_CERT, NULL);
    g_client_key = pem_file("client-key", FZ_CLIENT_KEY, NULL);
    g_client_cert = pem_file("client-cert", FZ_CLIENT_CERT, NULL);
    g_trusted = pem_file("trusted", FZ_SERVER_CERT, FZ_BIG_CERT);
    for (int i = 0; i < 2; i++) {
        void *ctx = K.SSL_CTX_new(K.TLS_client_method());
        CHECK(ctx != NULL);
        K.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        CHECKF(K.SSL_CTX_load_verify_locations(ctx, g_trusted, NULL) == 1,
               "the trusted certificates: %s", ssl_errors());
        if (i) {
            CHECKF(K.SSL_CTX_use_certificate_chain_file(ctx, g_client_cert) == 1,
                   "the client certificate: %s", ssl_errors());
            CHECKF(K.SSL_CTX_use_PrivateKey_file(ctx, g_client_key,
                                                 SSL_FILETYPE_PEM) == 1,
                   "the client key: %s", ssl_errors());
        }
        g_cctx[i] = ctx;
    }
    for (int p = 0; p < 4; p++)
        for (int b = 0; b < 2; b++)
            for (int sup = 0; sup < 2; sup++)
                g_sctx[p][b][sup] = server_context(p, b, sup);
    if (getenv("FUZZ_TLS_STATS"))
        atexit(print_stats);
    return 0;
}

/*
 * Input: byte 0 configuration (bits 0-1 the server profile: TLS 1.2-1.3,
 * TLS 1.3 only, the big certificate with one TLS 1.2 cipher, client
 * certificates asked for; bit 2 suppress_ragged_eofs; bit 3 4 KiB socket
 * buffers; bits 4-5 timeouts; bit 6 spool bodies over 1 KiB; bit 7 a 4 KiB
 * head limit), byte 1 the seed of OpenSSL's random bytes and of the shape
 * table's hash, then the program.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t c0 = data[0], c1 = data[1];
    cursor in = {data + 2, size - 2};
    g_io.inputs++;
    g_rand = 0x243f6a8885a308d3ull * (uint64_t)(c1 + 1);
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.limits = (fw_limits){.request_line = 8190, .fields = 100,
                               .field_size = 8190,
                               .head = (c0 & 0x80) ? 4096 : 65536};
    g_cfg.max_body_size = 1 << 30;
    g_cfg.spool_threshold = (c0 & 0x40) ? 1024 : 1 << 20;
    const int *t = TIMEOUTS[(c0 >> 4) & 3];
    g_cfg.keepalive_timeout_ms = t[0];
    g_cfg.header_timeout_ms = t[1];
    g_cfg.body_timeout_ms = t[2];
    g_cfg.write_timeout_ms = t[3];
    g_cfg.graceful_timeout_ms = 1000;
    g_cfg.spool_dir = "/tmp";
    g_cfg.server_name = "fz";
    g_min_timeout = FW_LINGER_MS;
    for (int i = 0; i < 4; i++)
        if (t[i] > 0 && t[i] < g_min_timeout)
            g_min_timeout = t[i];
    g_profile = c0 & 3;
    g_suppress = (c0 >> 2) & 1;
    g_small_bufs = (c0 >> 3) & 1;
    g_cert_big = g_profile == P_BIG;    /* renew() takes the other */
    g_clock = 1000000;
    g_nrecs = 0;
    g_in_callback = 0;
    g_freeing = 0;
    g_req_bytes = g_resp_bytes = 0;
    g_progress = 0;
    memset(&g_st, 0, sizeof g_st);
    g_st.wire_hash = 0xcbf29ce484222325ull;

    g_loop = fw_loop_new(&g_cfg, &g_loop);
    CHECK(g_loop != NULL);
    g_loop->hash_seed = 0x9e3779b97f4a7c15ull * (uint64_t)(c1 + 1);
    void *sctx = g_sctx[g_profile][g_cert_big][g_suppress];
    K.SSL_CTX_flush_sessions(sctx, LONG_MAX);
    CHECK(fw_loop_tls(g_loop, 0, sctx) == 0);

    run_program(&in);

    drain();
    check_settled();
    if (t[0] > 0 && t[1] > 0 && t[2] > 0 && t[3] > 0) {
        /* once every timer can have run out, no connection is left (a
         * handshake that stalls is timed as a head is) */
        for (int i = 0; i < 4; i++) {
            g_clock += 70000;
            for (int j = 0; j < 3; j++)
                turn();
            for (rec *r = g_recs; r; r = r->next)
                read_in(r, 0);
        }
        CHECKF(fw_loop_connections(g_loop) == 0,
               "%d connections outlive every timeout",
               fw_loop_connections(g_loop));
    }
    if (g_verbose)
        fprintf(stderr, "conns %ld (doomed %ld, damaged %ld), handshakes %ld "
                "(resumed %ld, client certificates %ld), client TLS failures "
                "%ld, app requests %ld (over TLS %ld, batched %ld, bodies "
                "%ld, spooled %ld), streams %ld, writable %ld, closed %ld, "
                "responses read %ld, core refusals %ld, close_notify %ld, "
                "KeyUpdates %ld, renewals %ld, garbage bytes %ld, turns %ld, "
                "wire %016llx\n",
                g_st.opened, g_st.doomed, g_st.damaged, g_st.handshakes,
                g_st.resumed, g_st.dn, g_st.failed, g_st.requests,
                g_st.tls_requests, g_st.batched, g_st.bodies, g_st.spooled,
                g_st.streams, g_st.writable, g_st.closed, g_st.responses,
                g_st.refusals, g_st.notifies, g_st.key_updates,
                g_st.renewals, g_st.garbage_bytes, g_st.turns,
                (unsigned long long)g_st.wire_hash);
    teardown();
    return 0;
}
