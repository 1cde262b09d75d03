/*
 * tls.c - TLS on a connection's socket, with OpenSSL.
 *
 * OpenSSL is not linked in.  fw_tls_load opens the libssl that the
 * interpreter's own ssl module already uses (the Python side finds its
 * path) and looks up the few functions used here.  The server then runs on
 * the OpenSSL the system or the Python distribution keeps patched, and a
 * wheel carries no copy of its own to fall behind.  1.1.1 and 3.x are
 * accepted: every function used has the same ABI in both (where 3.0
 * renamed one, both names are tried).
 *
 * Here: that table, contexts (certificate chain, key, client certificates,
 * versions, ciphers, ALPN), and per connection its session: the read, the
 * write and the close.  tls_read and tls_write keep the contract of
 * recv(2) and send(2) as conn.c and send.c use them (bytes, 0 at the end,
 * -1 with errno EAGAIN or another error) and note in c->tls_want when
 * OpenSSL waits for the other direction's readiness.  Nothing else of the
 * connection is touched, and Python is not called.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core.h"

/* The constants used, as OpenSSL 1.1.1 and 3.x both define them. */
#define SSL_ERROR_SSL 1
#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_ERROR_SYSCALL 5
#define SSL_ERROR_ZERO_RETURN 6
#define SSL_FILETYPE_PEM 1
#define SSL_VERIFY_PEER 1
#define SSL_VERIFY_FAIL_IF_NO_PEER_CERT 2
#define SSL_CTRL_MODE 33
#define SSL_CTRL_SET_MIN_PROTO_VERSION 123
#define SSL_MODE_ENABLE_PARTIAL_WRITE 1u
#define SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 2u
#define SSL_MODE_RELEASE_BUFFERS 0x10u
#define SSL_OP_IGNORE_UNEXPECTED_EOF (1ull << 7)    /* 3.0 on */
#define SSL_OP_NO_COMPRESSION (1ull << 17)
#define SSL_OP_CIPHER_SERVER_PREFERENCE (1ull << 22)
#define SSL_OP_NO_RENEGOTIATION (1ull << 30)
#define SSL_TLSEXT_ERR_OK 0
#define SSL_TLSEXT_ERR_NOACK 3
#define X509_V_OK 0
#define ERR_LIB_SSL 20
#define SSL_R_HTTP_REQUEST 156           /* plain HTTP where a record was due */
#define XN_FLAG_RFC2253 0x1110317ul

typedef int (*alpn_cb)(void *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg);
typedef int (*passwd_cb)(char *buf, int size, int rwflag, void *u);

static struct {
    void *lib;
    unsigned long version;
    unsigned long (*OpenSSL_version_num)(void);
    const char *(*OpenSSL_version)(int);
    const void *(*TLS_server_method)(void);
    void *(*SSL_CTX_new)(const void *);
    void (*SSL_CTX_free)(void *);
    int (*SSL_CTX_up_ref)(void *);
    long (*SSL_CTX_ctrl)(void *, int, long, void *);
    uint64_t (*SSL_CTX_set_options)(void *, uint64_t);
    int (*SSL_CTX_use_certificate_chain_file)(void *, const char *);
    int (*SSL_CTX_use_PrivateKey_file)(void *, const char *, int);
    int (*SSL_CTX_check_private_key)(const void *);
    int (*SSL_CTX_load_verify_locations)(void *, const char *, const char *);
    void (*SSL_CTX_set_verify)(void *, int, void *);
    int (*SSL_CTX_set_cipher_list)(void *, const char *);
    int (*SSL_CTX_set_session_id_context)(void *, const unsigned char *,
                                          unsigned int);
    void (*SSL_CTX_set_default_passwd_cb)(void *, passwd_cb);
    void (*SSL_CTX_set_alpn_select_cb)(void *, alpn_cb, void *);
    void *(*SSL_new)(void *);
    void (*SSL_free)(void *);
    int (*SSL_set_fd)(void *, int);
    void (*SSL_set_accept_state)(void *);
    int (*SSL_read)(void *, void *, int);
    int (*SSL_write)(void *, const void *, int);
    int (*SSL_get_error)(const void *, int);
    int (*SSL_shutdown)(void *);
    int (*SSL_is_init_finished)(const void *);
    long (*SSL_get_verify_result)(const void *);
    void *(*SSL_get_peer_certificate)(const void *);  /* or get1, 3.0 */
    void (*X509_free)(void *);
    void *(*X509_get_subject_name)(const void *);
    int (*X509_NAME_print_ex)(void *, const void *, int, unsigned long);
    const void *(*BIO_s_mem)(void);
    void *(*BIO_new)(const void *);
    int (*BIO_read)(void *, void *, int);
    int (*BIO_free)(void *);
    unsigned long (*ERR_get_error)(void);
    unsigned long (*ERR_peek_error)(void);
    void (*ERR_error_string_n)(unsigned long, char *, size_t);
    void (*ERR_clear_error)(void);
} O;

