/** Numbered SQL migrations (migrations/NNNN_name.sql, embedded at build time). */
#ifndef INKLET_MIGRATE_H
#define INKLET_MIGRATE_H
#include <stdbool.h>
#include <stddef.h>

struct ink_migration {
    const char *name; /* file name without .sql, e.g. "0001_init" */
    const char *sql;
};

extern const struct ink_migration ink_migrations[];
extern const size_t ink_migrations_count;

/** Applies every pending migration in one transaction under an advisory lock, so concurrent
 *  runs (several instances starting at once) are safe: the second waits, then finds nothing to
 *  do. Prints what it applied. Returns false on any error (nothing is applied then). It never
 *  waits forever: connecting takes at most connect_timeout_s, any one lock (the advisory lock, or
 *  a table a migration alters) at most lock_timeout_s, and a peer that stops answering is found
 *  by TCP keepalives. */
bool ink_migrate_run(const char *conninfo, unsigned connect_timeout_s, unsigned lock_timeout_s);

#endif
