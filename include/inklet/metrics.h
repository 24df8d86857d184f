/** Process metrics exposed at /metrics in the Prometheus text format. */
#ifndef INKLET_METRICS_H
#define INKLET_METRICS_H
#include "inklet/http.h"

/** Counts one finished request (route may be NULL for unmatched paths). Lock-free. */
void ink_metrics_observe_request(const struct ink_route *route, unsigned status, double ms);
/** Renders every metric; returns a malloc'd string. */
char *ink_metrics_render(void);

#endif
