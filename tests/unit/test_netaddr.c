/* netaddr: CIDR lists and the trusted-proxy client IP rule (contract §0 "Rate limiting"). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/netaddr.h"

#include <stdio.h>
#include <string.h>

static bool list_contains_text(const struct ink_cidr_list *l, const char *ip)
{
    unsigned char a[16];
    assert_true(ink_ip_parse(ip, a));
    return ink_cidr_list_contains(l, a);
}

/* Parses `cidrs`, asserting success; the caller frees. */
static struct ink_cidr_list parse_ok(const char *cidrs)
{
    struct ink_cidr_list l;
    assert_true(ink_cidr_list_parse(&l, cidrs));
    return l;
}

static void ip_parse_maps_ipv4_into_ipv6_space(void **state)
{
    (void)state;
    unsigned char a[16];
    const unsigned char want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 2};
    assert_true(ink_ip_parse("192.168.1.2", a));
    assert_memory_equal(a, want, 16);
    unsigned char b[16];
    assert_true(ink_ip_parse("::ffff:192.168.1.2", b));
    assert_memory_equal(a, b, 16);
}

static void ip_parse_rejects_non_addresses(void **state)
{
    (void)state;
    unsigned char a[16];
    assert_false(ink_ip_parse("", a));
    assert_false(ink_ip_parse("256.1.1.1", a));
    assert_false(ink_ip_parse("1.2.3", a));
    assert_false(ink_ip_parse("1.2.3.4.5", a));
    assert_false(ink_ip_parse("example.com", a));
    assert_false(ink_ip_parse("1.2.3.4 ", a));
    assert_false(ink_ip_parse("1.2.3.4/8", a));
    assert_false(ink_ip_parse(":::1", a));
    assert_false(ink_ip_parse("unknown", a));
}

static void ipv4_cidr_contains_only_its_range(void **state)
{
    (void)state;
    struct ink_cidr_list l = parse_ok("10.0.0.0/8");
    assert_int_equal(l.count, 1);
    assert_true(list_contains_text(&l, "10.0.0.0"));
    assert_true(list_contains_text(&l, "10.255.255.255"));
    assert_true(list_contains_text(&l, "10.1.2.3"));
    assert_false(list_contains_text(&l, "11.0.0.0"));
    assert_false(list_contains_text(&l, "9.255.255.255"));
    assert_false(list_contains_text(&l, "::a00:1")); /* 10.0.0.1 bits, but not v4-mapped */
    ink_cidr_list_free(&l);

    l = parse_ok("192.168.1.128/25");
    assert_true(list_contains_text(&l, "192.168.1.128"));
    assert_true(list_contains_text(&l, "192.168.1.255"));
    assert_false(list_contains_text(&l, "192.168.1.127"));
    ink_cidr_list_free(&l);
}

static void ipv4_slash_32_and_bare_address_match_exactly_one_host(void **state)
{
    (void)state;
    struct ink_cidr_list l = parse_ok("203.0.113.7/32, 198.51.100.9");
    assert_int_equal(l.count, 2);
    assert_true(list_contains_text(&l, "203.0.113.7"));
    assert_false(list_contains_text(&l, "203.0.113.6"));
    assert_false(list_contains_text(&l, "203.0.113.8"));
    assert_true(list_contains_text(&l, "198.51.100.9"));
    assert_false(list_contains_text(&l, "198.51.100.8"));
    ink_cidr_list_free(&l);
}

static void ipv4_slash_0_matches_every_ipv4_but_no_ipv6(void **state)
{
    (void)state;
    struct ink_cidr_list l = parse_ok("0.0.0.0/0");
    assert_true(list_contains_text(&l, "1.2.3.4"));
    assert_true(list_contains_text(&l, "255.255.255.255"));
    assert_true(list_contains_text(&l, "0.0.0.0"));
    assert_false(list_contains_text(&l, "2001:db8::1"));
    ink_cidr_list_free(&l);
}

