#include "inklet/validate.h"

#include <ctype.h>
#include <string.h>

bool ink_email_normalize(const char *in, char out[INK_EMAIL_MAX + 1])
{
    while (*in == ' ' || *in == '\t' || *in == '\r' || *in == '\n')
        in++;
    size_t n = strlen(in);
    while (n && (in[n - 1] == ' ' || in[n - 1] == '\t' || in[n - 1] == '\r' || in[n - 1] == '\n'))
        n--;
    if (n == 0 || n > INK_EMAIL_MAX)
        return false;
    size_t at = 0, ats = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
        if (c == '@') {
            ats++;
            at = i;
        }
        out[i] = (char)(c < 0x80 ? tolower(c) : c);
    }
    out[n] = '\0';
    return ats == 1 && at > 0 && at < n - 1;
}

bool ink_username_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= INK_USERNAME_MAX ||
            !(isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n >= INK_USERNAME_MIN;
}
