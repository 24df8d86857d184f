/** A background thread that works in rounds: one round, then sleep for as long as the round
 *  asks or until kicked. The billing canceller and the Apple token revoker work a durable queue
 *  that lives in the database (a crash loses nothing; the thread only decides when to look
 *  again); the systemd watchdog probes the server and pings. */
#ifndef INKLET_BGJOB_H
#define INKLET_BGJOB_H
#include <stdbool.h>

/** One round of work; returns how many milliseconds to sleep before the next round (at least
 *  1). */
typedef long (*ink_bgjob_round_fn)(void);

struct ink_bgjob;

/** Starts the thread; NULL when it cannot be created. */
struct ink_bgjob *ink_bgjob_start(const char *name, ink_bgjob_round_fn round);
/** Ends the sleep at once (new work was queued). Never waits. NULL is ignored. */
void ink_bgjob_kick(struct ink_bgjob *j);
/** Lets the current round finish, then joins and frees the thread. NULL is ignored. */
void ink_bgjob_stop(struct ink_bgjob *j);

#endif
