#include "inklet/metrics.h"

#include "inklet/alloc.h"
#include "inklet/billing.h"
#include "inklet/broker.h"
#include "inklet/buf.h"
#include "inklet/db.h"
#include "inklet/device_link.h"
#include "inklet/ingest.h"
#include "inklet/oauth.h"
#include "inklet/password.h"
#include "inklet/server.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 96
#define STATUS_CLASSES 6 /* 0 (no response), 1xx..5xx */
static const double BUCKETS_MS[] = {1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
#define NBUCKETS (sizeof BUCKETS_MS / sizeof *BUCKETS_MS)

static atomic_ullong requests[MAX_ROUTES + 1][STATUS_CLASSES];
static atomic_ullong latency[NBUCKETS + 1];
static atomic_ullong latency_sum_us;

void ink_metrics_observe_request(const struct ink_route *route, unsigned status, double ms)
{
    size_t r = route ? (size_t)(route - ink_routes) : MAX_ROUTES;
    if (r > MAX_ROUTES)
        r = MAX_ROUTES;
    unsigned cls = status / 100 < STATUS_CLASSES ? status / 100 : 0;
    atomic_fetch_add_explicit(&requests[r][cls], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKETS && ms > BUCKETS_MS[b])
        b++;
    atomic_fetch_add_explicit(&latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us, (unsigned long long)(ms * 1000.0),
                              memory_order_relaxed);
}

static void appendf(struct ink_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(struct ink_buf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof line) {
        ink_buf_append(b, line, (size_t)n);
        return;
    }
    /* longer than the stack buffer: format again into the heap, never truncate a value */
    char *big = ink_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ink_buf_append(b, big, (size_t)n);
    free(big);
}

char *ink_metrics_render(void)
{
    struct ink_buf b;
    ink_buf_init(&b, 1 << 20);
    appendf(&b, "# HELP inklet_http_requests_total Finished HTTP requests.\n"
                "# TYPE inklet_http_requests_total counter\n");
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        if (r < MAX_ROUTES && r >= ink_routes_count)
            continue;
        for (unsigned c = 0; c < STATUS_CLASSES; c++) {
            unsigned long long n = atomic_load(&requests[r][c]);
            if (!n)
                continue;
            if (r == MAX_ROUTES)
                appendf(&b, "inklet_http_requests_total{route=\"unmatched\",status=\"%ux\"} %llu\n",
                        c, n);
            else
                appendf(&b,
                        "inklet_http_requests_total{method=\"%s\",route=\"%s\",status=\"%ux\"} "
                        "%llu\n",
                        ink_routes[r].method, ink_routes[r].pattern, c, n);
        }
    }
    appendf(&b, "# HELP inklet_http_request_duration_ms Request latency.\n"
                "# TYPE inklet_http_request_duration_ms histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += atomic_load(&latency[i]);
        appendf(&b, "inklet_http_request_duration_ms_bucket{le=\"%g\"} %llu\n", BUCKETS_MS[i], cum);
    }
    cum += atomic_load(&latency[NBUCKETS]);
    appendf(&b, "inklet_http_request_duration_ms_bucket{le=\"+Inf\"} %llu\n", cum);
    appendf(&b, "inklet_http_request_duration_ms_sum %.3f\n",
            (double)atomic_load(&latency_sum_us) / 1000.0);
    appendf(&b, "inklet_http_request_duration_ms_count %llu\n", cum);
    struct ink_db_stats db;
    ink_db_pool_stats(&db);
    appendf(&b,
            "# TYPE inklet_db_pool_in_use gauge\ninklet_db_pool_in_use %u\n"
            "# TYPE inklet_db_pool_waiting gauge\ninklet_db_pool_waiting %u\n"
            "# TYPE inklet_db_pool_size gauge\ninklet_db_pool_size %u\n"
            "# HELP inklet_db_timeouts_total Database waits that reached their deadline.\n"
            "# TYPE inklet_db_timeouts_total counter\ninklet_db_timeouts_total %llu\n"
            "# TYPE inklet_db_ready gauge\ninklet_db_ready %d\n",
            db.in_use, db.waiting, db.size, db.timeouts, ink_db_ready() ? 1 : 0);
    unsigned q_requests, q_hashing, q_upstream;
    ink_server_queue_stats(&q_requests, &q_hashing, &q_upstream);
    appendf(&b,
            "# TYPE inklet_password_hash_waiting gauge\ninklet_password_hash_waiting %u\n"
            "# TYPE inklet_password_hashes_total counter\ninklet_password_hashes_total %llu\n"
            "# TYPE inklet_worker_queue_pending gauge\n"
            "inklet_worker_queue_pending{lane=\"requests\"} %u\n"
            "inklet_worker_queue_pending{lane=\"hashing\"} %u\n"
            "inklet_worker_queue_pending{lane=\"upstream\"} %u\n",
            ink_password_waiting(), ink_password_computed(), q_requests, q_hashing, q_upstream);
    struct ink_billing_stats bill;
    ink_billing_get_stats(&bill);
    appendf(&b,
            "# HELP inklet_billing_webhook_events_total Stripe webhook deliveries by outcome.\n"
            "# TYPE inklet_billing_webhook_events_total counter\n"
            "inklet_billing_webhook_events_total{result=\"applied\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"duplicate\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"ignored\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"rejected\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"failed\"} %llu\n"
            "# HELP inklet_stripe_requests_total Stripe API operations by outcome.\n"
            "# TYPE inklet_stripe_requests_total counter\n"
            "inklet_stripe_requests_total{result=\"ok\"} %llu\n"
            "inklet_stripe_requests_total{result=\"failed\"} %llu\n",
            bill.webhook_applied, bill.webhook_duplicate, bill.webhook_ignored,
            bill.webhook_rejected, bill.webhook_failed, bill.stripe_ok, bill.stripe_failed);
    struct ink_oauth_stats oa;
    ink_oauth_get_stats(&oa);
    appendf(
        &b,
        "# HELP inklet_oauth_signins_total Google/Apple sign-ins (browser and native) by outcome.\n"
        "# TYPE inklet_oauth_signins_total counter\n"
        "inklet_oauth_signins_total{provider=\"google\",result=\"ok\"} %llu\n"
        "inklet_oauth_signins_total{provider=\"google\",result=\"failed\"} %llu\n"
        "inklet_oauth_signins_total{provider=\"apple\",result=\"ok\"} %llu\n"
        "inklet_oauth_signins_total{provider=\"apple\",result=\"failed\"} %llu\n"
        "# HELP inklet_oauth_jwks_fetches_total Fetches of a provider's signing keys.\n"
        "# TYPE inklet_oauth_jwks_fetches_total counter\n"
        "inklet_oauth_jwks_fetches_total{provider=\"google\"} %llu\n"
        "inklet_oauth_jwks_fetches_total{provider=\"apple\"} %llu\n"
        "# HELP inklet_oauth_revocations_total Apple token revocations of deleted accounts.\n"
        "# TYPE inklet_oauth_revocations_total counter\n"
        "inklet_oauth_revocations_total{result=\"revoked\"} %llu\n"
        "inklet_oauth_revocations_total{result=\"failed\"} %llu\n",
        oa.signin_ok[0], oa.signin_failed[0], oa.signin_ok[1], oa.signin_failed[1],
        oa.jwks_fetches[0], oa.jwks_fetches[1], oa.revoked, oa.revoke_failed);
    struct ink_broker_stats bs;
    ink_broker_get_stats(&bs);
    struct ink_ingest_stats is;
    ink_ingest_get_stats(&is);
    struct ink_device_stats ds;
    ink_devices_get_stats(&ds);
    appendf(
        &b,
        "# TYPE inklet_broker_connected gauge\ninklet_broker_connected %d\n"
        "# TYPE inklet_mqtt_messages_received_total counter\n"
        "inklet_mqtt_messages_received_total %llu\n"
        "# HELP inklet_mqtt_messages_dropped_total Device messages dropped: malformed, oversized,"
        " refused, or a full queue.\n"
        "# TYPE inklet_mqtt_messages_dropped_total counter\n"
        "inklet_mqtt_messages_dropped_total %llu\n"
        "# HELP inklet_mqtt_messages_limited_total Device messages refused by a per-device limit.\n"
        "# TYPE inklet_mqtt_messages_limited_total counter\n"
        "inklet_mqtt_messages_limited_total %llu\n"
        "# TYPE inklet_mqtt_messages_published_total counter\n"
        "inklet_mqtt_messages_published_total %llu\n"
        "# TYPE inklet_mqtt_messages_acked_total counter\ninklet_mqtt_messages_acked_total %llu\n"
        "# TYPE inklet_mqtt_messages_processed_total counter\n"
        "inklet_mqtt_messages_processed_total %llu\n"
        "# HELP inklet_mqtt_publishes_in_flight Command publishes awaiting the broker's ack.\n"
        "# TYPE inklet_mqtt_publishes_in_flight gauge\ninklet_mqtt_publishes_in_flight %u\n"
        "# HELP inklet_mqtt_publishes_refused_total Publishes held back (too many in flight).\n"
        "# TYPE inklet_mqtt_publishes_refused_total counter\n"
        "inklet_mqtt_publishes_refused_total %llu\n"
        "# HELP inklet_commands_redelivered_total Commands published again on a heartbeat.\n"
        "# TYPE inklet_commands_redelivered_total counter\n"
        "inklet_commands_redelivered_total %llu\n"
        "# HELP inklet_command_acks_pending Broker acknowledgements waiting to be written.\n"
        "# TYPE inklet_command_acks_pending gauge\ninklet_command_acks_pending %u\n"
        "# TYPE inklet_command_acks_written_total counter\n"
        "inklet_command_acks_written_total %llu\n",
        ink_broker_connected() ? 1 : 0, bs.received, bs.dropped + is.dropped, is.limited,
        bs.published, bs.acked, is.processed, bs.in_flight, bs.refused, ds.redelivered,
        ds.acks_backlog, ds.acks_written);
    char *out = b.data ? b.data : ink_strdup("");
    return out;
}
