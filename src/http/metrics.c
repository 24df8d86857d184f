#include "inklet/metrics.h"

#include "inklet/accounts.h"
#include "inklet/alloc.h"
#include "inklet/batched.h"
#include "inklet/billing.h"
#include "inklet/broker.h"
#include "inklet/buf.h"
#include "inklet/db.h"
#include "inklet/device_link.h"
#include "inklet/histogram.h"
#include "inklet/ingest.h"
#include "inklet/oauth.h"
#include "inklet/outbox.h"
#include "inklet/password.h"
#include "inklet/server.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_ROUTES 96
#define STATUS_CLASSES 6 /* 0 (no response), 1xx..5xx */

static atomic_ullong requests[MAX_ROUTES + 1][STATUS_CLASSES];
/* per route; [MAX_ROUTES] is every request no route matched (a GNU range designator, as in
 * the kernel: one initialiser for every element) */
static struct ink_histogram latency[MAX_ROUTES + 1] = {[0 ... MAX_ROUTES] =
                                                           INK_HISTOGRAM(INK_HIST_REQUEST_BOUNDS)};

void ink_metrics_observe_request(const struct ink_route *route, unsigned status, double ms)
{
    size_t r = route ? (size_t)(route - ink_routes) : MAX_ROUTES;
    if (r > MAX_ROUTES)
        r = MAX_ROUTES;
    unsigned cls = status / 100 < STATUS_CLASSES ? status / 100 : 0;
    atomic_fetch_add_explicit(&requests[r][cls], 1, memory_order_relaxed);
    ink_histogram_observe(&latency[r], ms / 1000.0);
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

static void family(struct ink_buf *b, const char *name, const char *type, const char *help)
{
    appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name_bucket{labels,le="..."} cumulative, +Inf, then name_sum and name_count; `labels` is ""
 * or `a="x",b="y"` */
static void histogram(struct ink_buf *b, const char *name, const char *labels,
                      const struct ink_histogram *h)
{
    const char *sep = *labels ? "," : "";
    unsigned long long cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += atomic_load(&h->counts[i]);
        appendf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i], cum);
    }
    cum += atomic_load(&h->counts[h->n]);
    appendf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    appendf(b, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
            (double)atomic_load(&h->sum_us) / 1e6);
    appendf(b, "%s_count%s%s%s %llu\n", name, open, labels, close, cum);
}

static void render_http(struct ink_buf *b)
{
    family(b, "inklet_http_requests_total", "counter",
           "Finished HTTP requests by route pattern and status class.");
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        if (r < MAX_ROUTES && r >= ink_routes_count)
            continue;
        for (unsigned c = 0; c < STATUS_CLASSES; c++) {
            unsigned long long n = atomic_load(&requests[r][c]);
            if (!n)
                continue;
            if (r == MAX_ROUTES)
                appendf(b, "inklet_http_requests_total{route=\"unmatched\",status=\"%ux\"} %llu\n",
                        c, n);
            else
                appendf(b,
                        "inklet_http_requests_total{method=\"%s\",route=\"%s\",status=\"%ux\"} "
                        "%llu\n",
                        ink_routes[r].method, ink_routes[r].pattern, c, n);
        }
    }
    family(b, "inklet_http_request_duration_seconds", "histogram",
           "Time from a request's first byte to its response, by route pattern.");
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        if (r < MAX_ROUTES && r >= ink_routes_count)
            continue;
        const struct ink_histogram *h = &latency[r];
        unsigned long long seen = 0;
        for (size_t i = 0; i <= h->n; i++)
            seen += atomic_load(&h->counts[i]);
        if (!seen) /* routes nobody called: no series */
            continue;
        char labels[192];
        if (r == MAX_ROUTES)
            snprintf(labels, sizeof labels, "route=\"unmatched\"");
        else
            snprintf(labels, sizeof labels, "method=\"%s\",route=\"%s\"", ink_routes[r].method,
                     ink_routes[r].pattern);
        histogram(b, "inklet_http_request_duration_seconds", labels, h);
    }
}

