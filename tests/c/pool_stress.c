/*
 * pool_stress.c - threaded mode's hand-over under ThreadSanitizer.
 *
 * A real loop on a real socket, app threads written in C that use the
 * same calls Python makes (fw_pool_next, fw_response_*, fw_conn_drain),
 * and client threads that pipeline requests, read streamed responses
 * slowly, or hang up in the middle.  Every response is checked against
 * the request that asked for it.  Built by scripts/tsan with
 * -fsanitize=thread; a data race or a wrong answer fails it.
 *
 *   pool_stress [APP_THREADS] [CLIENT_THREADS] [ROUNDS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fw.h"

static int g_wake[2];
static fw_loop *g_loop;
static int g_port;
static int g_failed;
static pthread_mutex_t g_fail_mu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&g_fail_mu);
    va_start(ap, fmt);
    fprintf(stderr, "pool_stress: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_failed = 1;
    pthread_mutex_unlock(&g_fail_mu);
}

/* ---- the callbacks C makes into "Python" ---- */

int fw_py_request(void *ud, fw_conn *c, const char *env, size_t env_len,
                  int flags)
{
    (void)ud, (void)c, (void)env, (void)env_len, (void)flags;
    fail("fw_py_request called in threaded mode");
    return 0;
}

void fw_py_batch(void *ud, fw_conn **conns, int *flags, int *counts,
                 const char *env, size_t env_len, int n)
{
    (void)ud, (void)conns, (void)flags, (void)counts, (void)env, (void)env_len,
        (void)n;
    fail("fw_py_batch called in threaded mode");
}

void fw_py_writable(void *ud, fw_conn *c, uint64_t id)
{
    (void)ud, (void)c, (void)id;
    fail("fw_py_writable called in threaded mode");
}

void fw_py_closed(void *ud, uint64_t id)
{
    (void)ud, (void)id;
    fail("fw_py_closed called in threaded mode");
}

/* The wake-up descriptor is how the test stops the loop, as a signal
 * handler would: on the loop's own thread. */
void fw_py_wakeup(void *ud)
{
    (void)ud;
    fw_loop_stop(g_loop, 1);
}

void fw_py_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level >= 40)
        fprintf(stderr, "log %d: %s\n", level, msg);
}

/* ---- the app threads ---- */

/* The value of environ key `want`: keys and values walk together, except
 * "KEY=VALUE" keys, which carry their value themselves. */
static int env_value(const fw_job *j, const char *want, char *out, size_t cap)
{
    const char *k = j->keys, *kend = j->keys + j->keys_len;
    const char *v = j->env, *vend = j->env + j->env_len;
    size_t wl = strlen(want);
    while (k <= kend) {
        size_t kl = strnlen(k, (size_t)(kend - k));
        const char *eq = memchr(k, '=', kl);
        if (eq) {
            if ((size_t)(eq - k) == wl && memcmp(k, want, wl) == 0) {
                snprintf(out, cap, "%.*s", (int)(kl - wl - 1), eq + 1);
                return 0;
            }
        } else {
            size_t vl = strnlen(v, (size_t)(vend - v));
            if (kl == wl && memcmp(k, want, wl) == 0) {
                snprintf(out, cap, "%.*s", (int)vl, v);
                return 0;
            }
            v += vl + 1;
        }
        k += kl + 1;
    }
    return -1;
}

static char g_big[200 * 1024];

