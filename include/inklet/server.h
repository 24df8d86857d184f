/** The HTTP server on libmicrohttpd: epoll with a thread pool, per-request contexts, the one
 *  place where results become HTTP responses, and graceful draining. */
#ifndef INKLET_SERVER_H
#define INKLET_SERVER_H
#include <stdbool.h>

/** Starts the worker lanes (DB_POOL_SIZE request workers; HASH_CONCURRENCY + 1 hashing workers
 *  at nice 10) and listens per ink_app.cfg. */
bool ink_server_start(void);
/** Starts draining: /health turns 503, every response closes its connection, and in-flight
 *  requests get up to `grace_seconds` to finish. Requests that still arrive are served. */
void ink_server_drain(unsigned grace_seconds);
/** Lets the worker lanes finish what is queued, then stops the HTTP threads. */
void ink_server_stop(void);
/** Jobs waiting for a worker in each lane (metrics). */
void ink_server_queue_stats(unsigned *requests, unsigned *hashing, unsigned *upstream);

/** The watchdog's liveness probe: a GET /health over a new loopback connection to the listening
 *  socket, true when any HTTP status line comes back within `timeout_ms` (503 while draining
 *  counts: the server is alive). It fails when the HTTP threads are wedged or no connection can
 *  be accepted (HTTP_MAX_CONNECTIONS reached). */
bool ink_server_probe(unsigned timeout_ms);

#endif
