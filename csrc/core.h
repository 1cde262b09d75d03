/*
 * core.h - the structures and functions shared by the C files of the
 * server loop: every one but the parsers, http1.c and proxy.c.
 * Nothing here is visible to Python; fw.h is the public face.
 */
#ifndef FW_CORE_H
#define FW_CORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "fw.h"

#define FW_RBUF_SIZE (256 * 1024)    /* shared read buffer: a request with a
                                        body of up to about 192 KiB fits in
                                        one recv, and its body is handed to
                                        the app where it lies */
#define FW_FBUF_SIZE (256 * 1024)    /* file bodies sent by copy: big enough
                                        for few syscalls, small enough to
                                        stay in cache until it is sent */
#define FW_WBUF_SIZE (64 * 1024)     /* shared write buffer */
#define FW_OWN_IN_MIN (16 * 1024)    /* a connection's own input buffer */
#define FW_OUT_HIGH (256 * 1024)     /* stop producing output above this */
#define FW_HOLD_US 250               /* longest a finished response is held
                                        for its round's burst of sends */
#define FW_HOLD_BYTES (64 * 1024)    /* only responses this small are held */
#define FW_DEFER_MAX 64              /* single answers deferred per turn */
#define FW_OUT_LOW (64 * 1024)       /* ask for more output below this */
#define FW_DIRECT_WRITE (64 * 1024)  /* bodies this large skip the copy */
#define FW_WRITE_PROGRESS (64 * 1024) /* taken per write_timeout: alive */
#define FW_LINGER_MS 2000            /* discard input this long before close */
#define FW_LINGER_MAX (1024 * 1024)  /* and at most this much of it */
#define FW_MAX_EVENTS 256
#define FW_BATCH FW_MAX_EVENTS      /* requests handed to Python at once */
#define FW_BATCH_ENV (128 * 1024)   /* their environ values, together */
#define FW_MAX_LISTENERS 16
#define FW_TLS_DN_MAX 1024          /* longest client subject passed on */
#define FW_ACCEPT_TURN 1024          /* connections accepted in one turn */
#define FW_SHARE_EVERY_MS 100       /* how often a worker weighs its share */
#define FW_SHARE_PAUSE_MS 5         /* listeners left to a less loaded
                                       worker for this long */
#define FW_PEER_FRESH_MS 1000       /* a worker whose loop turned within
                                       this is coming back for connections */

/* Log levels passed to fw_py_log (the values of Python's logging module). */
#define FW_LOG_DEBUG 10
#define FW_LOG_INFO 20
#define FW_LOG_WARNING 30
#define FW_LOG_ERROR 40

/* What an epoll event's data.ptr points at: the first field says. */
enum { IO_CONN = 1, IO_LISTENER, IO_WAKEUP, IO_POOL };

typedef struct fw_io {
    int kind;                   /* IO_* */
    int fd;
} fw_io;

/* A byte buffer: data[off..len) is pending. */
typedef struct fw_buf {
    char *data;
    size_t off;
    size_t len;
    size_t cap;
} fw_buf;

/* The timer a connection waits on; each kind has one fixed duration, so
 * each kind's list is ordered by deadline simply by appending. */
enum { T_NONE = 0, T_HEAD, T_IDLE, T_BODY, T_WRITE, T_LINGER, T_KINDS };

/* Connection states. */
enum {
    CS_HEAD,                    /* waiting for, or reading, a request head */
    CS_BODY,                    /* reading a request body */
    CS_QUEUED,                  /* a request waits in the loop's batch */
    CS_APP,                     /* a response is being produced */
    CS_LINGER,                  /* output done, discarding input until close */
    CS_CLOSED                   /* waiting to be freed */
};