static void render_workers(struct ink_buf *b)
{
    struct ink_db_stats db;
    ink_db_pool_stats(&db);
    family(b, "inklet_db_pool_in_use", "gauge", "Database connections lent to a request.");
    appendf(b, "inklet_db_pool_in_use %u\n", db.in_use);
    family(b, "inklet_db_pool_waiting", "gauge", "Requests waiting for a database connection.");
    appendf(b, "inklet_db_pool_waiting %u\n", db.waiting);
    family(b, "inklet_db_pool_size", "gauge", "Database connections in the pool (DB_POOL_SIZE).");
    appendf(b, "inklet_db_pool_size %u\n", db.size);
    family(b, "inklet_db_timeouts_total", "counter",
           "Database waits that reached their deadline (DB_TIMEOUT).");
    appendf(b, "inklet_db_timeouts_total %llu\n", db.timeouts);
    family(b, "inklet_db_batches_total", "counter",
           "Round trips that carried the statements of several requests at once (pipeline mode).");
    appendf(b, "inklet_db_batches_total %llu\n", db.batches);
    family(b, "inklet_db_batched_statements_total", "counter",
           "Statements sent in those round trips; divided by the batches: the mean batch size.");
    appendf(b, "inklet_db_batched_statements_total %llu\n", db.batched);
    struct ink_batched_stats shared;
    ink_batched_stats(&shared);
    family(b, "inklet_db_shared_statements_total", "counter",
           "Statements that answered the reads of several requests of one route at once.");
    appendf(b, "inklet_db_shared_statements_total %llu\n", shared.shared_statements);
    family(b, "inklet_db_shared_statement_requests_total", "counter",
           "Requests answered by those statements; divided by them: the mean number sharing one.");
    appendf(b, "inklet_db_shared_statement_requests_total %llu\n", shared.shared_requests);
    family(b, "inklet_db_batch_retries_total", "counter",
           "Batches of writes in which a statement failed, so that every one ran again alone.");
    appendf(b, "inklet_db_batch_retries_total %llu\n", db.batch_retries);
    family(b, "inklet_db_ready", "gauge", "1 when the database monitor's last ping succeeded.");
    appendf(b, "inklet_db_ready %d\n", ink_db_ready() ? 1 : 0);
    unsigned q_requests, q_hashing, q_upstream;
    ink_server_queue_stats(&q_requests, &q_hashing, &q_upstream);
    family(b, "inklet_password_hash_waiting", "gauge",
           "Password hashes waiting for a hashing slot (HASH_CONCURRENCY).");
    appendf(b, "inklet_password_hash_waiting %u\n", ink_password_waiting());
    family(b, "inklet_password_hashes_total", "counter", "Password hashes computed.");
    appendf(b, "inklet_password_hashes_total %llu\n", ink_password_computed());
    family(b, "inklet_worker_queue_pending", "gauge", "Jobs waiting for a worker, by lane.");
    appendf(b,
            "inklet_worker_queue_pending{lane=\"requests\"} %u\n"
            "inklet_worker_queue_pending{lane=\"hashing\"} %u\n"
            "inklet_worker_queue_pending{lane=\"upstream\"} %u\n",
            q_requests, q_hashing, q_upstream);
}

static void render_signins(struct ink_buf *b)
{
    unsigned long long pw[INK_LOGIN_RESULTS];
    ink_account_login_stats(pw);
    struct ink_oauth_stats oa;
    ink_oauth_get_stats(&oa);
    family(b, "inklet_signins_total", "counter",
           "Sign-ins by provider (password, google, apple) and outcome.");
    appendf(b,
            "inklet_signins_total{provider=\"password\",result=\"ok\"} %llu\n"
            "inklet_signins_total{provider=\"password\",result=\"failed\"} %llu\n"
            "inklet_signins_total{provider=\"password\",result=\"backoff\"} %llu\n"
            "inklet_signins_total{provider=\"password\",result=\"error\"} %llu\n"
            "inklet_signins_total{provider=\"google\",result=\"ok\"} %llu\n"
            "inklet_signins_total{provider=\"google\",result=\"failed\"} %llu\n"
            "inklet_signins_total{provider=\"apple\",result=\"ok\"} %llu\n"
            "inklet_signins_total{provider=\"apple\",result=\"failed\"} %llu\n",
            pw[INK_LOGIN_OK], pw[INK_LOGIN_FAILED], pw[INK_LOGIN_BACKOFF], pw[INK_LOGIN_ERROR],
            oa.signin_ok[0], oa.signin_failed[0], oa.signin_ok[1], oa.signin_failed[1]);
    family(b, "inklet_oauth_jwks_fetches_total", "counter",
           "Fetches of a provider's signing keys (JWKS).");
    appendf(b,
            "inklet_oauth_jwks_fetches_total{provider=\"google\"} %llu\n"
            "inklet_oauth_jwks_fetches_total{provider=\"apple\"} %llu\n",
            oa.jwks_fetches[0], oa.jwks_fetches[1]);
    family(b, "inklet_oauth_revocations_total", "counter",
           "Apple token revocations of deleted accounts by outcome.");
    appendf(b,
            "inklet_oauth_revocations_total{result=\"revoked\"} %llu\n"
            "inklet_oauth_revocations_total{result=\"failed\"} %llu\n",
            oa.revoked, oa.revoke_failed);
}

