/* The /metrics page: rendered in full whatever a value's width, and valid by a strict parser of
 * the Prometheus text format (tests/support/promtext.c) — which itself must refuse what breaks
 * the format or our naming rules, or the check above would prove nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/http.h"
#include "inklet/ingest.h"
#include "inklet/metrics.h"
#include "promtext.h"

#include <stdio.h>
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
    assert_non_null(strstr(text, "inklet_http_request_duration_seconds_bucket{route=\"unmatched\","
                                 "le=\"0.001\"} 123457\n"));
    free(text);
}

static void page_passes_the_strict_parser_with_every_route_observed(void **state)
{
    (void)state;
    for (size_t r = 0; r < ink_routes_count; r++)
        for (unsigned ms = 0; ms < 20000; ms += 997)
            ink_metrics_observe_request(&ink_routes[r], 200 + (ms % 4) * 100, (double)ms);
    char *text = ink_metrics_render();
    struct prom_page page;
    char err[256];
    bool ok = prom_parse(text, &page, err, sizeof err);
    if (!ok)
        fprintf(stderr, "%s\n", err);
    assert_true(ok);
    /* contract §1 and the operator's list (docs/operations.md) */
    static const char *const required[] = {"inklet_http_requests_total",
                                           "inklet_http_request_duration_seconds",
                                           "inklet_db_pool_in_use",
                                           "inklet_db_pool_waiting",
                                           "inklet_db_timeouts_total",
                                           "inklet_password_hash_waiting",
                                           "inklet_broker_connected",
                                           "inklet_mqtt_messages_received_total",
                                           "inklet_mqtt_messages_published_total",
                                           "inklet_billing_webhook_events_total",
                                           "inklet_stripe_requests_total",
                                           "inklet_stripe_request_duration_seconds",
                                           "inklet_signins_total",
                                           "inklet_oauth_jwks_fetches_total",
                                           "inklet_commands_total",
                                           "inklet_commands_redelivered_total",
                                           "inklet_command_delivery_seconds",
                                           "process_resident_memory_bytes",
                                           "process_open_fds"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        if (!prom_has_family(&page, required[i]))
            fprintf(stderr, "missing %s\n", required[i]);
        assert_true(prom_has_family(&page, required[i]));
    }
    /* every route has its histogram series */
    char want[256];
    snprintf(want, sizeof want,
             "inklet_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} ",
             ink_routes[ink_routes_count - 1].method, ink_routes[ink_routes_count - 1].pattern);
    assert_non_null(strstr(text, want));
    prom_page_free(&page);
    free(text);
}

#define HC "# HELP inklet_x_seconds h\n# TYPE inklet_x_seconds histogram\n"
#define CT "# HELP inklet_a_total h\n# TYPE inklet_a_total counter\n"

static void parser_accepts_a_valid_page(void **state)
{
    (void)state;
    struct prom_page page;
    char err[256] = "";
    bool ok = prom_parse(CT "inklet_a_total{k=\"v\\\"q\\\\\\n\"} 3\n" HC
                            "inklet_x_seconds_bucket{le=\"0.5\"} 1\n"
                            "inklet_x_seconds_bucket{le=\"+Inf\"} 2\n"
                            "inklet_x_seconds_sum 1.5\ninklet_x_seconds_count 2\n",
                         &page, err, sizeof err);
    if (!ok)
        fprintf(stderr, "%s\n", err);
    assert_true(ok);
    assert_int_equal(page.families, 2);
    assert_int_equal(page.samples, 5);
    prom_page_free(&page);
}

static void parser_refuses_what_breaks_the_format_or_the_naming(void **state)
{
    (void)state;
    static const struct {
        const char *why, *text;
    } bad[] = {
        {"no newline at the end", CT "inklet_a_total 1"},
        {"blank line", CT "\ninklet_a_total 1\n"},
        {"sample before TYPE", "inklet_a_total 1\n"},
        {"no HELP", "# TYPE inklet_a_total counter\ninklet_a_total 1\n"},
        {"counter without _total", "# HELP inklet_a h\n# TYPE inklet_a counter\ninklet_a 1\n"},
        {"gauge with _total", "# HELP inklet_a_total h\n# TYPE inklet_a_total gauge\n"
                              "inklet_a_total 1\n"},
        {"milliseconds", "# HELP inklet_d_ms h\n# TYPE inklet_d_ms gauge\ninklet_d_ms 1\n"},
        {"histogram not in a base unit",
         "# HELP inklet_x h\n# TYPE inklet_x histogram\ninklet_x_bucket{le=\"+Inf\"} 0\n"
         "inklet_x_sum 0\ninklet_x_count 0\n"},
        {"duplicate series", CT "inklet_a_total 1\ninklet_a_total 2\n"},
        {"duplicate label", CT "inklet_a_total{k=\"1\",k=\"2\"} 1\n"},
        {"bad escape", CT "inklet_a_total{k=\"\\t\"} 1\n"},
        {"trailing comma", CT "inklet_a_total{k=\"1\",} 1\n"},
        {"timestamp", CT "inklet_a_total 1 1700000000000\n"},
        {"negative counter", CT "inklet_a_total -1\n"},
        {"not a number", CT "inklet_a_total 0x10\n"},
        {"foreign prefix", "# HELP go_a_total h\n# TYPE go_a_total counter\ngo_a_total 1\n"},
        {"interleaved families",
         CT "inklet_a_total 1\n# HELP inklet_b h\n# TYPE inklet_b gauge\ninklet_b 1\n"
            "inklet_a_total{k=\"x\"} 1\n"},
        {"second TYPE", CT "# TYPE inklet_a_total counter\ninklet_a_total 1\n"},
        {"comment", CT "# just a note\ninklet_a_total 1\n"},
        {"buckets not cumulative", HC "inklet_x_seconds_bucket{le=\"0.5\"} 2\n"
                                      "inklet_x_seconds_bucket{le=\"+Inf\"} 1\n"
                                      "inklet_x_seconds_sum 1\ninklet_x_seconds_count 1\n"},
        {"le not increasing", HC "inklet_x_seconds_bucket{le=\"1\"} 0\n"
                                 "inklet_x_seconds_bucket{le=\"0.5\"} 0\n"
                                 "inklet_x_seconds_bucket{le=\"+Inf\"} 0\n"
                                 "inklet_x_seconds_sum 0\ninklet_x_seconds_count 0\n"},
        {"no +Inf", HC "inklet_x_seconds_bucket{le=\"1\"} 0\ninklet_x_seconds_sum 0\n"
                       "inklet_x_seconds_count 0\n"},
        {"count differs", HC "inklet_x_seconds_bucket{le=\"+Inf\"} 3\ninklet_x_seconds_sum 0\n"
                             "inklet_x_seconds_count 2\n"},
        {"no _sum", HC "inklet_x_seconds_bucket{le=\"+Inf\"} 0\ninklet_x_seconds_count 0\n"},
        {"CR", CT "inklet_a_total 1\r\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct prom_page page;
        char err[256] = "";
        bool ok = prom_parse(bad[i].text, &page, err, sizeof err);
        if (ok) {
            fprintf(stderr, "accepted: %s\n", bad[i].why);
            prom_page_free(&page);
        }
        assert_false(ok);
        assert_true(err[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counters_render_in_full),
        cmocka_unit_test(page_passes_the_strict_parser_with_every_route_observed),
        cmocka_unit_test(parser_accepts_a_valid_page),
        cmocka_unit_test(parser_refuses_what_breaks_the_format_or_the_naming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
