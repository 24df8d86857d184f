/* A strict parser of the Prometheus text exposition format (0.0.4), for tests of /metrics.
 *
 * Beyond the format's grammar it enforces what we promise operators: every family has exactly
 * one HELP and one TYPE line before its samples and its samples are contiguous; no duplicate
 * series; label names valid and unique, values escaped; no timestamps, no blank lines, no other
 * comments; counters end in _total and are finite and >= 0; histograms have strictly increasing
 * `le` bounds ending in +Inf, cumulative integer counts, and _count equal to the +Inf bucket;
 * histogram names end in a base unit (_seconds, _bytes); nothing is named in milliseconds; every
 * name starts with inklet_ or process_. */
#ifndef INKLET_TEST_PROMTEXT_H
#define INKLET_TEST_PROMTEXT_H
#include <stdbool.h>
#include <stddef.h>

struct prom_page {
    size_t families, samples;
    char **family_names; /* families entries, in page order */
};

/* Parses `text`; on failure writes "line N: why" into err and returns false. */
bool prom_parse(const char *text, struct prom_page *page, char *err, size_t err_len);
bool prom_has_family(const struct prom_page *page, const char *name);
void prom_page_free(struct prom_page *page);

#endif
