/** The HTTP server on libmicrohttpd: epoll with a thread pool, per-request contexts, the one
 *  place where results become HTTP responses, and graceful draining. */
#ifndef INKLET_SERVER_H
#define INKLET_SERVER_H
#include <stdbool.h>

/** Starts listening per ink_app.cfg. */
bool ink_server_start(void);
/** Starts draining: /health turns 503, the listener closes, and in-flight requests get up to
 *  `grace_seconds` to finish. The server keeps serving the connections it has. */
void ink_server_drain(unsigned grace_seconds);
/** Stops the HTTP threads. Call after the worker pool has stopped: a worker resumes its
 *  suspended connection when it finishes, which needs a live daemon. */
void ink_server_stop(void);

#endif