static void *app_thread(void *arg)
{
    (void)arg;
    fw_job *job = fw_pool_join(g_loop);
    if (job == NULL) {
        fail("fw_pool_join failed");
        return NULL;
    }
    int more = fw_pool_next(g_loop, job);
    while (more) {
        fw_conn *c = job->conn;
        char path[256], query[256];
        if (env_value(job, "PATH_INFO", path, sizeof path) < 0 ||
            env_value(job, "QUERY_STRING", query, sizeof query) < 0) {
            fail("no PATH_INFO or QUERY_STRING in a job");
            fw_response_error(c, 500);
            more = fw_pool_next(g_loop, job);
            continue;
        }
        if (strcmp(path, "/stream") == 0) {
            /* Blocks of every size: small ones are copied, 64 KiB and up
             * are sent from this memory in place (then: wait for it). */
            static const char h[] = "200 OK\nContent-Type\0text/plain";
            int rc = fw_response_start(c, h, sizeof h - 1, 1, -1, "", 0);
            static const size_t sizes[] = {10, 70000, 3, 150000, 65536, 1};
            for (size_t i = 0; rc >= 0 && i < sizeof sizes / sizeof sizes[0];
                 i++) {
                rc = fw_response_write(c, g_big, sizes[i]);
                if (rc == 0)
                    rc = fw_conn_drain(c);
            }
            if (rc >= 0)
                fw_response_end(c);
            more = fw_pool_next(g_loop, job);
            continue;
        }
        /* Echo the query: the client checks it is its own.  Odd
         * clients' answers also take the next request in the same call. */
        char head[64];
        int hl = snprintf(head, sizeof head, "200 OK");
        if (query[2] % 2) {
            int rc = fw_pool_simple_next(g_loop, job, c, head, (size_t)hl, 0,
                                         query, strlen(query));
            if (rc == FW_NEXT_TAKEN)
                continue;
            if (rc == FW_POOL_STOPS)
                break;
        } else {
            fw_response_simple(c, head, (size_t)hl, 0, query, strlen(query));
        }
        more = fw_pool_next(g_loop, job);
    }
    fw_pool_leave(g_loop, job);
    return NULL;
}

/* ---- the clients ---- */

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fail("connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Read one response (Content-Length or chunked); its body into `body`. */
static int read_response(int fd, char *buf, size_t *have, char *body,
                         size_t cap, size_t *blen)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            char *cl = memmem(buf, hl, "Content-Length: ", 16);
            if (cl) {
                size_t n = strtoul(cl + 16, NULL, 10);
                while (*have < hl + n) {
                    ssize_t r = recv(fd, buf + *have, 65536, 0);
                    if (r <= 0)
                        return -1;
                    *have += (size_t)r;
                }
                *blen = n < cap ? n : cap;
                memcpy(body, buf + hl, *blen);
                memmove(buf, buf + hl + n, *have - hl - n);
                *have -= hl + n;
                return 0;
            }
            /* chunked: read to the terminator, count the payload */
            for (;;) {
                char *t = memmem(buf + hl, *have - hl, "\r\n0\r\n\r\n", 7);
                if (t) {
                    size_t total = (size_t)(t - buf) + 7;
                    *blen = total - hl;
                    memmove(buf, buf + total, *have - total);
                    *have -= total;
                    return 0;
                }
                if (*have + 65536 > 4u << 20) {
                    /* keep only the tail: the payload size is checked
                     * by the framing's end alone */
                    size_t keep = 16;
                    memmove(buf + hl, buf + *have - keep, keep);
                    *have = hl + keep;
                }
                ssize_t r = recv(fd, buf + *have, 65536, 0);
                if (r <= 0)
                    return -1;
                *have += (size_t)r;
            }
        }
        ssize_t r = recv(fd, buf + *have, 65536, 0);
        if (r <= 0)
            return -1;
        *have += (size_t)r;
    }
}

static int g_rounds = 30;

