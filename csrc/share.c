/*
 * share.c - workers that share listening sockets share the connections.
 *
 * Each worker's loop writes, before it sleeps, how many connections it has
 * and whether it watches the listeners into its slot of the master's
 * shared page (fw_beat); it reads the other slots, without a syscall, for
 * two decisions:
 *
 * - Accepting.  Shared listeners are watched without EPOLLEXCLUSIVE, so a
 *   new connection wakes every worker sleeping in epoll_wait.  A worker
 *   that holds more connections than one of those sleepers leaves the
 *   connection to it (share_defer_accept): the sleeper was woken too and
 *   takes it within microseconds.  The listener stays level-triggered, so
 *   a connection nobody took is reported again, and after FW_DEFER_MAX_US
 *   of deferring the worker takes it itself: a slot that looks asleep but
 *   is not (a worker killed and not yet reaped) delays a client, it never
 *   strands one.
 * - Handing back.  Keep-alive connections stay where they first landed:
 *   after a worker was replaced, or when a pool of them was opened while
 *   one worker slept and the other did not, one worker can carry them all
 *   for their whole life.  A worker above its share closes that many
 *   connections after a response (`Connection: close`, share_hand_back);
 *   their clients reconnect, and the connection lands on a worker below
 *   its share, which is asleep and so woken for it.
 *
 * Everything here runs on the loop's thread (under the loop's mutex in
 * threaded mode); the slots of other workers are only read.  A worker
 * without peers (one process, or gunicorn's arbiter) skips it all.
 */
#define _GNU_SOURCE
#include <sched.h>

#include "core.h"

void fw_loop_peers(fw_loop *loop, fw_beat *slots, int count)
{
    loop->peers = slots;
    loop->npeers = slots != NULL && loop->beat != NULL ? count : 0;
}

static int accepting(const fw_loop *loop)
{
    return loop->nlisteners > 0 && !loop->accept_paused && !loop->stopping &&
           loop->running;
}

/* The slot is of a worker that takes connections now. */
static int takes(const fw_beat *b)
{
    return __atomic_load_n(&b->state, __ATOMIC_RELAXED) == FW_BEAT_SERVING &&
           __atomic_load_n(&b->accepting, __ATOMIC_RELAXED);
}

void share_publish(fw_loop *loop)
{
    fw_beat *b = loop->beat;
    if (b == NULL)
        return;
    __atomic_store_n(&b->conns, loop->nconns, __ATOMIC_RELAXED);
    __atomic_store_n(&b->accepting, accepting(loop), __ATOMIC_RELAXED);
}

/* 1: leave the connection pending on `lis` to a less loaded worker. */
int share_defer_accept(fw_loop *loop)
{
    if (loop->npeers == 0 || loop->cfg.shared_listeners != 1) {
        return 0;
    }
    int mine = loop->nconns;
    int other = 0;
    for (int i = 0; i < loop->npeers && !other; i++) {
        const fw_beat *b = &loop->peers[i];
        other = b != loop->beat && takes(b) &&
                __atomic_load_n(&b->waiting, __ATOMIC_RELAXED) &&
                __atomic_load_n(&b->conns, __ATOMIC_RELAXED) < mine;
    }
    int64_t now = loop_clock_us();
    if (!other || (loop->defer_since_us &&
                   now - loop->defer_since_us >= FW_DEFER_MAX_US)) {
        loop->defer_since_us = 0;
        return 0;
    }
    if (loop->defer_since_us == 0)
        loop->defer_since_us = now;
    /* The sleeper may share this CPU: let it run rather than spin. */
    sched_yield();
    return 1;
}

/* Every FW_SHARE_EVERY_MS: how many connections to hand back, the excess
 * over an even share, while some other worker holds at least two fewer
 * (one fewer is as even as the count allows). */
void share_update(fw_loop *loop)
{
    if (loop->npeers == 0 || loop->now - loop->share_checked < FW_SHARE_EVERY_MS)
        return;
    loop->share_checked = loop->now;
    int mine = loop->nconns, total = 0, live = 0, fewest = -1;
    for (int i = 0; i < loop->npeers; i++) {
        const fw_beat *b = &loop->peers[i];
        if (b == loop->beat || !takes(b))
            continue;
        int n = __atomic_load_n(&b->conns, __ATOMIC_RELAXED);
        total += n;
        live++;
        if (fewest < 0 || n < fewest)
            fewest = n;
    }
    loop->shed = 0;
    if (live == 0 || !accepting(loop) || mine < fewest + 2)
        return;
    total += mine;
    live++;
    int share = (total + live - 1) / live;
    loop->shed = mine > share ? mine - share : 0;
}

/* Close this connection after the response being started?  Only one
 * whose client has nothing more buffered here (a pipelined request would
 * be cut off), and only while the worker is above its share. */
int share_hand_back(fw_conn *c)
{
    fw_loop *loop = c->loop;
    if (loop->shed <= 0 || c->in.off != c->in.len || !(c->flags & C_KEEPALIVE))
        return 0;
    loop->shed--;
    loop->handed_back++;
    return 1;
}
