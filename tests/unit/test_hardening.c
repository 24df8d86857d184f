/* The built inkletd carries the hardening Debian builds its packages with (CMakeLists.txt):
 * a position-independent executable, full RELRO with immediate binding, the stack protector and,
 * in optimizing builds, glibc's checked (_FORTIFY_SOURCE) functions. Read with readelf. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole output of `readelf <flags> inkletd`; malloc'd. */
static char *readelf(const char *flags)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "readelf -W %s '%s' 2>&1", flags, INKLET_INKLETD_PATH);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    assert_int_equal(pclose(p), 0);
    return out;
}

static void inkletd_is_a_position_independent_executable(void **state)
{
    (void)state;
    char *h = readelf("-h");
    assert_non_null(strstr(h, "DYN (Position-Independent Executable file)"));
    free(h);
    char *d = readelf("-d");
    assert_non_null(strstr(d, "PIE"));
    free(d);
}

static void inkletd_has_full_relro(void **state)
{
    (void)state;
    char *l = readelf("-l");
    assert_non_null(strstr(l, "GNU_RELRO"));
    free(l);
    char *d = readelf("-d");
    assert_true(strstr(d, "BIND_NOW") != NULL || strstr(d, "Flags: NOW") != NULL);
    free(d);
}

static void inkletd_uses_the_stack_protector(void **state)
{
    (void)state;
    char *s = readelf("--dyn-syms");
    assert_non_null(strstr(s, "__stack_chk_fail"));
    free(s);
}

#if INKLET_FORTIFIED /* not in the -O0 Debug (sanitizer) build: FORTIFY needs optimization */
static void inkletd_uses_fortified_functions(void **state)
{
    (void)state;
    char *s = readelf("--dyn-syms");
    assert_non_null(strstr(s, "__snprintf_chk"));
    assert_non_null(strstr(s, "__vsnprintf_chk"));
    free(s);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inkletd_is_a_position_independent_executable),
        cmocka_unit_test(inkletd_has_full_relro),
        cmocka_unit_test(inkletd_uses_the_stack_protector),
#if INKLET_FORTIFIED
        cmocka_unit_test(inkletd_uses_fortified_functions),
#endif
    };
    return cmocka_run_group_tests_name("hardening", tests, NULL, NULL);
}
