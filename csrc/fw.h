/*
 * fw.h - the C API of the fastwsgi core, as seen from Python.
 *
 * This is the only header the cffi builder reads.  Everything between the
 * "cdef-begin" and "cdef-end" markers is handed to ffi.cdef() verbatim, so it
 * must stay within the C subset cffi parses (no preprocessor directives).
 * The callbacks into Python are declared twice: as extern "Python+C" in the
 * block cffi reads, and as ordinary prototypes below for the C files.
 */
#ifndef FW_H
#define FW_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */

/* ---- the HTTP/1.1 request parser (http1.c): pure, no I/O, no malloc ---- */

/* Limits the parser enforces; all lengths in bytes. */
typedef struct fw_limits {
    uint32_t request_line;      /* longest request line (414 beyond) */
    uint32_t fields;            /* most header fields (431 beyond) */
    uint32_t field_size;        /* longest single header field line (431) */
    uint32_t head;              /* longest whole head, line + fields (431) */
    int allow_underscores;      /* keep fields whose name has '_' */
} fw_limits;

/* A slice of the input buffer: offset and length, never a copy. */
typedef struct fw_slice {
    uint32_t off;
    uint32_t len;
} fw_slice;

#define FW_MAX_FIELDS 256

typedef struct fw_field {
    fw_slice name;
    fw_slice value;             /* without surrounding whitespace */
} fw_field;

/* Flags describing a parsed request head. */
#define FW_REQ_HTTP11      1    /* HTTP/1.1 (else 1.0) */
#define FW_REQ_KEEPALIVE   2    /* connection may persist after this request */
#define FW_REQ_CHUNKED     4    /* body in chunked transfer coding */
#define FW_REQ_CONTINUE    8    /* client sent Expect: 100-continue */
#define FW_REQ_HEAD       16    /* method is HEAD: response carries no body */
#define FW_REQ_DUPS       32    /* some header name repeats (environ must join) */

typedef struct fw_head {
    fw_slice method;
    fw_slice target;            /* raw request-target */
    fw_slice path;              /* path part of the target, still %-encoded */
    fw_slice query;             /* after '?', may be empty */
    int flags;                  /* FW_REQ_* */
    int64_t content_length;     /* -1 when absent */
    uint32_t nfields;           /* fields kept (underscore names dropped) */
    uint32_t head_len;          /* bytes of the head, final CRLF included */
    fw_field fields[256];
} fw_head;

/*
 * Parse one request head from buf[0..len).
 * Returns  > 0 : head complete, that many bytes consumed (see out->head_len)
 *          = 0 : incomplete, read more (limits on what was seen are checked)
 *          < 0 : malformed; the negated HTTP status to answer (400, 414, ...)
 * `scanned` is an in/out hint: how far an earlier call already looked for the
 * end of the head, so that a head arriving byte by byte is scanned once.
 */
int fw_parse_head(const char *buf, size_t len, const fw_limits *lim,
                  fw_head *out, size_t *scanned);

/* Incremental decoder of the chunked transfer coding. */
typedef struct fw_chunked {
    int state;                  /* internal */
    uint64_t remaining;         /* bytes left in the current chunk */
    uint32_t line_len;          /* bytes of the current size/trailer line */
    uint32_t trailer_len;       /* bytes of trailer section so far */
    uint32_t name_len;          /* the current trailer name's length */
    char name[20];              /* its first bytes, lower-cased */
} fw_chunked;

/*
 * Decode in place: the data bytes found in buf[0..len) are moved to the front
 * of buf.  *consumed receives how many input bytes were used, *produced how
 * many data bytes now sit at buf[0..produced).
 * Returns 1 when the final chunk and trailers are complete, 0 when more input
 * is needed, or the negated HTTP status (400) for a malformed body.
 */
int fw_chunked_decode(fw_chunked *st, char *buf, size_t len, size_t max_line,
                      size_t *consumed, size_t *produced);

/* ---- the PROXY protocol header (proxy.c) ---- */

/* What a load balancer's PROXY header says of the client.  family is 0
 * when it names nobody (v1 UNKNOWN, v2 LOCAL or unspecified): the
 * connection's own peer stands. */
typedef struct fw_proxy {
    int family;                 /* AF_INET, AF_INET6 or 0 */
    char addr[46];              /* the client's address, as text */
    char port[6];               /* its port, as text */
} fw_proxy;

#define FW_PROXY_V2_MAX 1024    /* longest v2 address block (TLVs included) */