static void ipv6_cidrs(void **state)
{
    (void)state;
    struct ink_cidr_list l = parse_ok("2001:db8::/32, ::1, fd00::/8");
    assert_int_equal(l.count, 3);
    assert_true(list_contains_text(&l, "2001:db8::1"));
    assert_true(list_contains_text(&l, "2001:db8:ffff:ffff::1"));
    assert_false(list_contains_text(&l, "2001:db9::1"));
    assert_true(list_contains_text(&l, "::1"));
    assert_false(list_contains_text(&l, "::2"));
    assert_true(list_contains_text(&l, "fd12:3456::1"));
    assert_false(list_contains_text(&l, "fe80::1"));
    assert_false(list_contains_text(&l, "127.0.0.1"));
    ink_cidr_list_free(&l);

    l = parse_ok("::/0");
    assert_true(list_contains_text(&l, "2001:db8::1"));
    assert_true(list_contains_text(&l, "::"));
    ink_cidr_list_free(&l);

    l = parse_ok("2001:db8::/127");
    assert_true(list_contains_text(&l, "2001:db8::"));
    assert_true(list_contains_text(&l, "2001:db8::1"));
    assert_false(list_contains_text(&l, "2001:db8::2"));
    ink_cidr_list_free(&l);
}

static void empty_and_blank_lists_parse_to_nothing(void **state)
{
    (void)state;
    struct ink_cidr_list l = parse_ok("");
    assert_int_equal(l.count, 0);
    assert_false(list_contains_text(&l, "10.0.0.1"));
    ink_cidr_list_free(&l);
    l = parse_ok(" , ,");
    assert_int_equal(l.count, 0);
    ink_cidr_list_free(&l);
}

static void bad_cidrs_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "10.0.0.0/33", "::/129",        "10.0.0.0/",       "10.0.0.0/-1", "10.0.0.0/8x",
        "10.0.0.0/ 8", "10.0.0.0/0008", "10.0.0/8",        "example.com", "10.0.0.0/8, x",
        "*",           "10.0.0.0/8/8",  "1.2.3.4 5.6.7.8", "::1/1000",    "10.0.0.0/+8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ink_cidr_list l = {(struct ink_cidr *)1, 99};
        bool ok = ink_cidr_list_parse(&l, bad[i]);
        if (ok)
            fail_msg("accepted bad CIDR list \"%s\"", bad[i]);
        assert_null(l.items);
        assert_int_equal(l.count, 0);
    }
}

static void client_ip(const char *trusted, const char *peer, const char *xff, char *out,
                      size_t outlen)
{
    struct ink_cidr_list l = parse_ok(trusted);
    ink_client_ip(&l, peer, xff, out, outlen);
    ink_cidr_list_free(&l);
}

static void untrusted_peer_ignores_forwarded_for(void **state)
{
    (void)state;
    char out[64];
    client_ip("10.0.0.0/8", "203.0.113.5", "1.1.1.1", out, sizeof out);
    assert_string_equal(out, "203.0.113.5");
    client_ip("", "10.0.0.1", "1.1.1.1", out, sizeof out); /* nobody trusted */
    assert_string_equal(out, "10.0.0.1");
}

static void no_forwarded_for_gives_the_peer(void **state)
{
    (void)state;
    char out[64];
    client_ip("10.0.0.0/8", "10.0.0.1", NULL, out, sizeof out);
    assert_string_equal(out, "10.0.0.1");
}

