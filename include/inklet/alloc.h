/** Allocation wrappers that abort on out-of-memory, so callers need no NULL checks. */
#ifndef INKLET_ALLOC_H
#define INKLET_ALLOC_H
#include <stddef.h>

void *ink_malloc(size_t n);
void *ink_calloc(size_t count, size_t n);
void *ink_realloc(void *p, size_t n);
char *ink_strdup(const char *s);
char *ink_strndup(const char *s, size_t n);
/** printf into a new string; caller frees. */
char *ink_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