static int no_passphrase_asked;

const char *fw_tls_version(void)
{
    return O.lib ? O.OpenSSL_version(0) : "";
}

int fw_tls_load(const char *path, char *err, size_t errlen)
{
    if (O.lib)
        return 0;
    static const char *const fallback[] = {"libssl.so.3", "libssl.so.1.1"};
    void *lib = NULL;
    if (path && path[0])
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; lib == NULL && i < 2; i++)
        lib = dlopen(fallback[i], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(err, errlen, "cannot load OpenSSL's libssl (%s)",
                 path && path[0] ? path : "libssl.so.3 or libssl.so.1.1");
        return -1;
    }
    /* Each name looked up; the first missing one is named in the error. */
#define SYM(field, name)                                                \
    do {                                                                \
        *(void **)&O.field = dlsym(lib, name);                          \
        if (O.field == NULL) {                                          \
            snprintf(err, errlen, "this libssl lacks %s (OpenSSL 1.1.1 " \
                     "or later is needed)", name);                       \
            goto fail;                                                  \
        }                                                               \
    } while (0)
    SYM(OpenSSL_version_num, "OpenSSL_version_num");
    SYM(OpenSSL_version, "OpenSSL_version");
    SYM(TLS_server_method, "TLS_server_method");
    SYM(SSL_CTX_new, "SSL_CTX_new");
    SYM(SSL_CTX_free, "SSL_CTX_free");
    SYM(SSL_CTX_up_ref, "SSL_CTX_up_ref");
    SYM(SSL_CTX_ctrl, "SSL_CTX_ctrl");
    SYM(SSL_CTX_set_options, "SSL_CTX_set_options");
    SYM(SSL_CTX_use_certificate_chain_file, "SSL_CTX_use_certificate_chain_file");
    SYM(SSL_CTX_use_PrivateKey_file, "SSL_CTX_use_PrivateKey_file");
    SYM(SSL_CTX_check_private_key, "SSL_CTX_check_private_key");
    SYM(SSL_CTX_load_verify_locations, "SSL_CTX_load_verify_locations");
    SYM(SSL_CTX_set_verify, "SSL_CTX_set_verify");
    SYM(SSL_CTX_set_cipher_list, "SSL_CTX_set_cipher_list");
    SYM(SSL_CTX_set_session_id_context, "SSL_CTX_set_session_id_context");
    SYM(SSL_CTX_set_default_passwd_cb, "SSL_CTX_set_default_passwd_cb");
    SYM(SSL_CTX_set_alpn_select_cb, "SSL_CTX_set_alpn_select_cb");
    SYM(SSL_new, "SSL_new");
    SYM(SSL_free, "SSL_free");
    SYM(SSL_set_fd, "SSL_set_fd");
    SYM(SSL_set_accept_state, "SSL_set_accept_state");
    SYM(SSL_read, "SSL_read");
    SYM(SSL_write, "SSL_write");
    SYM(SSL_get_error, "SSL_get_error");
    SYM(SSL_shutdown, "SSL_shutdown");
    SYM(SSL_is_init_finished, "SSL_is_init_finished");
    SYM(SSL_get_verify_result, "SSL_get_verify_result");
    *(void **)&O.SSL_get_peer_certificate = dlsym(lib, "SSL_get1_peer_certificate");
    if (O.SSL_get_peer_certificate == NULL)
        SYM(SSL_get_peer_certificate, "SSL_get_peer_certificate");
    SYM(X509_free, "X509_free");
    SYM(X509_get_subject_name, "X509_get_subject_name");
    SYM(X509_NAME_print_ex, "X509_NAME_print_ex");
    SYM(BIO_s_mem, "BIO_s_mem");
    SYM(BIO_new, "BIO_new");
    SYM(BIO_read, "BIO_read");
    SYM(BIO_free, "BIO_free");
    SYM(ERR_get_error, "ERR_get_error");
    SYM(ERR_peek_error, "ERR_peek_error");
    SYM(ERR_error_string_n, "ERR_error_string_n");
    SYM(ERR_clear_error, "ERR_clear_error");
