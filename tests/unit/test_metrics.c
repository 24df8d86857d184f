/* The Prometheus rendering never truncates a value, whatever its width. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/ingest.h"
#include "inklet/metrics.h"

#include <stdlib.h>
#include <string.h>

static void counters_render_in_full(void **state)
{
    (void)state;
    for (int i = 0; i < 123457; i++)
        ink_metrics_observe_request(NULL, 404, 0.5);
    /* no ingest workers run here: every message is dropped, and counted */
    for (int i = 0; i < 98765; i++)
        assert_false(ink_ingest_submit("thing", INK_UP_HEARTBEAT, "{}", 2));
    char *text = ink_metrics_render();
    assert_non_null(strstr(text, "\ninklet_mqtt_messages_dropped_total 98765\n"));
    assert_non_null(
        strstr(text, "inklet_http_requests_total{route=\"unmatched\",status=\"4x\"} 123457\n"));
    assert_non_null(strstr(text, "inklet_http_request_duration_ms_bucket{le=\"1\"} 123457\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counters_render_in_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