static void trusted_peer_uses_right_most_untrusted_entry(void **state)
{
    (void)state;
    char out[64];
    client_ip("10.0.0.0/8", "10.0.0.1", "1.1.1.1, 2.2.2.2", out, sizeof out);
    assert_string_equal(out, "2.2.2.2");
    client_ip("10.0.0.0/8", "10.0.0.1", "1.1.1.1, 10.0.0.5", out, sizeof out);
    assert_string_equal(out, "1.1.1.1");
    client_ip("10.0.0.0/8", "10.0.0.1", "9.9.9.9,1.1.1.1,10.0.0.7,10.0.0.5", out, sizeof out);
    assert_string_equal(out, "1.1.1.1");
    client_ip("10.0.0.0/8", "10.0.0.1", "  3.3.3.3  ", out, sizeof out);
    assert_string_equal(out, "3.3.3.3");
}

static void all_hops_trusted_gives_the_left_most(void **state)
{
    (void)state;
    char out[64];
    client_ip("10.0.0.0/8", "10.0.0.1", "10.0.0.9, 10.0.0.5", out, sizeof out);
    assert_string_equal(out, "10.0.0.9");
}

static void garbage_in_forwarded_for_never_yields_an_attacker_string(void **state)
{
    (void)state;
    static const char *const xffs[] = {
        "hello",     "1.1.1.1, hello",  "hello, 10.0.0.5", "",         ",",
        "1.1.1.1,,", "1.1.1.1;2.2.2.2", "unknown",         "<script>", "1.1.1.1\r\nX-Evil: 1",
    };
    for (size_t i = 0; i < sizeof xffs / sizeof *xffs; i++) {
        char out[64];
        client_ip("10.0.0.0/8", "10.0.0.1", xffs[i], out, sizeof out);
        unsigned char a[16];
        if (!ink_ip_parse(out, a))
            fail_msg("xff \"%s\" gave non-address \"%s\"", xffs[i], out);
    }
    /* the garbage hop is not believed; the chain stops at the last trusted hop */
    char out[64];
    client_ip("10.0.0.0/8", "10.0.0.1", "1.1.1.1, hello", out, sizeof out);
    assert_string_equal(out, "10.0.0.1");
    client_ip("10.0.0.0/8", "10.0.0.1", "hello, 10.0.0.5", out, sizeof out);
    assert_string_equal(out, "10.0.0.5");
}

static void ipv6_peers_and_hops(void **state)
{
    (void)state;
    char out[64];
    client_ip("::1, fd00::/8", "::1", "2001:db8::7", out, sizeof out);
    assert_string_equal(out, "2001:db8::7");
    client_ip("::1, fd00::/8", "::1", "2001:db8::7, fd00::2", out, sizeof out);
    assert_string_equal(out, "2001:db8::7");
    client_ip("::1", "2001:db8::1", "1.1.1.1", out, sizeof out);
    assert_string_equal(out, "2001:db8::1");
    /* canonical text: zeros compressed, lower case */
    client_ip("", "2001:DB8:0:0:0:0:0:1", NULL, out, sizeof out);
    assert_string_equal(out, "2001:db8::1");
    /* an IPv4-mapped peer is printed as IPv4 */
    client_ip("", "::ffff:192.0.2.1", NULL, out, sizeof out);
    assert_string_equal(out, "192.0.2.1");
    /* IPv4 hop behind an IPv6 proxy */
    client_ip("::1", "::1", "198.51.100.4", out, sizeof out);
    assert_string_equal(out, "198.51.100.4");
}

/* A client controls everything left of what our proxy appends. A long X-Forwarded-For must not
 * let it choose which entry is seen as the right-most one. Found by this test; see the report. */