#undef SYM
    O.version = O.OpenSSL_version_num();
    if (O.version < 0x10101000ul) {
        snprintf(err, errlen, "%s is too old: OpenSSL 1.1.1 or later is needed",
                 O.OpenSSL_version(0));
        goto fail;
    }
    O.lib = lib;
    return 0;
fail:
    dlclose(lib);
    memset(&O, 0, sizeof O);
    return -1;
}

/* OpenSSL's reason for the last failure, or `what` alone. */
static void say_error(char *err, size_t errlen, const char *what)
{
    unsigned long last = 0;     /* the last queued: the most specific */
    for (unsigned long e = O.ERR_get_error(); e; e = O.ERR_get_error())
        last = e;
    char reason[256] = "";
    if (last)
        O.ERR_error_string_n(last, reason, sizeof reason);
    O.ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, reason[0] ? ": " : "", reason);
}

/* Never asks: a key under a passphrase fails to load, and says so. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    no_passphrase_asked = 1;
    return 0;
}

/* ALPN: http/1.1 when the client offers it; otherwise no protocol is
 * named and the handshake goes on (a client without ALPN is common). */
static int select_alpn(void *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char h1[] = "http/1.1";
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n > inlen - i - 1)
            break;              /* malformed: OpenSSL checks it too */
        if (n == 8 && memcmp(in + i + 1, h1, 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n + 1;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void *fw_tls_context(const fw_tls_config *cfg, char *err, size_t errlen)
{
    if (O.lib == NULL) {
        snprintf(err, errlen, "OpenSSL is not loaded");
        return NULL;
    }
    O.ERR_clear_error();
    void *ctx = O.SSL_CTX_new(O.TLS_server_method());
    if (ctx == NULL) {
        say_error(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    char what[600];
    O.SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
    uint64_t options = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                       SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (cfg->suppress_ragged_eofs && O.version >= 0x30000000ul)
        options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
    O.SSL_CTX_set_options(ctx, options);
    /* Partial writes: a send returns once a record is out, as send(2)
     * does; the write buffer may move (the output buffer grows) between a
     * write that waited and its retry; idle sessions give their buffers
     * back (tens of KiB each, times every idle keep-alive connection). */
    O.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE,
                   (long)(SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS), NULL);
    if (O.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, cfg->min_version,
                       NULL) != 1) {
        say_error(err, errlen, "tls_min_version: not supported by this OpenSSL");
        goto fail;
    }
    if (O.SSL_CTX_use_certificate_chain_file(ctx, cfg->certfile) != 1) {
        snprintf(what, sizeof what, "certfile: cannot use %.500s", cfg->certfile);
        say_error(err, errlen, what);
        goto fail;
    }
    const char *keyfile = cfg->keyfile && cfg->keyfile[0] ? cfg->keyfile
                                                          : cfg->certfile;
    no_passphrase_asked = 0;
    if (O.SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
        if (no_passphrase_asked) {
            O.ERR_clear_error();
            snprintf(err, errlen, "keyfile: %.500s is encrypted with a "
                     "passphrase; give the key without one", keyfile);
        } else {
            snprintf(what, sizeof what, "keyfile: cannot use %.500s", keyfile);
            say_error(err, errlen, what);
            /* OpenSSL 3 compares the key with the certificate right here. */
            if (strstr(err, "values mismatch"))
                snprintf(err, errlen, "keyfile: %.500s is not the key of the "
                         "certificate in certfile", keyfile);
        }
        goto fail;
    }
    if (O.SSL_CTX_check_private_key(ctx) != 1) {
        O.ERR_clear_error();
        snprintf(err, errlen, "keyfile: %.500s is not the key of the certificate "
                 "in certfile", keyfile);
        goto fail;
    }
    if (cfg->ca_certs && cfg->ca_certs[0] &&
        O.SSL_CTX_load_verify_locations(ctx, cfg->ca_certs, NULL) != 1) {
        snprintf(what, sizeof what, "ca_certs: cannot use %.500s", cfg->ca_certs);
        say_error(err, errlen, what);
        goto fail;
    }
    if (cfg->cert_reqs > 0)
        O.SSL_CTX_set_verify(ctx, cfg->cert_reqs > 1
                             ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                             : SSL_VERIFY_PEER, NULL);
    /* Resumed sessions with client certificates need an id context. */
    static const unsigned char sid[] = "fastwsgi";
    O.SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    if (cfg->ciphers && cfg->ciphers[0] &&
        O.SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
        say_error(err, errlen, "ciphers: no cipher of the list is usable");
        goto fail;
    }
    O.SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    O.SSL_CTX_free(ctx);
    return NULL;
}

void fw_tls_context_free(void *ctx)
{
    if (ctx && O.lib)
        O.SSL_CTX_free(ctx);
}

int fw_loop_tls(fw_loop *loop, int index, void *ctx)
{
    if (index < 0 || index >= FW_MAX_LISTENERS || O.lib == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (ctx)
        O.SSL_CTX_up_ref(ctx);
    /* Connections keep their sessions' references: a context replaced
     * (certificate renewed) lives on until its last session ends. */
    if (loop->tls_ctx[index])
        O.SSL_CTX_free(loop->tls_ctx[index]);
    loop->tls_ctx[index] = ctx;
    return 0;
}

void tls_loop_free(fw_loop *loop)
{
    for (int i = 0; i < FW_MAX_LISTENERS; i++)
        if (loop->tls_ctx[i]) {
            O.SSL_CTX_free(loop->tls_ctx[i]);
            loop->tls_ctx[i] = NULL;
        }
}

/* ---- per connection ---- */

int tls_start(fw_conn *c, void *ctx)
{
    void *ssl = O.SSL_new(ctx);
    if (ssl == NULL) {
        O.ERR_clear_error();
        return -1;
    }
    if (O.SSL_set_fd(ssl, c->io.fd) != 1) {
        O.ERR_clear_error();
        O.SSL_free(ssl);
        return -1;
    }
    O.SSL_set_accept_state(ssl);
    c->tls = ssl;
    return 0;
}

/* The verified client certificate's subject, once the handshake is done
 * (RFC 2253 form, at most FW_TLS_DN_MAX bytes; longer ones are left out
 * rather than cut, so that a prefix never passes for a name). */
static void note_peer(fw_conn *c)
{
    c->tls_want |= TLS_PEER_SEEN;
    void *cert = O.SSL_get_peer_certificate(c->tls);
    if (cert == NULL)
        return;
    if (O.SSL_get_verify_result(c->tls) == X509_V_OK) {
        void *bio = O.BIO_new(O.BIO_s_mem());
        if (bio) {
            char buf[FW_TLS_DN_MAX + 1];
            int n = -1;
            if (O.X509_NAME_print_ex(bio, O.X509_get_subject_name(cert), 0,
                                     XN_FLAG_RFC2253) >= 0)
                n = O.BIO_read(bio, buf, sizeof buf);
            if (n > 0 && n <= FW_TLS_DN_MAX) {
                c->tls_dn = malloc((size_t)n + 1);
                if (c->tls_dn) {
                    memcpy(c->tls_dn, buf, (size_t)n);
                    c->tls_dn[n] = '\0';
                }
            }
            O.BIO_free(bio);
        }
    }
    O.X509_free(cert);
    O.ERR_clear_error();
}

static int plain_http(unsigned long e);

ssize_t tls_read(fw_conn *c, char *buf, size_t len)
{
    int n = O.SSL_read(c->tls, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        if (!(c->tls_want & TLS_PEER_SEEN))
            note_peer(c);
        return n;
    }
    int e = O.SSL_get_error(c->tls, n);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        /* The handshake (or a session ticket) waits for room to send. */
        c->tls_want |= TLS_READ_WANTS_OUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;               /* close_notify */
    case SSL_ERROR_SYSCALL:
        O.ERR_clear_error();
        if (n == 0 || errno == 0)
            return 0;           /* the peer closed without close_notify */
        if (errno == EAGAIN || errno == EINTR)
            errno = EIO;        /* never EAGAIN here: that would wait */
        return -1;
    default:
        if (plain_http(O.ERR_peek_error()))
            c->tls_want |= TLS_PLAIN_HTTP;
        O.ERR_clear_error();
        errno = EPROTO;         /* a bad record, a failed handshake */
        return -1;
    }
}

/* Whether OpenSSL refused the connection because it began with an HTTP
 * request in the clear (the error code's layout changed in 3.0). */
static int plain_http(unsigned long e)
{
    unsigned long lib = O.version >= 0x30000000ul ? (e >> 23) & 0xff : (e >> 24) & 0xff;
    unsigned long reason = O.version >= 0x30000000ul ? e & 0x7fffff : e & 0xfff;
    return lib == ERR_LIB_SSL && reason == SSL_R_HTTP_REQUEST;
}

/* Plain HTTP sent to a TLS listener gets a plain answer saying so (as a
 * browser shows it) before the close: best effort, never waited for. */
void tls_plain_refusal(fw_conn *c)
{
    static const char msg[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
        "Content-Length: 42\r\nConnection: close\r\n\r\n"
        "This port speaks HTTPS: use an https URL.\n";
    ssize_t n = send(c->io.fd, msg, sizeof msg - 1, MSG_NOSIGNAL);
    if (n <= 0)
        return;
    /* The rest of the request, read and dropped: unread input at the
     * close would make it a reset, which can destroy the answer on its
     * way.  Only what has come already, and only so much. */
    shutdown(c->io.fd, SHUT_WR);
    char junk[4096];
    for (int i = 0; i < 16; i++)
        if (recv(c->io.fd, junk, sizeof junk, MSG_DONTWAIT) <= 0)
            break;
}

ssize_t tls_write(fw_conn *c, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    int n = O.SSL_write(c->tls, data, len > (1u << 30) ? (1 << 30) : (int)len);
    if (n > 0)
        return n;
    int e = O.SSL_get_error(c->tls, n);
    if (e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_WANT_READ) {
        c->tls_want |= TLS_WRITE_WANTS_IN;
        errno = EAGAIN;
        return -1;
    }
    O.ERR_clear_error();
    errno = EPIPE;
    return -1;
}

/* Say close_notify, once, if the session got that far; never waits.
 * Returns 1 when the socket had no room for it: the alert waits in
 * OpenSSL (TLS_NOTIFY_WAITS), and a call once the socket is writable
 * again sends it; 0 when it is out, or there is none to send. */
int tls_close_notify(fw_conn *c)
{
    if (c->tls == NULL)
        return 0;
    if (c->tls_want & TLS_NOTIFIED) {
        if (!(c->tls_want & TLS_NOTIFY_WAITS))
            return 0;
    } else {
        c->tls_want |= TLS_NOTIFIED;
        if (!O.SSL_is_init_finished(c->tls)) {
            O.ERR_clear_error();
            return 0;
        }
    }
    /* Again after a wait, SSL_shutdown only sends the pending alert. */
    int n = O.SSL_shutdown(c->tls);
    int waits = n < 0 && O.SSL_get_error(c->tls, n) == SSL_ERROR_WANT_WRITE;
    if (waits)
        c->tls_want |= TLS_NOTIFY_WAITS;
    else
        c->tls_want &= ~TLS_NOTIFY_WAITS;
    O.ERR_clear_error();
    return waits;
}

void tls_free(fw_conn *c)
{
    if (c->tls) {
        O.SSL_free(c->tls);
        c->tls = NULL;
    }
    free(c->tls_dn);
    c->tls_dn = NULL;
}
