/** IP addresses and CIDR lists: the trusted-proxy check and client IP derivation. */
#ifndef INKLET_NETADDR_H
#define INKLET_NETADDR_H
#include <stdbool.h>
#include <stddef.h>

struct ink_cidr {
    unsigned char addr[16]; /* IPv4 stored as IPv4-mapped IPv6 */
    unsigned prefix;        /* 0..128 in the mapped space */
};

struct ink_cidr_list {
    struct ink_cidr *items;
    size_t count;
};

/** Parses "10.0.0.0/8, ::1, 192.168.1.1"; empty string gives an empty list. False on error. */
bool ink_cidr_list_parse(struct ink_cidr_list *list, const char *text);
void ink_cidr_list_free(struct ink_cidr_list *list);
/** Parses a textual IPv4/IPv6 address into 16 bytes (IPv4-mapped); false if not an address. */
bool ink_ip_parse(const char *text, unsigned char out[16]);
bool ink_cidr_list_contains(const struct ink_cidr_list *list, const unsigned char addr[16]);

/** Decides the client IP: the peer, unless the peer is trusted, in which case the right-most
 *  X-Forwarded-For entry that is not trusted (or the left-most if all are). `xff` may be NULL.
 *  Writes a canonical textual address into out (at least 46 bytes). */
void ink_client_ip(const struct ink_cidr_list *trusted, const char *peer, const char *xff,
                   char *out, size_t outlen);

/** The rate-limit bucket key of a client address (canonical text from ink_client_ip): an IPv4
 *  address stands for itself, an IPv6 address for its /64 ("2001:db8:1:2::/64"), since one
 *  subscriber is routinely given a whole /64. Anything that is not an address is used as is.
 *  `out` needs at least 48 bytes. */
void ink_ip_rate_key(const char *client_ip, char *out, size_t outlen);

#endif