/* Connection flags. */
#define C_READABLE    0x0001    /* may have input (edge seen, no EAGAIN yet) */
#define C_WRITABLE    0x0002    /* may take output (no EAGAIN since edge) */
#define C_PEER_EOF    0x0004    /* the client shut down its sending side */
#define C_DEAD        0x0008    /* socket error: close at the next chance */
#define C_KEEPALIVE   0x0010    /* the current request allows keep-alive */
#define C_CLOSE_AFTER 0x0020    /* close once the output is sent */
#define C_IN_APP      0x0040    /* Python is on the stack for this conn */
#define C_REQ_HEAD    0x0080    /* the current request is HEAD */
#define C_REQ_HTTP10  0x0100    /* the current request is HTTP/1.0 */
#define C_IN_BORROWED 0x0200    /* in.data is the loop's shared buffer */
#define C_OUT_BORROWED 0x0400   /* out.data is the loop's shared buffer */
#define C_TCP         0x0800    /* a TCP socket (not AF_UNIX) */
#define C_SERVED      0x1000    /* at least one request was answered */
#define C_ERROR_CLOSE 0x2000    /* closing after an error: linger */
#define C_HUP         0x4000    /* an event said the peer hung up or erred */
#define C_UNWATCHED   0x8000    /* not registered with epoll yet */
#define C_BATCHED     0x10000   /* answered within a batch: give the shared
                                   write buffer back after each call */
#define C_RESET       0x20000   /* close with a reset: the body was cut short
                                   and only the close would delimit it */
#define C_BODY_MOVED  0x40000   /* request body bytes came: re-arm its timer */
#define C_JOB         0x80000   /* an app thread has its request (c->job) */
#define C_WAITQ       0x100000  /* waiting for an idle app thread */
#define C_KICKED      0x200000  /* on the loop's kicked list */
#define C_WAKE        0x400000  /* taken off the wait queue: may take a
                                   thread ahead of those still waiting */
#define C_PROXY_DONE  0x1000000 /* its PROXY header was read */
#define C_PEER_KNOWN  0x4000000 /* C_PEER_LOCAL was worked out */
#define C_PEER_LOCAL  0x8000000 /* the peer is on this host */
#define C_HELD        0x2000000 /* a finished response held for one send
                                   with the others of its round */
#define C_ANSWERED    0x10000000 /* a request dispatched on its own was
                                   just answered inline: may be deferred */
#define C_DEFERRED    0x20000000 /* its answer waits for the turn's burst
                                   (loop->deferred) */
#define C_EXPIRED     0x800000  /* past the request timeout: answered 503,
                                   the app thread's calls fail */
#define C_PROXY_ANON  0x40000000 /* its PROXY header named no client (v2
                                   LOCAL, v1 UNKNOWN): the peer's address
                                   stays, its forwarding headers are not
                                   trusted */

/* Response states. */
enum { RS_NONE = 0, RS_STREAM, RS_DONE };

/* Response body framing. */
enum { OUT_LENGTH = 1, OUT_CHUNKED, OUT_CLOSE, OUT_NOBODY };

/* A sequence of environ keys seen before: Python keeps a ready environ
 * for each, so the keys of a request cross over only the first time. */
typedef struct fw_shape {
    uint64_t hash;
    size_t len;
    int nkeys;
    int refs;                   /* batched or threaded requests that use
                                   this number: while any does, the slot is
                                   not reused */
    uint64_t gen;               /* changes whenever the slot takes keys */
    char *keys;                 /* "KEY\0KEY..." */
} fw_shape;

/* What a checked response head says (response.c). */
typedef struct head_info {
    int status;
    int has_date, has_server, close;
    int64_t length;             /* the app's Content-Length, or -1 */
} head_info;

/* The last head block checked, with its wire form: status line and the
 * app's headers, without what the server adds. */
typedef struct head_memo {
    size_t src_len;             /* 0: none (an empty block is invalid) */
    int nfields;
    head_info hi;
    size_t wire_len;
    char src[512];
    char wire[2 * 512 + 16];
} head_memo;

/* A request body being received (allocated only while it is). */
typedef struct fw_body {
    char *env;                  /* environ values saved from the head */
    size_t env_len;
    char *keys;                 /* and their keys */
    size_t keys_len;
    int in_flags;               /* FW_IN_* */
    int chunked;
    int ready;                  /* complete, waiting for an app thread */
    int64_t expected;           /* Content-Length, or -1 when chunked */
    int64_t received;           /* data bytes so far */
    char *mem;                  /* in-memory body */
    size_t mem_len;
    size_t mem_cap;
    int fd;                     /* spool file, or -1 */
    fw_chunked ck;
} fw_body;

