/* The arrows between modules point one way (issue 9): the device service knows nothing of the
 * MQTT link and the link nothing of devices; auth does not know the HTTP layer. Checked on the
 * sources themselves, so a stray #include fails the build's tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fails when a file directly in `dir` (relative to the source tree) with suffix `ext` includes
 * one of the `banned` headers. Returns how many files were read. */
static int expect_no_include(const char *dir, const char *ext, const char *const banned[])
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", INKLET_SOURCE_DIR, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), el = strlen(ext);
        if (n <= el || strcmp(e->d_name + n - el, ext) != 0)
            continue;
        char file[768];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        FILE *f = fopen(file, "r");
        assert_non_null(f);
        files++;
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "#include", 8) != 0)
                continue;
            for (size_t i = 0; banned[i]; i++)
                if (strstr(line, banned[i]))
                    fail_msg("%s/%s includes %s", dir, e->d_name, banned[i]);
        }
        fclose(f);
    }
    closedir(d);
    return files;
}

static void devices_include_nothing_of_the_mqtt_link(void **state)
{
    (void)state;
    static const char *const iot[] = {"inklet/broker.h", "inklet/ingest.h", "inklet/topic.h",
                                      "iot/", NULL};
    assert_true(expect_no_include("src/devices", ".c", iot) >= 5);
    assert_true(expect_no_include("src/devices", ".h", iot) >= 1);
}

static void the_mqtt_link_includes_nothing_of_devices(void **state)
{
    (void)state;
    static const char *const devices[] = {"inklet/devices.h",   "inklet/device_link.h",
                                          "inklet/claimcode.h", "inklet/nfc.h",
                                          "devices/",           NULL};
    assert_true(expect_no_include("src/iot", ".c", devices) >= 3);
}

static void auth_header_does_not_include_http(void **state)
{
    (void)state;
    FILE *f = fopen(INKLET_SOURCE_DIR "/include/inklet/auth.h", "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "#include", 8) == 0 && strstr(line, "inklet/http.h"))
            fail_msg("include/inklet/auth.h includes inklet/http.h");
    fclose(f);
}

/* core is the bottom layer: the configuration checks MAIL_FROM and SMTP_URL with
 * inklet/mailaddr.h, never through the mail module that sends. */
static void core_includes_nothing_of_the_mail_module(void **state)
{
    (void)state;
    static const char *const mail[] = {"inklet/mail.h", "inklet/outbox.h", "mail/", NULL};
    assert_true(expect_no_include("src/core", ".c", mail) >= 10);
}

/* The mail module does not know the accounts that use it. */
static void mail_includes_nothing_of_auth(void **state)
{
    (void)state;
    static const char *const auth[] = {"inklet/accounts.h", "inklet/auth.h", "auth/", NULL};
    assert_true(expect_no_include("src/mail", ".c", auth) >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(devices_include_nothing_of_the_mqtt_link),
        cmocka_unit_test(the_mqtt_link_includes_nothing_of_devices),
        cmocka_unit_test(auth_header_does_not_include_http),
        cmocka_unit_test(core_includes_nothing_of_the_mail_module),
        cmocka_unit_test(mail_includes_nothing_of_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