/* Parse a PROXY header (v1 or v2) at the start of buf[0..len).
 * Returns > 0 : the header's length;  0 : need more;  -1 : not a valid
 * header (the connection is to be closed). */
int fw_parse_proxy(const char *buf, size_t len, fw_proxy *out);

/* ---- the server loop (loop.c, conn.c, response.c) ---- */

typedef struct fw_loop fw_loop;
typedef struct fw_conn fw_conn;

/* How a file body (wsgi.file_wrapper) is sent.  sendfile(2) saves the
 * server a copy, but a receiver on the same host then copies straight out
 * of the page cache, cold; through a small buffer the data reaches it
 * while still in cache, which is cheaper for both ends together. */
#define FW_FILE_AUTO     0      /* copy to a peer on this host, else sendfile */
#define FW_FILE_SENDFILE 1      /* always sendfile */
#define FW_FILE_COPY     2      /* always through the loop's buffer */

/* A network: `bits` leading bits of `addr` (4 bytes for AF_INET, 16 for
 * AF_INET6). */
typedef struct fw_net {
    int family;
    int bits;
    unsigned char addr[16];
} fw_net;

typedef struct fw_config {
    fw_limits limits;
    int64_t max_body_size;      /* 413 beyond */
    int64_t spool_threshold;    /* bodies larger than this go to a file */
    int keepalive_timeout_ms;   /* idle keep-alive connection */
    int header_timeout_ms;      /* complete request head */
    int body_timeout_ms;        /* between two pieces of a request body */
    int write_timeout_ms;       /* between two successful writes */
    int graceful_timeout_ms;    /* in-flight requests at shutdown */
    int log_refusals;           /* log each refused request (debug) */
    int proxy_protocol;         /* every connection starts with a PROXY
                                   header (else it is closed) */
    const fw_net *proxy_allow;  /* peers that may send it (others: 403), */
    int proxy_allow_count;      /* besides unix socket peers; */
    int proxy_allow_any;        /* 1: any peer */
    int file_send;              /* FW_FILE_*: how a file body is sent */
    int request_timeout_ms;     /* threaded mode: a request still waiting
                                   for an app thread after this long gets
                                   503 and a close (0: never) */
    int64_t max_requests;       /* retire (FW_STOP_RETIRE) after handing
                                   this many requests to the app; 0: never */
    int shared_listeners;       /* 1: other processes accept on the same
                                   sockets (woken one at a time); 2: each
                                   process has its own (SO_REUSEPORT) */
    const char *spool_dir;      /* directory for spooled request bodies */
    const char *server_name;    /* value of the Server header */
} fw_config;

fw_loop *fw_loop_new(const fw_config *cfg, void *userdata);
void fw_loop_free(fw_loop *loop);
/* Take ownership of a bound, listening socket; `index` is its number,
 * 0, 1, ... in the order listeners are added. */
int fw_loop_listen(fw_loop *loop, int fd, int index);
/* Watch the read end of the signal wake-up pipe; readable -> fw_py_wakeup. */
int fw_loop_wakeup_fd(fw_loop *loop, int fd);
/* Serve until fw_loop_stop; returns 0, or -1 with errno on a loop failure. */
int fw_loop_run(fw_loop *loop);
/* How to stop.  FW_STOP_NOW: close everything at once.  FW_STOP_GRACEFUL:
 * stop accepting, close idle connections, let in-flight requests finish
 * within graceful_timeout.  FW_STOP_RETIRE: the same, but an idle
 * keep-alive connection is not closed under a client that may be sending
 * on it: it keeps its keep-alive deadline and its next response closes
 * it (a worker handing over to its replacement loses no request).  A
 * second FW_STOP_GRACEFUL means FW_STOP_NOW. */
#define FW_STOP_NOW 0
#define FW_STOP_GRACEFUL 1
#define FW_STOP_RETIRE 2
void fw_loop_stop(fw_loop *loop, int how);
int fw_loop_connections(fw_loop *loop);

/*
 * The access log (alog.c).  `prog` is the line format compiled by Python:
 * a sequence of operations, FW_ALOG_LITERAL followed by a 2-byte big-endian
 * length and the bytes; FW_ALOG_METHOD, _TARGET, _PATH, _QUERY and _PROTO
 * followed by a byte, 1 for JSON escaping; FW_ALOG_HEADER followed by the
 * header's number in `headers` ("name\nname...", lower case, at most
 * FW_ALOG_HEADERS) and the JSON byte; the others stand alone.  `path` NULL
 * or "" writes to standard output.  Returns -1 with errno on failure.
 */