static void long_forwarded_for_cannot_hide_the_proxy_appended_client(void **state)
{
    (void)state;
    const char *spoof = "6.6.6.6";
    const char *real = "2.2.2.2";
    /* attacker part: "1.1.1.1," + spaces + "6.6.6.6", exactly 1023 bytes */
    char xff[2048];
    size_t head = strlen("1.1.1.1,"), attacker = 1023;
    memcpy(xff, "1.1.1.1,", head);
    memset(xff + head, ' ', attacker - head - strlen(spoof));
    memcpy(xff + attacker - strlen(spoof), spoof, strlen(spoof));
    /* what our proxy appends: the address it saw */
    snprintf(xff + attacker, sizeof xff - attacker, ", %s", real);
    assert_int_equal(strlen(xff), attacker + 2 + strlen(real));
    char out[64];
    client_ip("10.0.0.0/8", "10.0.0.1", xff, out, sizeof out);
    assert_string_not_equal(out, spoof);
    /* the right-most untrusted entry is the one our proxy saw; a cautious fallback to the
     * peer would also be safe */
    if (strcmp(out, real) != 0 && strcmp(out, "10.0.0.1") != 0)
        fail_msg("client ip \"%s\" is neither %s nor the peer", out, real);
}

static void longest_ipv6_text_fits_the_documented_46_bytes(void **state)
{
    (void)state;
    char out[46];
    client_ip("10.0.0.0/8", "10.0.0.1", "1111:2222:3333:4444:5555:6666:7777:8888", out, sizeof out);
    assert_string_equal(out, "1111:2222:3333:4444:5555:6666:7777:8888");
}

static void rate_key_is_the_ipv4_address_and_the_ipv6_slash_64(void **state)
{
    (void)state;
    char k[64];
    ink_ip_rate_key("192.0.2.1", k, sizeof k);
    assert_string_equal(k, "192.0.2.1");
    ink_ip_rate_key("192.0.2.2", k, sizeof k);
    assert_string_equal(k, "192.0.2.2");
    /* every address of one /64 shares a key; the next /64 does not */
    ink_ip_rate_key("2001:db8:1:2::1", k, sizeof k);
    assert_string_equal(k, "2001:db8:1:2::/64");
    ink_ip_rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff", k, sizeof k);
    assert_string_equal(k, "2001:db8:1:2::/64");
    ink_ip_rate_key("2001:db8:1:3::1", k, sizeof k);
    assert_string_equal(k, "2001:db8:1:3::/64");
    ink_ip_rate_key("::1", k, sizeof k);
    assert_string_equal(k, "::/64");
    /* a v4-mapped address is IPv4 */
    ink_ip_rate_key("::ffff:198.51.100.7", k, sizeof k);
    assert_string_equal(k, "198.51.100.7");
    ink_ip_rate_key("unknown", k, sizeof k);
    assert_string_equal(k, "unknown");
    /* the longest IPv6 prefix text still fits the documented 48 bytes */
    ink_ip_rate_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", k, 48);
    assert_string_equal(k, "ffff:ffff:ffff:ffff::/64");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ip_parse_maps_ipv4_into_ipv6_space),
        cmocka_unit_test(ip_parse_rejects_non_addresses),
        cmocka_unit_test(ipv4_cidr_contains_only_its_range),
        cmocka_unit_test(ipv4_slash_32_and_bare_address_match_exactly_one_host),
        cmocka_unit_test(ipv4_slash_0_matches_every_ipv4_but_no_ipv6),
        cmocka_unit_test(ipv6_cidrs),
        cmocka_unit_test(empty_and_blank_lists_parse_to_nothing),
        cmocka_unit_test(bad_cidrs_are_rejected),
        cmocka_unit_test(untrusted_peer_ignores_forwarded_for),
        cmocka_unit_test(no_forwarded_for_gives_the_peer),
        cmocka_unit_test(trusted_peer_uses_right_most_untrusted_entry),
        cmocka_unit_test(all_hops_trusted_gives_the_left_most),
        cmocka_unit_test(garbage_in_forwarded_for_never_yields_an_attacker_string),
        cmocka_unit_test(ipv6_peers_and_hops),
        cmocka_unit_test(long_forwarded_for_cannot_hide_the_proxy_appended_client),
        cmocka_unit_test(longest_ipv6_text_fits_the_documented_46_bytes),
        cmocka_unit_test(rate_key_is_the_ipv4_address_and_the_ipv6_slash_64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
