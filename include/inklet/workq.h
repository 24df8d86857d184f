/** A fixed pool of worker threads for slow request work (password hashing, upstream calls), so
 *  the HTTP threads keep serving cheap routes. */
#ifndef INKLET_WORKQ_H
#define INKLET_WORKQ_H
#include <stdbool.h>

/** Starts `threads` workers with a queue of at most `capacity` jobs. Workers run at a lower
 *  scheduling priority (nice +nice_inc) so they never starve the HTTP threads. */
bool ink_workq_start(unsigned threads, unsigned capacity, int nice_inc);
/** Queues fn(arg). Returns false (nothing queued) when the queue is full or stopped. */
bool ink_workq_submit(void (*fn)(void *), void *arg);
/** Jobs queued but not yet started. */
unsigned ink_workq_pending(void);
/** Finishes queued jobs, then joins the workers. */
void ink_workq_stop(void);

#endif