#define FW_ALOG_HEADERS 8
#define FW_ALOG_LITERAL 1
#define FW_ALOG_PEER 2
#define FW_ALOG_PEER_JSON 3
#define FW_ALOG_TIME 4
#define FW_ALOG_REQUEST 5
#define FW_ALOG_REQUEST_JSON 6
#define FW_ALOG_METHOD 7
#define FW_ALOG_TARGET 8
#define FW_ALOG_PATH 9
#define FW_ALOG_QUERY 10
#define FW_ALOG_PROTO 11
#define FW_ALOG_HEADER 12
#define FW_ALOG_STATUS 13
#define FW_ALOG_BYTES 14
#define FW_ALOG_BYTES_DASH 15
#define FW_ALOG_MICROS 16
#define FW_ALOG_MILLIS 17
#define FW_ALOG_SECONDS 18
#define FW_ALOG_SECONDS_FRAC 19
#define FW_ALOG_PID 20
#define FW_ALOG_TIME_BARE 21    /* the time without gunicorn's brackets */
int fw_loop_access_log(fw_loop *loop, const char *path, const unsigned char *prog,
                       size_t prog_len, const char *headers);
/* Open the log's path again (after a rotation); from any thread. */
void fw_loop_access_log_reopen(fw_loop *loop);

/*
 * Supervision.  A worker's loop writes its health into a slot of memory
 * it shares with the master, which reads it without a syscall.  Plain
 * aligned 64-bit stores: a reader sees each field whole; `request` may be
 * read half-written, which only ever garbles a log line.
 */
/*
 * Counters for --metrics, kept by the loop and copied at the end of each
 * turn to where fw_loop_metrics points (a worker's slot, so the master
 * sums them without a syscall).
 */
#define FW_BUCKETS 14           /* request duration histogram, see loop.c */
#define FW_STATUSES 500         /* status codes counted one by one, 100..599 */
typedef struct fw_counters {
    uint64_t responses[6];      /* by status class: [0] no response (the
                                   client left), [1] 1xx ... [5] 5xx */
    uint64_t duration[FW_BUCKETS]; /* responses per duration bucket (not
                                   cumulative; the last is "longer") */
    uint64_t duration_us;       /* their sum */
    uint64_t bytes_in, bytes_out;
    uint64_t refused[6];        /* refused by the server: 400, 408, 413,
                                   414, 431, any other */
    int64_t connections;        /* open now */
    int64_t active;             /* of them, with a request in progress */
    int64_t threads, busy;      /* app threads, and those in a request */
    /* Not copied each turn (they are written where the reader is): */
    uint64_t status[FW_STATUSES]; /* responses by status code, 100 to 599
                                   ([0] is 100), written by the loop */
    uint64_t log[4];            /* log records: critical, error, warning,
                                   exception (an error with a traceback),
                                   written by Python */
} fw_counters;
void fw_loop_metrics(fw_loop *loop, fw_counters *dst);

typedef struct fw_beat {
    int64_t turn_ms;            /* fw_clock_ms() when the loop last woke */
    int64_t call_ms;            /* when the inline app call in progress
                                   began; 0 when none is */
    uint64_t requests;          /* requests handed to the app so far */
    int32_t state;              /* FW_BEAT_* */
    int32_t waiting;            /* 1 while the loop sleeps in epoll_wait */
    int32_t round;              /* requests in the call in progress */
    int32_t conns;              /* connections open now */
    int32_t accepting;          /* 1 while its listeners are watched (the
                                   loop runs, not paused, not stopping) */
    int32_t pad;
    char request[96];           /* "METHOD /path" of the call in progress
                                   (the first of a round) */
    fw_counters counters;       /* with --metrics */
} fw_beat;
#define FW_BEAT_STARTING 0
#define FW_BEAT_SERVING 1
#define FW_BEAT_STOPPING 2
/* Start writing to `slot` (NULL: stop). */
void fw_loop_beat(fw_loop *loop, fw_beat *slot);
/* Every worker's slot (`count` of them, `slot` among them): with shared
 * listeners the loop leaves a new connection to a less loaded worker that
 * is waiting for one, and hands keep-alive connections back (closing them
 * after a response) while it holds more than its share. */
void fw_loop_peers(fw_loop *loop, fw_beat *slots, int count);
/* The clock fw_beat's times are read on (monotonic, in ms). */
int64_t fw_clock_ms(void);

