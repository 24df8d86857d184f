/* libFuzzer driver: the `--config FILE` parser (ink_config_load_from with a file and an empty
 * environment). The input is the file's bytes, handed over as a memfd opened by path. Both modes
 * (serve, migrate) are loaded. Checked besides memory safety:
 *   - the verdict and the error stream agree: accepted ⇔ nothing was written; every error line
 *     starts with "config: " and ends with a newline;
 *   - accepted ⇒ the same values given as the environment instead (the file's KEY=VALUE lines
 *     read here by the documented rules: blank lines and # comments skipped, an optional
 *     "export ", white space trimmed around key and value, one pair of matching quotes removed,
 *     the legacy singular client-id keys, the last line winning) are accepted as well and give
 *     an equal configuration: nothing the file accepts bypasses the environment's validation.
 * The comparison is skipped for files with a NUL byte or a line of 4095 bytes or more (fgets in
 * the parser splits such lines; the reference does not model that). */
#include "inklet/config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_PAIRS 256

struct env {
    size_t n;
    char *key[MAX_PAIRS];
    char *value[MAX_PAIRS];
};

static int memfd = -1;
static char path[64];

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void env_set(struct env *e, const char *key, const char *value)
{
    if (strcmp(key, "GOOGLE_CLIENT_ID") == 0)
        key = "GOOGLE_CLIENT_IDS";
    else if (strcmp(key, "APPLE_CLIENT_ID") == 0)
        key = "APPLE_CLIENT_IDS";
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->key[i], key) == 0) {
            free(e->value[i]);
            e->value[i] = strdup(value);
            return;
        }
    if (e->n == MAX_PAIRS)
        abort(); /* an accepted file cannot have more distinct keys than the table */
    e->key[e->n] = strdup(key);
    e->value[e->n] = strdup(value);
    e->n++;
}

static void env_free(struct env *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->key[i]);
        free(e->value[i]);
    }
    e->n = 0;
}

/* The reference reading of an accepted file; false when it cannot be compared. */
static bool env_from_file(const uint8_t *data, size_t size, struct env *e)
{
    if (memchr(data, '\0', size))
        return false;
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    bool ok = true;
    char *save = NULL;
    for (char *line = copy; line && ok; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        if (strlen(line) + (nl ? 1 : 0) >= 4095) {
            ok = false;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        char *eq = strchr(s, '=');
        if (!eq)
            abort(); /* the parser accepted a line that is no KEY=VALUE */
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        env_set(e, key, value);
    }
    free(copy);
    return ok;
}

static const char *env_lookup(const char *key, void *ctx)
{
    const struct env *e = ctx;
    for (size_t i = 0; e && i < e->n; i++)
        if (strcmp(e->key[i], key) == 0)
            return e->value[i];
    return NULL;
}

/* Loads and checks the verdict against the error stream; returns the verdict. */
static bool load(struct ink_config *cfg, const char *file, enum ink_config_mode mode,
                 const struct env *e)
{
    char *errs = NULL;
    size_t errlen = 0;
    FILE *err = open_memstream(&errs, &errlen);
    if (!err)
        abort();
    bool ok = ink_config_load_from(cfg, file, mode, env_lookup, (void *)e, err);
    fclose(err);
    if (ok != (errlen == 0))
        abort();
    for (const char *l = errs; l < errs + errlen;) {
        const char *nl = memchr(l, '\n', (size_t)(errs + errlen - l));
        if (!nl || strncmp(l, "config: ", 8) != 0)
            abort();
        l = nl + 1;
    }
    free(errs);
    return ok;
}

static char *printed(const struct ink_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    ink_config_print(cfg, f);
    fclose(f);
    return text;
}

static bool same_str(const char *a, const char *b)
{
    return (!a || !*a) ? (!b || !*b) : (b && strcmp(a, b) == 0);
}

/* Equal configurations: everything printed, and the secrets print redacts. */
static bool same_config(const struct ink_config *a, const struct ink_config *b)
{
    char *pa = printed(a), *pb = printed(b);
    bool same = strcmp(pa, pb) == 0;
    free(pa);
    free(pb);
    return same && same_str(a->database_url, b->database_url) &&
           same_str(a->jwt_secret, b->jwt_secret) &&
           same_str(a->factory_secret, b->factory_secret) &&
           same_str(a->mqtt_username, b->mqtt_username) &&
           same_str(a->mqtt_password, b->mqtt_password) &&
           same_str(a->stripe_secret_key, b->stripe_secret_key) &&
           same_str(a->stripe_webhook_secret, b->stripe_webhook_secret) &&
           same_str(a->google_client_secret, b->google_client_secret) &&
           same_str(a->token_encryption_key, b->token_encryption_key) &&
           same_str(a->metrics_token, b->metrics_token) &&
           a->mqtt_client_id_unique == b->mqtt_client_id_unique;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz-config", 0);
        if (memfd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    static const enum ink_config_mode MODES[] = {INK_CONFIG_SERVE, INK_CONFIG_MIGRATE};
    for (size_t m = 0; m < sizeof MODES / sizeof *MODES; m++) {
        struct ink_config from_file, from_env;
        bool ok = load(&from_file, path, MODES[m], NULL);
        struct env e = {0};
        if (ok && env_from_file(data, size, &e)) {
            if (!load(&from_env, NULL, MODES[m], &e) || !same_config(&from_file, &from_env))
                abort(); /* the file accepted what the environment refuses, or read it otherwise */
            ink_config_free(&from_env);
        }
        env_free(&e);
        ink_config_free(&from_file);
    }
    return 0;
}
