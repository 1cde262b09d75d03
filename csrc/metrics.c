/*
 * metrics.c - the counters behind --metrics: kept in the loop's own
 * memory on the request path (plain additions), copied once per turn to
 * where the Python side reads them (fw_loop_metrics).
 */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "core.h"

/* Upper bounds of the duration buckets, in microseconds; the last bucket
 * takes what is longer.  Python names them in seconds (metrics.py). */
static const int64_t bucket_us[FW_BUCKETS - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000};

int64_t metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void fw_loop_metrics(fw_loop *loop, fw_counters *dst)
{
    loop->mdst = dst;
}

/* A response is complete, or its connection closes: count it once. */
void metrics_end(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (c->req_us == 0 && c->status == 0)
        return;                 /* no request in progress */
    int cls = c->status / 100;
    loop->m.responses[cls >= 1 && cls <= 5 ? cls : 0]++;
    if (c->status >= 100 && c->status < 100 + FW_STATUSES)
        loop->mdst->status[c->status - 100]++;  /* one writer: this loop */
    if (c->req_us) {
        int64_t us = metrics_now_us() - c->req_us;
        int b = 0;
        while (b < FW_BUCKETS - 1 && us > bucket_us[b])
            b++;
        loop->m.duration[b]++;
        loop->m.duration_us += (uint64_t)(us > 0 ? us : 0);
        loop->m.active--;
    }
    c->req_us = 0;
    c->status = 0;
}

void metrics_refused(fw_loop *loop, int status)
{
    static const int which[] = {400, 408, 413, 414, 431};
    if (status < 400 || status == 500)
        return;                 /* the server's own failure, not a refusal */
    int i = 0;
    while (i < 5 && which[i] != status)
        i++;
    loop->m.refused[i]++;
}
