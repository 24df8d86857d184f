/** The deadline of the work a thread does for one request, in monotonic milliseconds (0: none).
 *
 *  The HTTP server sets it before a handler runs on a worker (the moment the request was ready
 *  plus DB_TIMEOUT) and the database pool bounds every wait by it: pool wait, connect and
 *  statements together. Password hashing pauses the clock, since it is not a wait on a
 *  dependency and has its own bound. Thread-local; no locking. */
#ifndef INKLET_DEADLINE_H
#define INKLET_DEADLINE_H
#include <stdint.h>

void ink_deadline_set(int64_t mono_ms);
int64_t ink_deadline_get(void);
/** Stops the clock; returns the token for ink_deadline_resume(). */
int64_t ink_deadline_pause(void);
/** Moves the deadline later by the time since the matching pause. */
void ink_deadline_resume(int64_t token);

#endif
