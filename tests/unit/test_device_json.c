/* The device object written as text from a row (src/devices/device_row.c): every member of the
 * contract's shape, nulls, escaping of hostile stored text, and the list form. The rows are
 * PGresults built without a server (PQmakeEmptyPGresult + PQsetvalue). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/devices/devices_internal.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#define NCOLS (C_ONLINE + 1)

static PGresult *rows_new(void)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    assert_non_null(r);
    PGresAttDesc att[NCOLS];
    memset(att, 0, sizeof att);
    for (int i = 0; i < NCOLS; i++) {
        att[i].name = (char *)"c";
        att[i].typid = 25; /* text: the writer reads every column as text */
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(r, NCOLS, att), 1);
    return r;
}

/* row `row` of r: values[i] NULL is SQL NULL */
static void row_set(PGresult *r, int row, const char *const values[NCOLS])
{
    for (int i = 0; i < NCOLS; i++)
        assert_int_equal(PQsetvalue(r, row, i, (char *)values[i],
                                    values[i] ? (int)strlen(values[i]) : -1),
                         1);
}

static const char *const BOUND[NCOLS] = {
    [C_ID] = "0190a1b2-0000-7000-8000-000000000001",
    [C_HW] = "a1b2c3d4-5678-9012-abcd-ef0123456789",
    [C_THING] = "inklet-a1b2c3d4",
    [C_FW] = "1.4.2",
    [C_BATT] = "87",
    [C_SEEN] = "1767225600", /* 2026-01-01T00:00:00Z */
    [C_OWNER] = "0190a1b2-0000-7000-8000-0000000000aa",
    [C_BOUND] = "1767225661",
    [C_CODE] = NULL,
    [C_STATE] = "idle",
    [C_STATE_AT] = "1767225662",
    [C_NICK] = "Kitchen",
    [C_ONLINE] = "t",
};

static json_t *parsed(char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!v)
        fail_msg("not JSON (%s): %s", e.text, text);
    free(text);
    return v;
}

static void a_bound_device_has_every_member_of_the_contract(void **state)
{
    (void)state;
    PGresult *r = rows_new();
    row_set(r, 0, BOUND);
    json_t *d = parsed(ink_device_json(r, 0));
    assert_int_equal(json_object_size(d), 13);
    assert_string_equal(json_string_value(json_object_get(d, "id")), BOUND[C_ID]);
    assert_string_equal(json_string_value(json_object_get(d, "hwId")), BOUND[C_HW]);
    assert_string_equal(json_string_value(json_object_get(d, "thingName")), BOUND[C_THING]);
    assert_string_equal(json_string_value(json_object_get(d, "firmware")), "1.4.2");
    assert_int_equal(json_integer_value(json_object_get(d, "battery")), 87);
    assert_true(json_is_true(json_object_get(d, "online")));
    assert_string_equal(json_string_value(json_object_get(d, "lastSeenAt")),
                        "2026-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(d, "ownerId")), BOUND[C_OWNER]);
    assert_string_equal(json_string_value(json_object_get(d, "boundAt")), "2026-01-01T00:01:01Z");
    assert_true(json_is_null(json_object_get(d, "claimCode")));
    assert_string_equal(json_string_value(json_object_get(d, "state")), "idle");
    assert_string_equal(json_string_value(json_object_get(d, "stateUpdatedAt")),
                        "2026-01-01T00:01:02Z");
    assert_string_equal(json_string_value(json_object_get(d, "nickname")), "Kitchen");
    json_decref(d);
    PQclear(r);
}

static void an_unbound_silent_device_has_nulls(void **state)
{
    (void)state;
    const char *const v[NCOLS] = {[C_ID] = BOUND[C_ID], [C_HW] = BOUND[C_HW],
                                  [C_THING] = BOUND[C_THING], [C_CODE] = "K7P2QX",
                                  [C_ONLINE] = "f"};
    PGresult *r = rows_new();
    row_set(r, 0, v);
    json_t *d = parsed(ink_device_json(r, 0));
    assert_int_equal(json_object_size(d), 13);
    const char *nulls[] = {"firmware", "battery", "lastSeenAt", "ownerId", "boundAt",
                           "state",    "stateUpdatedAt", "nickname"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (!json_is_null(json_object_get(d, nulls[i])))
            fail_msg("%s is not null", nulls[i]);
    assert_true(json_is_false(json_object_get(d, "online")));
    assert_string_equal(json_string_value(json_object_get(d, "claimCode")), "K7P2QX");
    json_decref(d);
    PQclear(r);
}

/* What a display reports and what a user names it reach the body as the same text, whatever
 * bytes they hold: quotes, backslashes, controls, a fake member, invalid UTF-8. */
static void stored_text_is_escaped_never_cut(void **state)
{
    (void)state;
    char big[4096 + 1];
    memset(big, '"', sizeof big - 1); /* every byte escapes: the bound must hold */
    big[sizeof big - 1] = '\0';
    const char *nick = "Kü\"che\\\n\t\x01\x7f\",\"ownerId\":\"x";
    const char *const v[NCOLS] = {[C_ID] = BOUND[C_ID], [C_HW] = BOUND[C_HW],
                                  [C_THING] = BOUND[C_THING], [C_FW] = "\xff\xfe",
                                  [C_STATE] = big,   [C_NICK] = nick, [C_ONLINE] = "f"};
    PGresult *r = rows_new();
    row_set(r, 0, v);
    json_t *d = parsed(ink_device_json(r, 0));
    assert_int_equal(json_object_size(d), 13);
    assert_string_equal(json_string_value(json_object_get(d, "nickname")), nick);
    assert_string_equal(json_string_value(json_object_get(d, "state")), big);
    assert_true(json_is_null(json_object_get(d, "ownerId")));
    /* invalid UTF-8 becomes U+FFFD per byte, so the body is still valid JSON */
    assert_string_equal(json_string_value(json_object_get(d, "firmware")),
                        "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(d);
    PQclear(r);
}

static void the_list_is_an_array_in_row_order_even_of_one(void **state)
{
    (void)state;
    PGresult *r = rows_new();
    json_t *l = parsed(ink_devices_json(r));
    assert_true(json_is_array(l));
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);

    row_set(r, 0, BOUND);
    l = parsed(ink_devices_json(r));
    assert_true(json_is_array(l));
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);

    const char *const second[NCOLS] = {[C_ID] = "0190a1b2-0000-7000-8000-000000000002",
                                       [C_HW] = BOUND[C_HW], [C_THING] = BOUND[C_THING],
                                       [C_ONLINE] = "f"};
    row_set(r, 1, second);
    l = parsed(ink_devices_json(r));
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "id")),
                        BOUND[C_ID]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "id")),
                        second[C_ID]);
    json_decref(l);
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_bound_device_has_every_member_of_the_contract),
        cmocka_unit_test(an_unbound_silent_device_has_nulls),
        cmocka_unit_test(stored_text_is_escaped_never_cut),
        cmocka_unit_test(the_list_is_an_array_in_row_order_even_of_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