/* Body bytes sent from the app's own memory instead of a copy (a large
 * bytes object): Python keeps the object alive until fw_py_writable or
 * fw_py_closed.  `tail` follows the bytes (a chunk's CRLF). */
typedef struct fw_ext {
    const char *data;
    size_t left;
    char tail[2];
    size_t tail_len;
} fw_ext;

/* A file being sent with sendfile (allocated only while it is). */
typedef struct fw_file {
    int fd;                     /* owned by Python */
    int64_t off;
    int64_t left;
} fw_file;

/* What a TLS session waits for besides its own direction (tls_want). */
#define TLS_READ_WANTS_OUT 1   /* a read waits for room to send */
#define TLS_WRITE_WANTS_IN 2   /* a write waits for input */
#define TLS_PEER_SEEN      4   /* the client certificate was looked at */
#define TLS_NOTIFIED       8   /* close_notify was sent */
#define TLS_PLAIN_HTTP    16   /* the client spoke plain HTTP */
#define TLS_NOTIFY_WAITS  32   /* close_notify waits in OpenSSL for room */

struct fw_conn {
    fw_io io;                   /* must stay first: epoll's data.ptr */
    uint8_t state;              /* CS_* */
    uint8_t timer;              /* T_* list the conn is on */
    uint8_t resp;               /* RS_* */
    uint8_t out_mode;           /* OUT_* */
    uint32_t flags;             /* C_* */
    int listener;               /* index of the listener it came from */
    uint64_t id;                /* unique per loop, names it to Python */
    struct fw_loop *loop;
    fw_conn *tprev, *tnext;     /* timer list */
    fw_conn *prev, *next;       /* all connections (or the free list) */
    int64_t deadline;           /* ms, monotonic */
    int64_t head_since;         /* when the pending head began, 0: none */
    int64_t waited_ms;          /* when it joined the wait queue (C_WAITQ) */
    uint32_t kernel_queue;      /* bytes the kernel held unsent or unacked
                                   when the write deadline was last set */
    int64_t resp_left;          /* body bytes still allowed, -1 unknown */
    fw_buf in;                  /* received, not yet consumed */
    size_t scanned;             /* parser hint for a partial head; while
                                   lingering, the bytes discarded */
    fw_buf out;                 /* queued output */
    fw_body *body;
    fw_file *file;
    fw_ext *ext;
    struct fw_worker *job;      /* the app thread with its request */
    fw_conn *wprev, *wnext;     /* the queue waiting for a thread */
    fw_conn *knext;             /* the kicked list */
    void *alog;                 /* the access log's record of the request */
    int64_t req_us;             /* --metrics: when the request's head came */
    int status;                 /* of the response being made, 0: none yet */
    void *tls;                  /* its TLS session (tls.c), or NULL */
    char *tls_dn;               /* the verified client certificate's
                                   subject, or NULL */
    uint8_t tls_want;           /* TLS_* */
    char raddr[46];             /* REMOTE_ADDR */
    char rport[6];              /* REMOTE_PORT */
};

struct fw_loop {
    int epfd;
    int running;
    int stopping;               /* 1 graceful, 2 immediate */
    int gentle;                 /* graceful as FW_STOP_RETIRE: idle
                                   connections are not closed under a
                                   client that may be sending */
    fw_beat *beat;              /* the master's slot, or NULL */
    fw_beat *peers;             /* every worker's slot (share.c), or NULL */
    int npeers;
    int shed;                   /* connections to hand back (share.c) */
    int64_t share_checked;      /* when `shed` was worked out (ms) */

