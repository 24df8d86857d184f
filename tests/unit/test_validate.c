/* validate: e-mail normalization and username rules (contract §2 "Validation"). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/validate.h"

#include <string.h>

/* Builds local@domain with exactly `total` bytes. */
static void email_of_len(char *buf, size_t total)
{
    const char *domain = "@example.io";
    size_t dl = strlen(domain);
    size_t local = total - dl;
    memset(buf, 'a', local);
    memcpy(buf + local, domain, dl + 1);
}

static void email_is_trimmed_and_lower_cased(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_true(ink_email_normalize("A@X.IO ", out));
    assert_string_equal(out, "a@x.io");
    assert_true(ink_email_normalize(" \t Alice.Smith@Example.COM\r\n", out));
    assert_string_equal(out, "alice.smith@example.com");
    assert_true(ink_email_normalize("bob+tag@mail.example", out));
    assert_string_equal(out, "bob+tag@mail.example");
}

static void email_non_ascii_bytes_are_kept_verbatim(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_true(ink_email_normalize("J\xc3\xbcRGEN@B\xc3\xbc.de", out));
    assert_string_equal(out, "j\xc3\xbcrgen@b\xc3\xbc.de");
}

static void email_without_at_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("alice.example.com", out));
}

static void email_with_two_ats_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("a@b@example.com", out));
    assert_false(ink_email_normalize("a@@example.com", out));
}

static void email_with_empty_local_or_domain_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("@example.com", out));
    assert_false(ink_email_normalize("alice@", out));
    assert_false(ink_email_normalize("@", out));
    assert_false(ink_email_normalize("  alice@  ", out));
}

static void email_with_inner_space_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("ali ce@example.com", out));
    assert_false(ink_email_normalize("alice@exa mple.com", out));
    assert_false(ink_email_normalize("alice@exa\tmple.com", out));
}

static void email_with_control_character_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("ali\x01"
                                     "ce@example.com",
                                     out));
    assert_false(ink_email_normalize("alice@example.com\x1b", out));
    assert_false(ink_email_normalize("alice\x7f@example.com", out));
    assert_false(ink_email_normalize("alice@exam\nple.com", out));
}

static void email_empty_or_blank_is_rejected(void **state)
{
    (void)state;
    char out[INK_EMAIL_MAX + 1];
    assert_false(ink_email_normalize("", out));
    assert_false(ink_email_normalize("   \t ", out));
}

static void email_of_254_bytes_is_accepted_and_255_rejected(void **state)
{
    (void)state;
    char in[300], out[INK_EMAIL_MAX + 1];
    email_of_len(in, 254);
    assert_int_equal(strlen(in), 254);
    assert_true(ink_email_normalize(in, out));
    assert_string_equal(out, in);

    email_of_len(in, 255);
    assert_int_equal(strlen(in), 255);
    assert_false(ink_email_normalize(in, out));
}

static void email_length_is_measured_after_trimming(void **state)
{
    (void)state;
    char in[300], out[INK_EMAIL_MAX + 1];
    in[0] = ' ';
    email_of_len(in + 1, 254);
    memcpy(in + 255, "  ", 3);
    assert_true(ink_email_normalize(in, out));
    assert_int_equal(strlen(out), 254);
}

static void username_length_bounds(void **state)
{
    (void)state;
    char name[40];
    memset(name, 'a', sizeof name);
    name[3] = '\0';
    assert_true(ink_username_valid(name));
    name[3] = 'a';
    name[32] = '\0';
    assert_true(ink_username_valid(name));
    name[32] = 'a';
    name[2] = '\0';
    assert_false(ink_username_valid(name));
    name[2] = 'a';
    name[33] = '\0';
    assert_false(ink_username_valid(name));
    assert_false(ink_username_valid(""));
}

static void username_allows_letters_digits_underscore_dot_dash(void **state)
{
    (void)state;
    assert_true(ink_username_valid("Alice_01"));
    assert_true(ink_username_valid("a.b-c_d"));
    assert_true(ink_username_valid("ABCxyz0123456789"));
    assert_true(ink_username_valid("..."));
    assert_true(ink_username_valid("---"));
}

static void username_rejects_other_characters(void **state)
{
    (void)state;
    assert_false(ink_username_valid("ali ce"));
    assert_false(ink_username_valid("alice@home"));
    assert_false(ink_username_valid("j\xc3\xbcrgen"));
    assert_false(ink_username_valid("alice/bob"));
    assert_false(ink_username_valid("alice+1"));
    assert_false(ink_username_valid("alice\t"));
    assert_false(ink_username_valid("<script>"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(email_is_trimmed_and_lower_cased),
        cmocka_unit_test(email_non_ascii_bytes_are_kept_verbatim),
        cmocka_unit_test(email_without_at_is_rejected),
        cmocka_unit_test(email_with_two_ats_is_rejected),
        cmocka_unit_test(email_with_empty_local_or_domain_is_rejected),
        cmocka_unit_test(email_with_inner_space_is_rejected),
        cmocka_unit_test(email_with_control_character_is_rejected),
        cmocka_unit_test(email_empty_or_blank_is_rejected),
        cmocka_unit_test(email_of_254_bytes_is_accepted_and_255_rejected),
        cmocka_unit_test(email_length_is_measured_after_trimming),
        cmocka_unit_test(username_length_bounds),
        cmocka_unit_test(username_allows_letters_digits_underscore_dot_dash),
        cmocka_unit_test(username_rejects_other_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
