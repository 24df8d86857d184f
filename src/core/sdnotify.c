#include "inklet/sdnotify.h"

#include "inklet/bgjob.h"
#include "inklet/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void ink_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path)
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        ink_warn("could not notify systemd (%s)", strerror(errno));
    close(fd);
}

/* ---- the watchdog ------------------------------------------------------------------------- */

static struct {
    struct ink_bgjob *job;
    uint64_t interval_us;
    ink_sd_probe_fn probe;
    bool failing;
} wd;

/* Parses a decimal environment value; false when present but not a positive number. */
static bool env_u64(const char *name, uint64_t *out)
{
    const char *s = getenv(name);
    *out = 0;
    if (!s || !*s)
        return true;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return v > 0;
}

/* systemd's advice: ping at half the interval; the probe gets a quarter, so a slow answer still
 * leaves time for the ping before the deadline */
static long watchdog_round(void)
{
    unsigned probe_ms = (unsigned)(wd.interval_us / 4000 ? wd.interval_us / 4000 : 1);
    bool alive = wd.probe(probe_ms);
    if (alive)
        ink_sd_notify("WATCHDOG=1");
    if (alive == wd.failing) { /* log transitions only, not every period */
        if (alive)
            ink_info("watchdog: the server answers its probe again; pinging systemd");
        else
            ink_error("watchdog: the server did not answer its probe within %u ms; systemd is "
                      "no longer pinged and restarts the service after WatchdogSec",
                      probe_ms);
        wd.failing = !alive;
    }
    return (long)(wd.interval_us / 2000);
}

bool ink_sd_watchdog_start(ink_sd_probe_fn probe)
{
    uint64_t usec, pid;
    if (!env_u64("WATCHDOG_USEC", &usec) || !env_u64("WATCHDOG_PID", &pid)) {
        ink_error("WATCHDOG_USEC/WATCHDOG_PID from systemd are not positive numbers");
        return false;
    }
    if (!usec)
        return true; /* no watchdog asked for */
    if (pid && pid != (uint64_t)getpid())
        return true; /* meant for another process (e.g. ExecStartPre) */
    if (usec < 20000 || usec > (uint64_t)LONG_MAX) {
        ink_error("WATCHDOG_USEC=%" PRIu64 " is not between 20 ms and LONG_MAX; refusing to start",
                  usec);
        return false;
    }
    wd.interval_us = usec;
    wd.probe = probe;
    wd.failing = false;
    if (!(wd.job = ink_bgjob_start("watchdog", watchdog_round)))
        return false;
    ink_info("watchdog: pinging systemd every %" PRIu64 " ms while the server answers",
             usec / 2000);
    return true;
}

void ink_sd_watchdog_stop(void)
{
    ink_bgjob_stop(wd.job);
    wd.job = NULL;
}
