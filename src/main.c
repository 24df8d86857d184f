/* inkletd: wires the modules together. Commands: serve (default), migrate, check-config. */
#include "inklet/app.h"
#include "inklet/accounts.h"
#include "inklet/auth.h"
#include "inklet/billing.h"
#include "inklet/broker.h"
#include "inklet/config.h"
#include "inklet/db.h"
#include "inklet/device_link.h"
#include "inklet/devices.h"
#include "inklet/http_client.h"
#include "inklet/ingest.h"
#include "inklet/log.h"
#include "inklet/migrate.h"
#include "inklet/oauth.h"
#include "inklet/outbox.h"
#include "inklet/password.h"
#include "inklet/ratelimit.h"
#include "inklet/sdnotify.h"
#include "inklet/server.h"
#include "inklet/stripe.h"

#include <curl/curl.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HASH_WAIT_MS 2000
#define MAINTENANCE_INTERVAL_S 600
#define INGEST_WORKERS 2
#define INGEST_QUEUE 8192
/* queued device messages get this long at shutdown (config/inklet.service allows 25 s in all) */
#define INGEST_DRAIN_MS 2000

static void usage(FILE *out)
{
    fprintf(out, "usage: inkletd [--config FILE] [serve | migrate | check-config | billing-sync]\n"
                 "       inkletd --version\n");
}

static enum ink_log_level parse_level(const char *s)
{
    if (strcmp(s, "debug") == 0)
        return INK_LOG_DEBUG;
    if (strcmp(s, "warn") == 0)
        return INK_LOG_WARN;
    if (strcmp(s, "error") == 0)
        return INK_LOG_ERROR;
    return INK_LOG_INFO;
}

/* ---- the device link: the one place devices and the broker meet ---------------------------- */

static enum ink_status on_device_message(struct ink_db *db, const char *thing,
                                         enum ink_up_kind kind, const char *payload, size_t len)
{
    switch (kind) {
    case INK_UP_HEARTBEAT:
        return ink_device_heartbeat(db, thing, payload, len);
    case INK_UP_STATE:
        return ink_device_report_state(db, thing, payload, len);
    case INK_UP_REQUEST_CLAIM:
        return ink_device_request_claim(db, thing, payload, len);
    }
    return INK_INVALID;
}

static void on_broker_message(const char *thing, enum ink_up_kind kind, const void *payload,
                              size_t len)
{
    ink_ingest_submit(thing, kind, payload, len);
}

static const struct ink_broker_handlers broker_handlers = {on_broker_message, ink_device_ack};
static const struct ink_device_outbound device_outbound = {ink_broker_can_publish,
                                                           ink_broker_publish_cmd};