static void render_billing(struct ink_buf *b)
{
    struct ink_billing_stats bill;
    ink_billing_get_stats(&bill);
    family(b, "inklet_billing_webhook_events_total", "counter",
           "Stripe webhook deliveries by outcome (their sum is every delivery received).");
    appendf(b,
            "inklet_billing_webhook_events_total{result=\"applied\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"duplicate\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"ignored\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"rejected\"} %llu\n"
            "inklet_billing_webhook_events_total{result=\"failed\"} %llu\n",
            bill.webhook_applied, bill.webhook_duplicate, bill.webhook_ignored,
            bill.webhook_rejected, bill.webhook_failed);
    family(b, "inklet_stripe_requests_total", "counter",
           "Stripe API operations by outcome, after their retries.");
    appendf(b,
            "inklet_stripe_requests_total{result=\"ok\"} %llu\n"
            "inklet_stripe_requests_total{result=\"failed\"} %llu\n",
            bill.stripe_ok, bill.stripe_failed);
    family(b, "inklet_stripe_request_duration_seconds", "histogram",
           "Time per Stripe API operation, retries included.");
    histogram(b, "inklet_stripe_request_duration_seconds", "", bill.stripe_latency);
}

static void render_devices(struct ink_buf *b)
{
    struct ink_broker_stats bs;
    ink_broker_get_stats(&bs);
    struct ink_ingest_stats is;
    ink_ingest_get_stats(&is);
    struct ink_device_stats ds;
    ink_devices_get_stats(&ds);
    family(b, "inklet_broker_connected", "gauge",
           "1 while the MQTT link is connected and subscribed.");
    appendf(b, "inklet_broker_connected %d\n", ink_broker_connected() ? 1 : 0);
    family(b, "inklet_mqtt_messages_received_total", "counter",
           "Device messages received from the broker.");
    appendf(b, "inklet_mqtt_messages_received_total %llu\n", bs.received);
    family(b, "inklet_mqtt_messages_dropped_total", "counter",
           "Device messages dropped: malformed, oversized, refused, or a full queue.");
    appendf(b, "inklet_mqtt_messages_dropped_total %llu\n", bs.dropped + is.dropped);
    family(b, "inklet_mqtt_messages_limited_total", "counter",
           "Device messages refused by a per-device limit.");
    appendf(b, "inklet_mqtt_messages_limited_total %llu\n", is.limited);
    family(b, "inklet_mqtt_messages_processed_total", "counter",
           "Device messages processed (heartbeats, state reports, claim requests).");
    appendf(b, "inklet_mqtt_messages_processed_total %llu\n", is.processed);
    family(b, "inklet_mqtt_messages_published_total", "counter", "Commands published to displays.");
    appendf(b, "inklet_mqtt_messages_published_total %llu\n", bs.published);
    family(b, "inklet_mqtt_messages_acked_total", "counter",
           "Command publishes acknowledged by the broker (PUBACK).");
    appendf(b, "inklet_mqtt_messages_acked_total %llu\n", bs.acked);
    family(b, "inklet_mqtt_publishes_in_flight", "gauge",
           "Command publishes awaiting the broker's acknowledgement.");
    appendf(b, "inklet_mqtt_publishes_in_flight %u\n", bs.in_flight);
    family(b, "inklet_mqtt_publishes_refused_total", "counter",
           "Publishes held back because too many were in flight.");
    appendf(b, "inklet_mqtt_publishes_refused_total %llu\n", bs.refused);
    family(b, "inklet_commands_total", "counter",
           "Commands by the status this instance moved them to.");
    appendf(b,
            "inklet_commands_total{status=\"queued\"} %llu\n"
            "inklet_commands_total{status=\"sent\"} %llu\n"
            "inklet_commands_total{status=\"delivered\"} %llu\n"
            "inklet_commands_total{status=\"canceled\"} %llu\n"
            "inklet_commands_total{status=\"expired\"} %llu\n",
            ds.enqueued, ds.marked_sent, ds.delivered, ds.canceled, ds.expired);
    family(b, "inklet_commands_redelivered_total", "counter",
           "Commands published again on a display's heartbeat.");
    appendf(b, "inklet_commands_redelivered_total %llu\n", ds.redelivered);
    family(b, "inklet_command_delivery_seconds", "histogram",
           "Time from a command's creation to the display's report of it.");
    histogram(b, "inklet_command_delivery_seconds", "", ds.delivery);
    family(b, "inklet_command_acks_pending", "gauge",
           "Broker acknowledgements waiting to be written.");
    appendf(b, "inklet_command_acks_pending %u\n", ds.acks_backlog);
}