    struct fw_alog *alog;       /* the access log, or NULL */
    fw_counters *mdst;          /* where the counters go, or NULL (off) */
    fw_counters m;              /* the counters, this loop's own */
    int alog_waiting;           /* lines wait for the writer: come back soon */
    struct fw_taken *taken;     /* accepted as the listeners closed, to be
                                   served at the next safe point */
    int ntaken;
    uint64_t served;            /* requests handed to the app */
    void *userdata;             /* the Python server object's handle */
    fw_config cfg;
    char *spool_dir;
    char *server_name;
    char server_line[96];       /* "Server: name\r\n" */
    size_t server_line_len;
    fw_io listeners[FW_MAX_LISTENERS];
    int nlisteners;
    int accept_paused;          /* out of fds: listeners are off epoll */
    long accept_failures;       /* failed accepts in this episode */
    int64_t accept_resume;      /* when to try accepting again */
    fw_io wakeup;
    int64_t now;                /* ms, monotonic, the last reading */
    int64_t polled_before;      /* when the previous turn's events came */
    int64_t stop_deadline;
    int64_t timeout_ms[T_KINDS];
    fw_conn *thead[T_KINDS], *ttail[T_KINDS];
    fw_conn *conns;             /* all live connections */
    fw_conn *zombies;           /* closed, freed at the end of an iteration */
    int nconns;
    uint64_t next_id;
    fw_head head;               /* parser output, reused */
    fw_extra extra;             /* what fw_request_extra() returns */
    char *rbuf;                 /* shared read buffer */
    char *fbuf;                 /* file bodies sent by copy pass here
                                   (FW_FBUF_SIZE, made on first use) */
    int rbuf_busy;
    char *wbuf;                 /* shared write buffer */
    int wbuf_busy;
    char *env;                  /* environ values scratch */
    char *keys;                 /* environ keys scratch */
    size_t env_cap;             /* size of each */
    fw_shape shapes[FW_SHAPES];
    uint64_t hash_seed;         /* per loop, so collisions cannot be chosen */
    /* Requests gathered for one fw_py_batch call (see fw.h). */
    fw_conn *batch_conns[FW_BATCH];
    int batch_flags[FW_BATCH];
    int batch_counts[FW_BATCH];
    int batch_n;
    int batch_closed;           /* set while a batch is answered */
    char *batch_env;            /* FW_BATCH_ENV bytes */
    size_t batch_env_len;
    int64_t round_mark_ms;      /* when the round's last call ended */
    int64_t round_slowest_ms;   /* the longest call of the round so far */
    fw_conn *round_slowest;     /* and its connection */
    int held_n;                 /* responses held in this round (C_HELD) */
    int64_t held_since_us;      /* when the first of them was held */
    /* Answers to requests dispatched one by one (those with a body, a new
     * shape), deferred like a batch's to the turn's end (C_DEFERRED). */
    fw_conn *deferred[FW_DEFER_MAX];
    int deferred_n;
    int deferred_sent;          /* the first ones already sent mid-turn */
    int64_t deferred_since_us;  /* when the first unsent one was deferred */
    head_memo memo;             /* the last response head checked */
    char date[64];              /* "Date: ...\r\n" */
    size_t date_len;
    int64_t date_sec;
    int64_t slow_logged;        /* when a slow inline app call was logged */
    /* Threaded mode (pool.c); every field below is under `mu`, and so is
     * everything the loop does while app threads run. */
    int threaded;
    pthread_mutex_t mu;
    fw_io pool_io;              /* eventfd: app threads kicked something */
    int pool_notified;          /* written to it, not yet read */
    int pool_stop;
    uint64_t shape_gen;
    struct fw_worker *idle;     /* threads waiting for a request */
    struct fw_worker *to_wake;  /* to signal once the mutex is released */
    int nidle;
    int64_t call_us;            /* app calls' recent mean length (EWMA) */
    struct fw_worker *workers;  /* every thread that joined */
    int nworkers;
    fw_conn *waitq_head, *waitq_tail;
    int nwaitq;
    fw_conn *kick_head, *kick_tail;
    /* Requests parsed while every thread was busy, for the next thread
     * that is done: it takes one without sleeping.  Bounded in count and
     * bytes; beyond, connections wait unparsed (waitq). */
    struct fw_queued *q_head, *q_tail;
    int nqueued;
    size_t queued_bytes;
    /* Each listener's TLS context, or NULL: last, read once per accepted
     * connection, so that the fields every request uses stay together. */
    void *tls_ctx[FW_MAX_LISTENERS];
};

/* A connection the kernel had queued when a graceful stop closed the
 * listeners: its client sent a request before the stop, so it is served. */
typedef struct fw_taken {
    int fd;
    int listener;
    unsigned salen;
    struct sockaddr_storage sa;
} fw_taken;
#define FW_TAKE_MAX 1024