static void *client_thread(void *arg)
{
    long me = (long)arg;
    char *buf = malloc(4u << 20);
    for (int round = 0; round < g_rounds && !g_failed; round++) {
        int fd = connect_server();
        if (fd < 0)
            break;
        /* A pipeline of echoes, a stream, and more echoes. */
        char req[4096];
        size_t rl = 0;
        int n = 1 + (int)((me + round) % 6);
        for (int i = 0; i < n; i++)
            rl += (size_t)snprintf(req + rl, sizeof req - rl,
                                   "GET /echo?c=%ld&r=%d&i=%d HTTP/1.1\r\n"
                                   "Host: t\r\nX-N%d: %d\r\n\r\n",
                                   me, round, i, i % 3, i);
        int stream = (me + round) % 3 == 0;
        if (stream)
            rl += (size_t)snprintf(req + rl, sizeof req - rl,
                                   "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
        if (send(fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl) {
            fail("send failed");
            close(fd);
            break;
        }
        if ((me + round) % 7 == 3) {
            close(fd);          /* hang up with everything in flight */
            continue;
        }
        size_t have = 0;
        for (int i = 0; i < n; i++) {
            char body[256], want[256];
            size_t blen;
            if (read_response(fd, buf, &have, body, sizeof body - 1, &blen) < 0) {
                fail("client %ld round %d: no response %d", me, round, i);
                break;
            }
            body[blen] = '\0';
            snprintf(want, sizeof want, "c=%ld&r=%d&i=%d", me, round, i);
            if (strcmp(body, want) != 0)
                fail("client %ld round %d: got %s for %s", me, round, body,
                     want);
        }
        if (stream) {
            char body[8];
            size_t blen;
            if (read_response(fd, buf, &have, body, 0, &blen) < 0)
                fail("client %ld round %d: stream cut", me, round);
        }
        close(fd);
    }
    free(buf);
    return NULL;
}

static void *loop_thread(void *arg)
{
    (void)arg;
    if (fw_loop_run(g_loop) < 0)
        fail("fw_loop_run: %s", strerror(errno));
    return NULL;
}

int main(int argc, char **argv)
{
    int napps = argc > 1 ? atoi(argv[1]) : 4;
    int nclients = argc > 2 ? atoi(argv[2]) : 8;
    g_rounds = argc > 3 ? atoi(argv[3]) : 30;
    memset(g_big, 'b', sizeof g_big);
    fw_config cfg = {
        .limits = {.request_line = 8190, .fields = 100, .field_size = 8190,
                   .head = 65536},
        .max_body_size = 1 << 20, .spool_threshold = 1 << 20,
        .keepalive_timeout_ms = 5000, .header_timeout_ms = 10000,
        .body_timeout_ms = 10000, .write_timeout_ms = 10000,
        .graceful_timeout_ms = 5000, .spool_dir = "/tmp",
        .server_name = "stress",
    };
    g_loop = fw_loop_new(&cfg, NULL);
    /* The access log's writer thread takes buffers from the loop while app
     * threads end responses: under TSan too. */
    static const unsigned char alog_prog[] = {
        FW_ALOG_PEER, FW_ALOG_REQUEST, FW_ALOG_STATUS, FW_ALOG_BYTES,
        FW_ALOG_HEADER, 0, 0, FW_ALOG_MICROS};
    if (g_loop && fw_loop_access_log(g_loop, "/dev/null", alog_prog, sizeof alog_prog,
                                     "user-agent") < 0) {
        perror("access log");
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (g_loop == NULL || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 512) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 ||
        fw_loop_listen(g_loop, lfd, 0) < 0 || pipe2(g_wake, O_NONBLOCK) < 0 ||
        fw_loop_wakeup_fd(g_loop, g_wake[0]) < 0 ||
        fw_loop_threads(g_loop) < 0) {
        fprintf(stderr, "pool_stress: set-up failed: %s\n", strerror(errno));
        return 2;
    }
    g_port = ntohs(sa.sin_port);
    pthread_t lt, apps[64], clients[64];
    napps = napps < 1 ? 1 : napps > 64 ? 64 : napps;
    nclients = nclients < 1 ? 1 : nclients > 64 ? 64 : nclients;
    pthread_create(&lt, NULL, loop_thread, NULL);
    for (int i = 0; i < napps; i++)
        pthread_create(&apps[i], NULL, app_thread, NULL);
    for (long i = 0; i < nclients; i++)
        pthread_create(&clients[i], NULL, client_thread, (void *)i);
    for (int i = 0; i < nclients; i++)
        pthread_join(clients[i], NULL);
    if (write(g_wake[1], "x", 1) != 1)
        fail("cannot wake the loop");
    pthread_join(lt, NULL);
    fw_pool_stop(g_loop);
    for (int i = 0; i < napps; i++)
        pthread_join(apps[i], NULL);
    fw_loop_free(g_loop);
    close(g_wake[0]);
    close(g_wake[1]);
    if (g_failed)
        return 1;
    printf("pool_stress: %d app threads, %d clients x %d rounds: all answers "
           "right\n", napps, nclients, g_rounds);
    return 0;
}