/* process_* as the Prometheus client libraries export them, from /proc/self */
static void render_process(struct ink_buf *b)
{
    char stat[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
    if (f)
        fclose(f);
    stat[n] = '\0';
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                    "%*d %llu %llu %lld",
                    &utime, &stime, &start, &vsize, &rss) != 5)
        utime = stime = start = vsize = 0, rss = 0;
    double tck = (double)sysconf(_SC_CLK_TCK);
    double boot = 0;
    if ((f = fopen("/proc/stat", "re"))) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lf", &boot) == 1)
                break;
        fclose(f);
    }
    unsigned fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    struct rlimit lim = {0};
    getrlimit(RLIMIT_NOFILE, &lim);
    family(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    appendf(b, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / tck);
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    appendf(b, "process_resident_memory_bytes %lld\n", rss * (long long)sysconf(_SC_PAGESIZE));
    family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
    appendf(b, "process_virtual_memory_bytes %llu\n", vsize);
    family(b, "process_open_fds", "gauge", "Open file descriptors.");
    appendf(b, "process_open_fds %u\n", fds);
    family(b, "process_max_fds", "gauge", "The limit of open file descriptors.");
    appendf(b, "process_max_fds %llu\n", (unsigned long long)lim.rlim_cur);
    family(b, "process_start_time_seconds", "gauge", "Start time since the Unix epoch.");
    appendf(b, "process_start_time_seconds %.2f\n", boot + (double)start / tck);
    family(b, "inklet_build_info", "gauge", "Always 1; the version is a label.");
    appendf(b, "inklet_build_info{version=\"%s\"} 1\n", INKLET_VERSION);
}

static void render_mail(struct ink_buf *b)
{
    struct ink_outbox_stats m;
    ink_outbox_stats(&m);
    family(b, "inklet_mail_total", "counter",
           "Mails by outcome: queued in the outbox, sent, retried after a failed attempt, given "
           "up (past their lifetime or refused for good).");
    appendf(b,
            "inklet_mail_total{result=\"queued\"} %llu\n"
            "inklet_mail_total{result=\"sent\"} %llu\n"
            "inklet_mail_total{result=\"retried\"} %llu\n"
            "inklet_mail_total{result=\"given_up\"} %llu\n",
            m.queued, m.sent, m.retried, m.given_up);
}

char *ink_metrics_render(void)
{
    struct ink_buf b;
    ink_buf_init(&b, 1 << 20);
    render_http(&b);
    render_workers(&b);
    render_signins(&b);
    render_billing(&b);
    render_devices(&b);
    render_mail(&b);
    render_process(&b);
    return b.data ? b.data : ink_strdup("");
}
