/** systemd's notify protocol without libsystemd: READY/STOPPING datagrams to $NOTIFY_SOCKET and
 *  the service watchdog. When systemd sets WATCHDOG_USEC (WatchdogSec= in the unit) for this
 *  process, a thread asks a liveness probe every half interval and sends WATCHDOG=1 only when
 *  the probe answers; a wedged server therefore stops the pings and systemd restarts it. */
#ifndef INKLET_SDNOTIFY_H
#define INKLET_SDNOTIFY_H
#include <stdbool.h>

/** Sends one state line ("READY=1", "STOPPING=1", ...); a no-op without $NOTIFY_SOCKET. */
void ink_sd_notify(const char *state);

/** Answers true when the service is alive; must return within `timeout_ms`. */
typedef bool (*ink_sd_probe_fn)(unsigned timeout_ms);

/** Starts the watchdog thread when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this
 *  process). Returns false only when the variables are malformed or the thread cannot start. */
bool ink_sd_watchdog_start(ink_sd_probe_fn probe);
/** Stops the thread (no more pings); a no-op when it was never started. */
void ink_sd_watchdog_stop(void);

#endif
