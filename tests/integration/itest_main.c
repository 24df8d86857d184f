/* inklet-itest: migrates the fresh database (twice at once, as several instances would), then
 * runs every group against the real inkletd. Exit status is non-zero if anything failed.
 * INKLET_ITEST_FILTER=<glob> runs only the matching tests. */
#include "harness.h"
#include "itest_devices.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* The device groups live in their own file, which may not be part of every build yet. */
extern int itest_group_devices(void) __attribute__((weak));
/* Groups added by the hardening work, each in its own file. */
extern int itest_group_framing(void) __attribute__((weak));
extern int itest_group_broker_link(void) __attribute__((weak));
extern int itest_group_hardening(void) __attribute__((weak));
extern int itest_group_billing(void) __attribute__((weak));
extern int itest_group_oauth(void) __attribute__((weak));
/* Recovery by email against the local SMTP sink (issue 11). */
extern int itest_group_mail(void) __attribute__((weak));
/* The mail sender's TLS policy, each case against its own relay (issue 11). */
extern int itest_group_mail_tls(void) __attribute__((weak));
/* Two instances on one database and one broker (issue 10). */
extern int itest_group_fleet(void) __attribute__((weak));
/* Issue 10's fault runs: they stop PostgreSQL and the broker, so they run at the end. */
extern int itest_group_faults(void) __attribute__((weak));

static bool migrate_twice_at_once(void)
{
    char out[2][160];
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof out[i], "%s/migrate-%d.log", itest.tmpdir, i);
        pid[i] = itest_spawn((const char *const[]){"migrate", NULL}, NULL, out[i], out[i]);
    }
    bool ok = true;
    for (int i = 0; i < 2; i++) {
        itest_migrate_status[i] = pid[i] < 0 ? -1 : itest_wait_pid(pid[i], 60000);
        if (itest_migrate_status[i] != 0) {
            fprintf(stderr, "inklet-itest: `inkletd migrate` #%d exited with %d; see %s\n", i,
                    itest_migrate_status[i], out[i]);
            ok = false;
        }
    }
    return ok;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!itest_init())
        return 2;
    if (!migrate_twice_at_once()) {
        /* the tests need a schema; one successful run is enough to go on and report */
        if (itest_migrate_status[0] != 0 && itest_migrate_status[1] != 0) {
            fprintf(stderr, "inklet-itest: no migration succeeded; giving up\n");
            itest_finish(true);
            return 1;
        }
    }
    const char *filter = getenv("INKLET_ITEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);

    /* in this order; a weak group not linked into this build is NULL. Each group's wall time
     * goes to the log: it shows where a slow run (valgrind) spends it. */
    static const struct {
        const char *name;
        int (*run)(void);
    } groups[] = {
        {"ops", itest_group_ops},
        {"auth", itest_group_auth},
        {"sessions", itest_group_sessions},
        {"http", itest_group_http},
        {"throttle", itest_group_throttle},
        {"clientip", itest_group_clientip},
        {"framing", itest_group_framing},
        {"hardening", itest_group_hardening},
        {"devices", itest_group_devices},
        {"mqtts", itest_group_mqtts},
        {"billing", itest_group_billing},
        {"oauth", itest_group_oauth},
        {"mail", itest_group_mail},
        {"mail_tls", itest_group_mail_tls},
        {"broker_link", itest_group_broker_link},
        {"fleet", itest_group_fleet},
        {"faults", itest_group_faults}, /* restarts PostgreSQL and the broker */
        {"outage", itest_group_outage}, /* last: it stops and restarts PostgreSQL */
    };
    int64_t t0 = itest_now_ms();
    int failed = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (!groups[i].run)
            continue;
        int64_t g0 = itest_now_ms();
        failed += groups[i].run();
        fprintf(stderr, "inklet-itest: group %s took %.1f s\n", groups[i].name,
                (double)(itest_now_ms() - g0) / 1000.0);
    }
    failed += itest_fixture_failures;
    fprintf(stderr, "inklet-itest: %d failure(s) in %.1f s\n", failed,
            (double)(itest_now_ms() - t0) / 1000.0);
    itest_finish(failed != 0);
    return failed ? 1 : 0;
}
