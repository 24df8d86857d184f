/** The HTTP server on libmicrohttpd: epoll with a thread pool, per-request contexts, the one
 *  place where results become HTTP responses, and graceful draining. */
#ifndef INKLET_SERVER_H
#define INKLET_SERVER_H
#include <stdbool.h>

/** Starts listening per ink_app.cfg. */
bool ink_server_start(void);
/** Stops accepting, gives in-flight requests up to `grace_seconds`, then stops the daemon. */
void ink_server_drain_and_stop(unsigned grace_seconds);
/** Requests currently being processed. */
unsigned ink_server_inflight(void);

#endif
