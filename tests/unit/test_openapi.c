/* The embedded OpenAPI document and the route table describe the same operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/handlers.h"
#include "inklet/http.h"

#include <ctype.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

static const char *const METHODS[] = {"get", "put", "post", "delete", "patch", "head", "options"};

static json_t *load_doc(void)
{
    json_error_t err;
    json_t *doc = json_loadb(ink_openapi_json, ink_openapi_json_len, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    return doc;
}

static void every_route_is_documented(void **state)
{
    (void)state;
    json_t *doc = load_doc(), *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < ink_routes_count; i++) {
        char method[16];
        size_t n = strlen(ink_routes[i].method);
        for (size_t k = 0; k <= n; k++)
            method[k] = (char)tolower((unsigned char)ink_routes[i].method[k]);
        json_t *item = json_object_get(paths, ink_routes[i].pattern);
        if (!item || !json_object_get(item, method))
            fail_msg("%s %s is not in docs/openapi.json", ink_routes[i].method,
                     ink_routes[i].pattern);
    }
    json_decref(doc);
}

static void every_documented_operation_is_routed(void **state)
{
    (void)state;
    json_t *doc = load_doc(), *paths = json_object_get(doc, "paths");
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        for (size_t m = 0; m < sizeof METHODS / sizeof *METHODS; m++) {
            if (!json_object_get(item, METHODS[m]))
                continue;
            bool found = false;
            for (size_t i = 0; i < ink_routes_count && !found; i++)
                found = strcmp(ink_routes[i].pattern, path) == 0 &&
                        strcasecmp(ink_routes[i].method, METHODS[m]) == 0;
            if (!found)
                fail_msg("%s %s is documented but not routed", METHODS[m], path);
        }
    }
    json_decref(doc);
}

static void route_table_has_no_duplicates(void **state)
{
    (void)state;
    for (size_t i = 0; i < ink_routes_count; i++)
        for (size_t k = i + 1; k < ink_routes_count; k++)
            assert_false(strcmp(ink_routes[i].method, ink_routes[k].method) == 0 &&
                         strcmp(ink_routes[i].pattern, ink_routes[k].pattern) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_documented),
        cmocka_unit_test(every_documented_operation_is_routed),
        cmocka_unit_test(route_table_has_no_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