#define FW_QUEUE_MAX 1024
#define FW_QUEUE_BYTES (8u << 20)

/* A request waiting in that queue, with its own copies in one block. */
typedef struct fw_queued {
    struct fw_queued *next;
    fw_conn *conn;
    size_t size;                /* of the whole block */
    const char *env, *keys, *body;
    size_t env_len, keys_len, body_len;
    int body_fd;
    int flags;                  /* FW_IN_*, listener, shape */
    int shape;                  /* the pinned slot, or -1 */
    uint64_t gen;
    int64_t since_us;           /* when it was queued */
} fw_queued;

/* A queued request waits this long for a busy thread to take it before
 * an idle one is woken for it (see pool_dispatch)... */
#define FW_QUEUE_WAKE_US 1000
/* ...unless the busy threads' calls are so long that the first of them
 * would free up later than this after the request came: then waking an
 * idle thread (a context switch) is the sooner way. */
#define FW_WAKE_COST_US 50

/* One app thread of the pool.  `job` must stay first: Python sees the
 * worker as its fw_job. */
typedef struct fw_worker {
    fw_job job;
    struct fw_loop *loop;
    pthread_cond_t cv;          /* with loop->mu: work came, or output
                                   drained, or the pool stops */
    struct fw_worker *next_idle;
    struct fw_worker *next_all;
    int assigned;               /* job.conn was set for it */
    int waiting;                /* blocked in pool_drain */
    struct fw_worker *next_wake; /* on loop->to_wake (the loop's only) */
    int wake_queued;            /* (the loop's only) */
    int shape;                  /* the pinned shape slot, or -1 */
    int64_t started_us;         /* when it was given its request */
    char *env, *keys, *body;    /* copies the request owns */
    size_t env_cap, keys_cap, body_cap;
} fw_worker;

extern __thread fw_worker *fw_tls_worker;
extern __thread int fw_tls_in_call;

/* Take the loop's mutex in threaded mode (a no-op inline). */
static inline void loop_lock(struct fw_loop *loop)
{
    if (loop->threaded)
        pthread_mutex_lock(&loop->mu);
}

void pool_wake(fw_worker *list);

/* Threads given work during the turn are signalled once the mutex is
 * free: signalled under it, a woken thread (on a busy machine, at once,
 * on this CPU) would only block again on the mutex the loop holds. */
static inline void loop_unlock(struct fw_loop *loop)
{
    if (loop->threaded) {
        fw_worker *w = loop->to_wake;
        loop->to_wake = NULL;
        pthread_mutex_unlock(&loop->mu);
        if (w != NULL)
            pool_wake(w);
    }
}

/* 1 when `want` more bytes fit in a buffer of `cap` bytes of which `used`
 * are taken.  Every length a client controls meets a buffer through this:
 * it cannot wrap around. */
static inline int fw_fits(size_t used, size_t cap, size_t want)
{
    return used <= cap && want <= cap - used;
}

/* loop.c */
int64_t loop_clock_us(void);    /* monotonic µs, precise (for the hold) */
int64_t loop_clock_ms(void);    /* monotonic ms (FW_EXTERNAL_CLOCK: the
                                   build supplies it, e.g. a fuzz target) */
int64_t loop_now(struct fw_loop *loop);
int loop_turn(struct fw_loop *loop, int timeout_ms);
const char *response_reason(int status);
/* alog.c */
typedef struct fw_alog fw_alog;
void alog_begin(struct fw_conn *c, const char *buf, const fw_head *h);
void alog_status(struct fw_conn *c, int status);
void alog_bytes(struct fw_conn *c, int64_t n);
void alog_end(struct fw_conn *c);
int alog_turn(struct fw_loop *loop);
void alog_free(struct fw_loop *loop);
void metrics_end(struct fw_conn *c);
void metrics_refused(struct fw_loop *loop, int status);
int64_t metrics_now_us(void);
void loop_timer_at(struct fw_loop *loop, fw_conn *c, int kind,
                   int64_t deadline);
