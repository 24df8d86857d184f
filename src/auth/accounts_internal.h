/* What the account service's files share: the user row's columns and its JSON. */
#ifndef INKLET_ACCOUNTS_INTERNAL_H
#define INKLET_ACCOUNTS_INTERNAL_H
#include "inklet/db.h"

#include <jansson.h>

/* The first five columns of every query that answers with a user object. */
#define USER_COLUMNS                                                                               \
    "id, email, username, extract(epoch FROM created_at)::bigint,"                                 \
    " extract(epoch FROM updated_at)::bigint"

/** The contract's user object from the USER_COLUMNS at the start of `row` (new reference). */
json_t *ink_user_json(const PGresult *r, int row);

/** In the caller's transaction: a new verification token for the account's current address and
 *  the mail carrying it (nothing without SMTP_URL). The caller kicks the outbox after COMMIT. */
enum ink_status ink_account_queue_verification(struct ink_db *db, const char *user_id);

#endif
