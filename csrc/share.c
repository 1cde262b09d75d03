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
 *   that holds more connections than another leaves the connection to it
 *   (share_leave_to_other): it stops watching the listeners for
 *   FW_SHARE_PAUSE_MS, and takes no more of a burst.  The listeners are
 *   level-triggered and the other worker watches them, so what is left
 *   pending is taken by it, or by this one once the pause is over: a
 *   slot that looks alive but is not (a worker killed and not yet reaped)
 *   delays a client, it never strands one.  Two workers cannot leave it to
 *   each other for longer than that: a paused worker does not count as
 *   one that takes connections.
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

/* 1: another worker watching the same listeners holds fewer connections
 * (by more than 1/32 of this one's, so that two even workers do not defer
 * to each other) and takes them: it sleeps in epoll_wait, and the new
 * connection woke it too, or its loop turned within FW_PEER_FRESH_MS and
 * is not inside an app call now, so it will be back for it soon.  An
 * inline worker in the middle of a round of calls is not waited for: the
 * round may take seconds under overload, while the connection would wait
 * in the backlog. */
int share_leave_to_other(const fw_loop *loop)
{
    if (loop->npeers == 0 || loop->cfg.shared_listeners != 1 || loop->stopping)
        return 0;
    int mine = loop->nconns;
    int slack = mine / 32;
    int64_t now = loop_clock_ms();
    for (int i = 0; i < loop->npeers; i++) {
        const fw_beat *b = &loop->peers[i];
        if (b == loop->beat || !takes(b) ||
            __atomic_load_n(&b->conns, __ATOMIC_RELAXED) + slack >= mine)
            continue;
        if (__atomic_load_n(&b->waiting, __ATOMIC_RELAXED) ||
            (__atomic_load_n(&b->call_ms, __ATOMIC_RELAXED) == 0 &&
             now - __atomic_load_n(&b->turn_ms, __ATOMIC_RELAXED) < FW_PEER_FRESH_MS))
            return 1;
    }
    return 0;
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
    if (live == 0 || loop->stopping || mine < fewest + 2)
        return;
    total += mine;
    live++;
    int share = (total + live - 1) / live;
    loop->shed = mine > share ? mine - share : 0;
}