/*
 * Flags passed to fw_py_request.  The listener's index is (flags >> 8) & 255
 * and the shape is flags >> 16: the environ's keys come as values only, in
 * the order of a key sequence ("shape") C has numbered.  With FW_IN_FRESH
 * the shape number is new (or now stands for other keys), and with
 * FW_IN_BODY the request has a body: fw_request_extra() has them.
 *
 * Requests that need neither (the common keep-alive GET) are gathered
 * while one epoll batch is handled and cross over together through
 * fw_py_batch: n connections, their flags, the number of values of each,
 * and all their values in one block, one request after the other.
 */
typedef struct fw_extra {
    const char *keys;           /* the shape's keys, "KEY\0KEY..." */
    size_t keys_len;
    const char *body;           /* in-memory body */
    size_t body_len;
    int body_fd;                /* or a spooled body, -1 if none */
} fw_extra;

#define FW_IN_FRESH  8
#define FW_IN_BODY   16
#define FW_SHAPES 64            /* shapes numbered at once */
/* The number of a key sequence that has no slot of its own (every slot it
 * could take is in use by a batched request): its keys come with the
 * request (FW_IN_FRESH) and are good for that request only. */
#define FW_SHAPE_ONCE 64
#define FW_IN_HEAD   1          /* HEAD request */
#define FW_IN_DUPS   2          /* repeated header names in the environ block */
#define FW_IN_HTTP10 4          /* HTTP/1.0 request */
#define FW_IN_GONE   32         /* fw_py_batch: its client is gone (the
                                   connection failed after the request was
                                   read): not for the app */

/*
 * The response side, called by Python while it handles a request.
 * `head` is "STATUS\nname\0value\nname\0value..." in latin-1: nfields
 * lines after the status, each one name, one NUL, one value (a NUL is never
 * valid inside a value, so a header tuple of the wrong size is caught).
 * C validates every byte.
 * Return values: 1 = more output may be produced now, 0 = the output buffer is
 * full (wait for fw_py_writable; C may still be sending from the memory
 * of the data passed in this call, so it must stay alive until then or
 * until fw_py_closed), 2 = the app's Content-Length is used up
 * and C has ended the response (do not call fw_response_end; any further
 * body is an error), 3 = the response carries no body (HEAD, 204, 304) and
 * C has ended it: stop iterating,
 * -1 = the connection is gone, -2 = the head was invalid (nothing was sent;
 * answer 500 instead).
 */
int fw_response_simple(fw_conn *c, const char *head, size_t hlen, int nfields,
                       const char *body, size_t blen);
int fw_response_start(fw_conn *c, const char *head, size_t hlen, int nfields,
                      int64_t length, const char *data, size_t dlen);
int fw_response_write(fw_conn *c, const char *data, size_t len);
int fw_response_sendfile(fw_conn *c, int fd, int64_t offset, int64_t count);
int fw_response_end(fw_conn *c);
/* A canned error response (500, ...); the connection closes after it. */
int fw_response_error(fw_conn *c, int status);
/* Close the connection once what was queued is sent (broken response). */
void fw_response_abort(fw_conn *c);
/* Block until the queued output drops below the high-water mark. */
int fw_conn_drain(fw_conn *c);
/* The connection's id, unique within its loop (names it in callbacks). */
uint64_t fw_conn_id(fw_conn *c);
/* Keys and body of the request being handed over (valid during the call). */
fw_extra *fw_request_extra(fw_conn *c);

/*
 * Threaded mode.  fw_loop_threads switches a loop to it before it runs:
 * app calls then happen on threads that join the pool, and the loop calls
 * into Python only to log and for signals.  Each thread joins once and
 * then asks for requests one after the other: fw_pool_next ends the
 * thread's previous request (its response is complete, or is cut) and
 * waits, without the interpreter lock, for the next; 0 means the pool
 * stops.  The response calls above work from that thread on job->conn
 * and nowhere else; a 0 from them means: call fw_conn_drain, which waits
 * until the output drained (or fails when the client is gone).
 */
typedef struct fw_job {
    fw_conn *conn;
    const char *env;            /* the values, as for fw_py_request */
    size_t env_len;
    int flags;                  /* as for fw_py_request, without FW_IN_FRESH */
    const char *keys;           /* the shape's keys, always given */
    size_t keys_len;
    uint64_t keys_gen;          /* changes whenever the shape's number takes
                                   other keys; 0: the keys name nothing */
    const char *body;
    size_t body_len;
    int body_fd;
} fw_job;