static int serve(void)
{
    const struct ink_config *cfg = &ink_app.cfg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* block before any thread starts so that only sigwait below sees them */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ink_error("curl_global_init failed");
        return 1;
    }
    ink_app_init_derived();
    ink_auth_init();
    struct ink_rate rates[INK_RATE_CLASS_COUNT] = {
        [INK_RATE_LOGIN] = cfg->rate_login,     [INK_RATE_REGISTER] = cfg->rate_register,
        [INK_RATE_REFRESH] = cfg->rate_refresh, [INK_RATE_BIND] = cfg->rate_bind,
        [INK_RATE_MAIL] = cfg->rate_mail,
    };
    ink_ratelimit_init(rates);
    struct ink_argon2_params ap = {cfg->argon2_memory_kib, cfg->argon2_iterations,
                                   cfg->argon2_parallelism};
    if (!ink_password_init(&ap, cfg->hash_concurrency, HASH_WAIT_MS)) {
        ink_error("the ARGON2_* parameters cannot hash a password; refusing to start");
        return 1;
    }
    ink_db_pool_init(cfg->database_url, cfg->db_pool_size, cfg->db_timeout * 1000);
    if (!ink_db_monitor_start()) {
        ink_error("cannot start the database monitor");
        return 1;
    }
    ink_http_client_init();
    ink_stripe_init();
    if (!ink_oauth_init())
        return 1;
    ink_account_on_delete(ink_devices_on_account_delete, NULL);
    ink_account_on_delete(ink_billing_on_account_delete, ink_billing_after_account_delete);
    ink_account_on_delete(ink_oauth_on_account_delete, ink_oauth_after_account_delete);
    if (!ink_billing_canceller_start()) {
        ink_error("cannot start the billing canceller");
        return 1;
    }
    if (!ink_oauth_revoker_start())
        return 1;
    if (!ink_outbox_start()) {
        ink_error("cannot start the mail sender");
        return 1;
    }
    ink_devices_set_outbound(&device_outbound);
    if (!ink_device_acks_start() ||
        !ink_ingest_start(INGEST_WORKERS, INGEST_QUEUE, on_device_message) ||
        !ink_broker_start(&broker_handlers))
        return 1;
    if (!ink_server_start())
        return 1;
    ink_info("inkletd %s listening on %s:%u (%u HTTP threads, pool %u)", INKLET_VERSION,
             cfg->listen_addr, cfg->port, cfg->http_threads, cfg->db_pool_size);
    ink_sd_notify("READY=1");
    if (!ink_sd_watchdog_start(ink_server_probe))
        return 1;

    /* the main thread waits for a signal and does periodic housekeeping meanwhile */
    int sig;
    for (;;) {
        struct timespec tick = {.tv_sec = MAINTENANCE_INTERVAL_S};
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        long long pruned = 0;
        if (sig < 0 && ink_session_prune(&pruned) == INK_OK && pruned)
            ink_info("pruned %lld expired session/token rows", pruned);
        pruned = 0;
        if (sig < 0 && ink_billing_prune(&pruned) == INK_OK && pruned)
            ink_info("pruned %lld applied billing events older than 30 days", pruned);
        pruned = 0;
        if (sig < 0 && ink_devices_prune(&pruned) == INK_OK && pruned)
            ink_info("expired or pruned %lld device commands", pruned);
        pruned = 0;
        if (sig < 0 && ink_oauth_prune(&pruned) == INK_OK && pruned)
            ink_info("pruned %lld expired sign-in states", pruned);
        pruned = 0;
        if (sig < 0 && ink_account_prune_links(&pruned) == INK_OK && pruned)
            ink_info("pruned %lld expired reset/verification links", pruned);
        pruned = 0;
        if (sig < 0 && ink_outbox_prune(&pruned) == INK_OK && pruned)
            ink_info("pruned %lld mails finished more than 30 days ago", pruned);
    }
    ink_info("received %s: draining (up to %u s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             cfg->shutdown_grace);
    ink_sd_notify("STOPPING=1");
    /* the order matters: nothing may publish on, or be called back by, a freed broker handle */
    ink_broker_unsubscribe(); /* no new device messages; share-group peers take them */
    ink_server_drain(cfg->shutdown_grace);
    ink_sd_watchdog_stop();           /* pings end while the server still answers */
    ink_server_stop();                /* worker lanes finish their queues, then the HTTP threads */
    ink_ingest_stop(INGEST_DRAIN_MS); /* queued device messages, bounded */
    ink_broker_stop(); /* DISCONNECT after the last publish; no callback after this */
    ink_ingest_free();
    ink_device_acks_stop();       /* writes the acknowledgements that came in (bounded) */
    ink_billing_canceller_stop(); /* finishes the customer it is on (bounded by STRIPE_TIMEOUT) */
    ink_oauth_revoker_stop();     /* finishes the token it is on (bounded by OAUTH_TIMEOUT) */
    ink_outbox_stop();            /* finishes the mail it is on (bounded by SMTP_TIMEOUT) */
    ink_db_monitor_stop();
    ink_db_pool_close();
    ink_password_shutdown();
    ink_stripe_shutdown();
    ink_oauth_shutdown();
    ink_http_client_shutdown();
    curl_global_cleanup();
    ink_info("stopped");
    return 0;
}

/* `inkletd billing-sync`: one reconciliation run against Stripe, then exit. */
static int billing_sync(void)
{
    const struct ink_config *cfg = &ink_app.cfg;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ink_error("curl_global_init failed");
        return 1;
    }
    ink_http_client_init();
    ink_stripe_init();
    ink_db_pool_init(cfg->database_url, 1, cfg->db_timeout * 1000);
    int rc = ink_billing_sync(stdout);
    ink_db_pool_close();
    ink_stripe_shutdown();
    ink_http_client_shutdown();
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    const char *config_file = NULL, *command = "serve";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("inkletd %s\n", INKLET_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_file = argv[i] + 9;
        } else if (argv[i][0] != '-' &&
                   (strcmp(argv[i], "serve") == 0 || strcmp(argv[i], "migrate") == 0 ||
                    strcmp(argv[i], "check-config") == 0 || strcmp(argv[i], "billing-sync") == 0)) {
            command = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    bool migrate = strcmp(command, "migrate") == 0;
    if (!ink_config_load(&ink_app.cfg, config_file, migrate ? INK_CONFIG_MIGRATE : INK_CONFIG_SERVE,
                         stderr)) {
        ink_config_free(&ink_app.cfg);
        return 1;
    }
    ink_log_setup(parse_level(ink_app.cfg.log_level), strcmp(ink_app.cfg.log_format, "json") == 0);
    int rc;
    if (strcmp(command, "check-config") == 0) {
        ink_config_print(&ink_app.cfg, stdout);
        printf("configuration OK\n");
        rc = 0;
    } else if (migrate) {
        rc = ink_migrate_run(ink_app.cfg.database_url, ink_app.cfg.db_timeout,
                             ink_app.cfg.migrate_lock_timeout)
                 ? 0
                 : 1;
    } else if (strcmp(command, "billing-sync") == 0) {
        rc = billing_sync();
    } else {
        rc = serve();
    }
    ink_app_free();
    return rc;
}