void loop_timer_set(struct fw_loop *loop, fw_conn *c, int kind);
void loop_timer_clear(struct fw_loop *loop, fw_conn *c);
void loop_log(struct fw_loop *loop, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tls.c */
int tls_start(fw_conn *c, void *ctx);
ssize_t tls_read(fw_conn *c, char *buf, size_t len);
ssize_t tls_write(fw_conn *c, const char *data, size_t len);
int tls_close_notify(fw_conn *c);
void tls_plain_refusal(fw_conn *c);
void tls_free(fw_conn *c);
void tls_loop_free(struct fw_loop *loop);

/* conn.c */
fw_conn *conn_new(struct fw_loop *loop, int fd, int listener,
                  const void *sa, unsigned salen);
void conn_event(fw_conn *c, uint32_t events);
void conn_run(fw_conn *c);
void conn_close(fw_conn *c);
void conn_timeout(fw_conn *c);
void fail(fw_conn *c, int status);

/* send.c; the two smallest are inline, asked as often as they are. */
static inline size_t conn_out_pending(const fw_conn *c)
{
    return c->out.len - c->out.off;
}

/* Output of any kind still to send. */
static inline int output_waits(const fw_conn *c)
{
    return conn_out_pending(c) || c->ext || c->file;
}

void conn_write_progress(fw_conn *c);
void write_deadline(fw_conn *c);
uint32_t kernel_queue(const fw_conn *c);
int conn_out_reserve(fw_conn *c, size_t extra);
int conn_out_append(fw_conn *c, const char *data, size_t len);
int conn_flush(fw_conn *c);
void conn_out_settle(fw_conn *c);

/* environ.c */
long build_env(fw_conn *c, const char *buf, const fw_head *h,
               int *in_flags, size_t *keys_len);
int shape_of(struct fw_loop *loop, const char *keys, size_t len, int *fresh);

/* body.c */
void body_free(fw_body *b);
int body_feed(fw_conn *c);
void body_dispatch(fw_conn *c);

/* batch.c */
void dispatch(fw_conn *c, const char *env, size_t env_len,
              const char *keys, size_t keys_len,
              const char *body, size_t body_len, int body_fd,
              int in_flags);
void dispatch_shaped(fw_conn *c, const char *env, size_t env_len,
                     const char *keys, size_t keys_len,
                     const char *body, size_t body_len, int body_fd,
                     int in_flags, int shape, int fresh);
int enqueue(fw_conn *c, long env_len, int in_flags, int shape, int fresh);
void conn_batch_flush(struct fw_loop *loop);
int defer(fw_conn *c);
void send_deferred(struct fw_loop *loop, int all);
void conn_release_deferred(struct fw_loop *loop);

/* share.c */
void share_publish(struct fw_loop *loop);
int share_leave_to_other(const struct fw_loop *loop);
void share_update(struct fw_loop *loop);

/* Close this connection after the response being started?  Only one
 * whose client has nothing more buffered here (a pipelined request would
 * be cut off), and only while the worker is above its share (share.c).
 * Inline: it is asked of every response. */
static inline int share_hand_back(fw_conn *c)
{
    struct fw_loop *loop = c->loop;
    if (loop->shed <= 0 || c->in.off != c->in.len || !(c->flags & C_KEEPALIVE))
        return 0;
    loop->shed--;
    return 1;
}

/* response.c */
int response_error(fw_conn *c, int status);
void response_release_held(struct fw_loop *loop);
void response_abort(fw_conn *c);
int stop_passed(fw_conn *c);
void response_date_refresh(struct fw_loop *loop, int64_t sec);

/* pool.c */
void pool_kick(fw_conn *c);
int pool_may_take(const fw_conn *c);
void pool_wait(fw_conn *c);
void pool_unwait(fw_conn *c);
int pool_dispatch(fw_conn *c, const char *env, size_t env_len,
                  const char *keys, size_t keys_len, const char *body,
                  size_t body_len, int body_fd, int in_flags, int shape);
void pool_writable(fw_conn *c);
void pool_run(struct fw_loop *loop);
int64_t pool_next_expiry(const struct fw_loop *loop);
int pool_drain(fw_conn *c);
int pool_next_locked(struct fw_loop *loop, fw_worker *w);
void pool_free(struct fw_loop *loop);

#endif
