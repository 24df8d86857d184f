/** The mail tests' SMTP server: tests/fakes/smtp_sink.py (tests/fakes/README.md), a real SMTP
 *  server that keeps every message it accepts and answers with faults on demand, started and
 *  read through its control API.
 *
 *  Memory: the json_t results are new references the caller releases with json_decref; strings
 *  are malloc'd and the caller frees them. The sink process is the caller's: stop it with
 *  itest_smtp_stop() (a test's teardown does not). */
#ifndef INKLET_ITEST_MAIL_H
#define INKLET_ITEST_MAIL_H
#include "harness.h"

#include <stdbool.h>
#include <stddef.h>

/** A running sink. `ctl` is its control API (itest_fake_call works on it). */
struct itest_smtp {
    struct itest_fake ctl;
    unsigned smtp_port;
    unsigned smtps_port; /* 0 unless started with --smtps-port */
    char ca_file[256];   /* the throwaway CA: inkletd's SMTP_CA_FILE */
    char listen[64];     /* the address the SMTP listeners are on */
};

/** "SMTP_TIMEOUT=<s>" for the daemons of mail tests: 3 s, scaled for a slow wrapper (a TLS
 *  handshake under valgrind takes seconds). Set by itest_smtp_start. */
extern char itest_smtp_timeout_kv[32];

/** Starts the sink (INKLET_ITEST_SMTP_SINK) with `extra_args` (NULL-terminated, may be NULL;
 *  e.g. {"--smtps-port", "0", "--user", "u", "--password", "p", NULL}) and reads its ports
 *  from /_fake/info. The CA goes under the run's temp dir (itest.tmpdir) unless `extra_args`
 *  has its own --cert-dir. No cmocka assertions (usable in group set-ups): false, with a message on
 *  stderr, when the variable is unset or the sink does not come up. */
bool itest_smtp_start(struct itest_smtp *s, const char *const extra_args[]);
/** SIGTERM and reap; returns the exit status (0 expected). */
int itest_smtp_stop(struct itest_smtp *s);
/** "smtp://<listen>:<smtp port>", or with `tls` "smtps://<listen>:<smtps port>" (fails the test
 *  when the sink has no smtps listener), as inkletd's SMTP_URL. */
void itest_smtp_url(const struct itest_smtp *s, bool tls, char *out, size_t n);

/** Every message the sink holds, oldest first: the array of GET /_fake/messages (new
 *  reference). */
json_t *itest_smtp_messages(const struct itest_smtp *s);
/** Forgets every message (DELETE /_fake/messages). */
void itest_smtp_clear(const struct itest_smtp *s);
/** Polls until the sink holds at least `n` messages, up to `timeout_ms` (scaled); fails the
 *  test (printing the sink's session log) otherwise. Returns all messages (new reference). */
json_t *itest_smtp_wait(const struct itest_smtp *s, size_t n, unsigned timeout_ms);
/** Like itest_smtp_wait, counting only the messages whose rcptTo holds `rcpt` (compared without
 *  regard to case); returns just those (new reference). */
json_t *itest_smtp_wait_to(const struct itest_smtp *s, const char *rcpt, size_t n,
                           unsigned timeout_ms);
/** POST /_fake/mode: `mode` (accept, down, tempfail, permfail, stall, drop) at `stage` (NULL for
 *  accept and down), for the next `count` sessions (0: until changed). Asserts the answer. */
void itest_smtp_mode(const struct itest_smtp *s, const char *mode, const char *stage, int count);

/** The token of the "<base>/<path>?token=<token>" link in `msg`'s text part (`path` like
 *  "/reset-password"); asserts the link is absolute (http/https), appears in the text part, and
 *  the same link (with "&" as "&amp;" or not) is in the HTML part. Returns it (malloc'd). */
char *itest_mail_token(const json_t *msg, const char *path);

#endif
