/** A fixed pool of worker threads with a bounded FIFO queue. The HTTP server runs two: one for
 *  requests that wait on the database (normal priority) and one for password hashing (lowered
 *  priority), so the HTTP threads themselves never wait on anything. */
#ifndef INKLET_WORKQ_H
#define INKLET_WORKQ_H
#include <stdbool.h>

struct ink_workq;

/** Starts `threads` workers with a queue of at most `capacity` jobs. Workers run at nice
 *  +nice_inc (0: unchanged). NULL when a thread cannot be started. */
struct ink_workq *ink_workq_start(unsigned threads, unsigned capacity, int nice_inc);
/** Queues fn(arg). Returns false (nothing queued) when the queue is full or stopping. */
bool ink_workq_submit(struct ink_workq *q, void (*fn)(void *), void *arg);
/** For a job that can take its queued siblings along: removes up to `max` jobs of `fn` from the
 *  head of the queue, without waiting, and stores their arguments in `args`; returns how many.
 *  The caller runs them as part of its own job. */
unsigned ink_workq_take(struct ink_workq *q, void (*fn)(void *), void **args, unsigned max);
/** Jobs queued but not yet started. */
unsigned ink_workq_pending(struct ink_workq *q);
/** Finishes the queued jobs, joins the workers and frees `q` (NULL is a no-op). */
void ink_workq_stop(struct ink_workq *q);

#endif