int fw_loop_threads(fw_loop *loop);
fw_job *fw_pool_join(fw_loop *loop);
int fw_pool_next(fw_loop *loop, fw_job *job);
void fw_pool_leave(fw_loop *loop, fw_job *job);
void fw_pool_stop(fw_loop *loop);
/* The request timeout.  fw_pool_overdue lists (up to max) the threads
 * whose request has run age_us without starting its response;
 * fw_pool_expire answers such a request 503 and closes its connection
 * (checking the age again), and the thread's later calls for it fail.
 * Returns 1 when it did, 0 when the thread had moved on. */
int fw_pool_overdue(fw_loop *loop, int64_t age_us, fw_job **out, int max);
int fw_pool_expire(fw_loop *loop, fw_job *job, int64_t age_us);
/* The id of the connection whose request the thread has, 0 if none (read
 * under the loop's mutex, for a thread other than the job's own). */
uint64_t fw_pool_conn_id(fw_loop *loop, fw_job *job);
/* fw_response_simple for a thread's request, then, when the response is
 * complete, what fw_pool_next does: returns FW_NEXT_TAKEN (job holds the
 * next request) or FW_POOL_STOPS; any other value is fw_response_simple's
 * and the request is still the thread's. */
#define FW_NEXT_TAKEN 5
#define FW_POOL_STOPS 6
int fw_pool_simple_next(fw_loop *loop, fw_job *job, fw_conn *c,
                        const char *head, size_t hlen, int nfields,
                        const char *body, size_t blen);

/*
 * TLS (tls.c).  fw_tls_load opens OpenSSL's libssl at `path` (the one the
 * interpreter's ssl module loaded; NULL or "" tries libssl.so.3 and .1.1)
 * once per process; 0, or -1 with a message in err.  A context made from
 * a fw_tls_config is given to a listener with fw_loop_tls, which takes a
 * reference of its own (NULL takes TLS away); the caller frees its own
 * with fw_tls_context_free.  Giving a listener a new context renews its
 * certificate for new connections; open ones keep theirs.
 */
typedef struct fw_tls_config {
    const char *certfile;       /* PEM: the certificate, then its chain */
    const char *keyfile;        /* PEM, no passphrase; NULL: in certfile */
    const char *ca_certs;       /* PEM: CAs for client certificates, or NULL */
    int cert_reqs;              /* 0 none, 1 asked for, 2 required */
    const char *ciphers;        /* OpenSSL cipher list (TLS 1.2), or NULL */
    int min_version;            /* 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
    int suppress_ragged_eofs;   /* an EOF without close_notify is an end */
} fw_tls_config;

int fw_tls_load(const char *path, char *err, size_t errlen);
const char *fw_tls_version(void);
void *fw_tls_context(const fw_tls_config *cfg, char *err, size_t errlen);
void fw_tls_context_free(void *ctx);
int fw_loop_tls(fw_loop *loop, int index, void *ctx);

/* python-callbacks-begin (cffi reads these; C sees a comment)
extern "Python+C" int fw_py_request(void *userdata, fw_conn *c,
                                    const char *env, size_t env_len,
                                    int flags);
extern "Python+C" void fw_py_batch(void *userdata, fw_conn **conns,
                                   int *flags, int *counts, const char *env,
                                   size_t env_len, int n);
extern "Python+C" void fw_py_writable(void *userdata, fw_conn *c, uint64_t id);
extern "Python+C" void fw_py_closed(void *userdata, uint64_t id);
extern "Python+C" void fw_py_wakeup(void *userdata);
extern "Python+C" void fw_py_log(void *userdata, int level, const char *msg);
python-callbacks-end */

/* cdef-end */

/* RFC 9110 token characters, shared by the parser and the response side. */
extern const unsigned char fw_tchar[256];

/* Bytes allowed inside a field value: VCHAR, SP, HTAB and obs-text. */
static inline int fw_is_field_byte(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* The same callbacks as C sees them (cffi generates their bodies). */
int fw_py_request(void *userdata, fw_conn *c, const char *env,
                  size_t env_len, int flags);
void fw_py_batch(void *userdata, fw_conn **conns, int *flags, int *counts,
                 const char *env, size_t env_len, int n);
void fw_py_writable(void *userdata, fw_conn *c, uint64_t id);
void fw_py_closed(void *userdata, uint64_t id);
void fw_py_wakeup(void *userdata);
void fw_py_log(void *userdata, int level, const char *msg);

#endif
