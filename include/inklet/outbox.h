/** The mail outbox (contract §2.2, docs/email.md): a mail is a row in mail_outbox, written in the
 *  transaction of the change that causes it, and a sender thread delivers it over SMTP — with
 *  back-off while the SMTP server is away, once even with several instances (rows are claimed
 *  with FOR UPDATE SKIP LOCKED and leased), and nothing lost across a restart. */
#ifndef INKLET_OUTBOX_H
#define INKLET_OUTBOX_H
#include "inklet/db.h"
#include "inklet/mail.h"

#include <stdbool.h>

/** True when SMTP_URL is set: mail is queued and sent. Otherwise ink_outbox_queue queues
 *  nothing and the mail routes answer 503 mail_not_configured. */
bool ink_mail_configured(void);

/** Queues `kind` to the current address of `user_id` (NULL: queues nothing, in one round trip
 *  all the same, so callers can keep their timing independent of whether an account exists).
 *  `token` (the link's raw token) and `provider` (a display name) may be NULL; `lifetime_s` is
 *  how long the mail is worth sending (a link's lifetime), 0 for the default 24 h. Runs in the
 *  caller's transaction; call ink_outbox_kick() after COMMIT. *queued (may be NULL) says whether
 *  a row was written. */
enum ink_status ink_outbox_queue(struct ink_db *db, enum ink_mail_kind kind, const char *user_id,
                                 const char *token, const char *provider, unsigned lifetime_s,
                                 bool *queued);
/** A notice (no token, no provider, the default lifetime) to `to` rather than the account's
 *  current address, e.g. the address an account had before the transaction changed it. */
enum ink_status ink_outbox_queue_to(struct ink_db *db, enum ink_mail_kind kind, const char *user_id,
                                    const char *to);
/** Wakes the sender (after the transaction that queued mail has committed). Never waits. */
void ink_outbox_kick(void);

/** Starts the sender thread when mail is configured (true without doing anything otherwise). */
bool ink_outbox_start(void);
/** Finishes the mail being sent (bounded by SMTP_TIMEOUT) and stops the thread. */
void ink_outbox_stop(void);

/** Per-address mail throttle (at most 3 mail requests an hour to one address, whatever the IP),
 *  shared by every instance: counts one request in the caller's transaction. 0 when allowed,
 *  else the seconds until the window ends (the request must send nothing). Counted for
 *  addresses without an account too, so a refusal says nothing about accounts. */
enum ink_status ink_mail_throttle_take(struct ink_db *db, const char *address,
                                       unsigned *retry_after);

/** Deletes finished rows older than 30 days (counted in *count) and ended throttle windows
 *  (the main thread's housekeeping). */
enum ink_status ink_outbox_prune(long long *count);

struct ink_outbox_stats {
    unsigned long long queued, sent, retried, given_up;
};
/** For /metrics (this instance's counts since start). */
void ink_outbox_stats(struct ink_outbox_stats *out);

#endif
