#include "promtext.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ftype { F_COUNTER, F_GAUGE, F_HISTOGRAM, F_SUMMARY, F_UNTYPED };

#define MAX_FAMILIES 512

struct family {
    char name[128];
    bool help, type;
    enum ftype t;
    bool closed; /* another family's line came after its samples */
};

/* one histogram series (its labels without le) being checked */
struct hist {
    char key[512];
    double last_le, last_count, inf_count;
    bool any_bucket, inf, sum, count;
};

struct parser {
    struct family *fam; /* MAX_FAMILIES */
    size_t nfam;
    struct family *cur;
    char **series; /* every series key seen, for duplicates */
    size_t nseries, capseries;
    struct hist *hist;
    size_t nhist, caphist;
    unsigned line;
    char *err;
    size_t err_len;
};

static bool fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct parser *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->err_len, "line %u: ", p->line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->err_len)
        vsnprintf(p->err + n, p->err_len - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool metric_name(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static struct family *find_family(struct parser *p, const char *name)
{
    for (size_t i = 0; i < p->nfam; i++)
        if (strcmp(p->fam[i].name, name) == 0)
            return &p->fam[i];
    return NULL;
}

/* a family for a HELP/TYPE line: new, or the current one; never one already closed */
static struct family *declare(struct parser *p, const char *name)
{
    struct family *f = find_family(p, name);
    if (f) {
        if (f != p->cur || f->closed)
            return NULL;
        return f;
    }
    if (p->cur)
        p->cur->closed = true;
    if (p->nfam == MAX_FAMILIES) /* fixed: p->cur points into the array */
        return NULL;
    f = &p->fam[p->nfam++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    p->cur = f;
    return f;
}

static bool docstring_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\\' && s[1] != '\\' && s[1] != 'n')
            return false;
        else if (*s == '\\')
            s++;
    return true;
}

static bool comment_line(struct parser *p, char *line)
{
    char *kw = line + 2;
    bool help = strncmp(kw, "HELP ", 5) == 0, type = strncmp(kw, "TYPE ", 5) == 0;
    if (line[1] != ' ' || (!help && !type))
        return fail(p, "a comment that is neither HELP nor TYPE");
    char *name = kw + 5, *sp = strchr(name, ' ');
    if (!sp || sp == name)
        return fail(p, "%s without a name and text", help ? "HELP" : "TYPE");
    *sp = '\0';
    char *rest = sp + 1;
    if (!metric_name(name, strlen(name)))
        return fail(p, "bad metric name '%s'", name);
    struct family *f = declare(p, name);
    if (!f)
        return fail(p, "%s for '%s' after its samples or another family", kw, name);
    if (help) {
        if (f->help)
            return fail(p, "a second HELP for '%s'", name);
        if (!*rest || !docstring_ok(rest))
            return fail(p, "empty or badly escaped HELP text for '%s'", name);
        f->help = true;
        return true;
    }
    if (f->type)
        return fail(p, "a second TYPE for '%s'", name);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (int i = 0; i < 5; i++)
        if (strcmp(rest, types[i]) == 0) {
            f->type = true;
            f->t = (enum ftype)i;
            if (f->t == F_COUNTER && !ends_with(name, "_total"))
                return fail(p, "counter '%s' does not end in _total", name);
            if (f->t != F_COUNTER && ends_with(name, "_total"))
                return fail(p, "'%s' ends in _total but is not a counter", name);
            if (f->t == F_HISTOGRAM && !ends_with(name, "_seconds") && !ends_with(name, "_bytes"))
                return fail(p, "histogram '%s' is not in a base unit (_seconds, _bytes)", name);
            if (f->t == F_SUMMARY || f->t == F_UNTYPED)
                return fail(p, "'%s' is a %s; we only export counters, gauges, histograms", name,
                            rest);
            return true;
        }
    return fail(p, "unknown TYPE '%s'", rest);
}

/* parses {a="x",b="y"} at *s; writes the labels in key form (without le) and le's raw value */
static bool labels(struct parser *p, const char **s, char *key, size_t key_len, char *le,
                   size_t le_len, bool *has_le)
{
    const char *c = *s;
    size_t k = 0;
    char names[16][64];
    size_t nn = 0;
    *has_le = false;
    key[0] = '\0';
    if (*c != '{')
        return true;
    c++;
    while (*c != '}') {
        const char *n0 = c;
        while (isalnum((unsigned char)*c) || *c == '_')
            c++;
        size_t nlen = (size_t)(c - n0);
        if (!nlen || isdigit((unsigned char)*n0) || nlen >= 64)
            return fail(p, "bad label name");
        if (nlen >= 2 && n0[0] == '_' && n0[1] == '_')
            return fail(p, "label name '%.*s' is reserved", (int)nlen, n0);
        for (size_t i = 0; i < nn; i++)
            if (strlen(names[i]) == nlen && memcmp(names[i], n0, nlen) == 0)
                return fail(p, "label '%.*s' twice", (int)nlen, n0);
        if (nn == 16)
            return fail(p, "more than 16 labels");
        memcpy(names[nn], n0, nlen);
        names[nn++][nlen] = '\0';
        if (c[0] != '=' || c[1] != '"')
            return fail(p, "label '%.*s' without =\"value\"", (int)nlen, n0);
        c += 2;
        const char *v0 = c;
        while (*c && *c != '"') {
            if (*c == '\\') {
                if (c[1] != '\\' && c[1] != '"' && c[1] != 'n')
                    return fail(p, "bad escape in the value of label '%.*s'", (int)nlen, n0);
                c++;
            }
            c++;
        }
        if (*c != '"')
            return fail(p, "unterminated label value");
        size_t vlen = (size_t)(c - v0);
        c++;
        bool is_le = nlen == 2 && memcmp(n0, "le", 2) == 0;
        if (is_le) {
            *has_le = true;
            snprintf(le, le_len, "%.*s", (int)vlen, v0);
        } else {
            int w = snprintf(key + k, key_len - k, "%s%.*s=\"%.*s\"", k ? "," : "", (int)nlen, n0,
                             (int)vlen, v0);
            if (w < 0 || (size_t)w >= key_len - k)
                return fail(p, "labels too long");
            k += (size_t)w;
        }
        if (*c == ',') {
            c++;
            if (*c == '}')
                return fail(p, "a trailing comma in the labels");
        } else if (*c != '}') {
            return fail(p, "labels not separated by commas");
        }
    }
    *s = c + 1;
    return true;
}

static bool number(const char *s, double *out)
{
    if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 || strcmp(s, "NaN") == 0) {
        *out = strcmp(s, "NaN") == 0 ? NAN : s[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end;
    *out = strtod(s, &end);
    /* strtod also takes "inf", "nan" and hex: the format's Go parser does too, we do not */
    return *end == '\0' && !strpbrk(s, "xXiInN");
}

static struct hist *hist_for(struct parser *p, const char *key)
{
    for (size_t i = 0; i < p->nhist; i++)
        if (strcmp(p->hist[i].key, key) == 0)
            return &p->hist[i];
    if (p->nhist == p->caphist) {
        p->caphist = p->caphist ? p->caphist * 2 : 16;
        p->hist = realloc(p->hist, p->caphist * sizeof *p->hist);
    }
    struct hist *h = &p->hist[p->nhist++];
    memset(h, 0, sizeof *h);
    snprintf(h->key, sizeof h->key, "%s", key);
    h->last_le = -INFINITY;
    return h;
}

/* every histogram series of the family that just ended is complete */
static bool close_histograms(struct parser *p)
{
    for (size_t i = 0; i < p->nhist; i++) {
        struct hist *h = &p->hist[i];
        if (!h->inf || !h->sum || !h->count)
            return fail(p, "histogram series {%s} lacks its %s", h->key,
                        !h->inf   ? "+Inf bucket"
                        : !h->sum ? "_sum"
                                  : "_count");
        if (h->last_count != h->inf_count)
            return fail(p, "histogram series {%s}: _count %g differs from the +Inf bucket %g",
                        h->key, h->last_count, h->inf_count);
    }
    p->nhist = 0;
    return true;
}

static bool remember_series(struct parser *p, const char *name, const char *key, const char *le)
{
    size_t n = strlen(name) + strlen(key) + strlen(le) + 8;
    char *s = malloc(n);
    snprintf(s, n, "%s{%s|%s}", name, key, le);
    for (size_t i = 0; i < p->nseries; i++)
        if (strcmp(p->series[i], s) == 0) {
            free(s);
            return fail(p, "series %s{%s%s%s} twice", name, key, *le ? " le=" : "", le);
        }
    if (p->nseries == p->capseries) {
        p->capseries = p->capseries ? p->capseries * 2 : 256;
        p->series = realloc(p->series, p->capseries * sizeof *p->series);
    }
    p->series[p->nseries++] = s;
    return true;
}

static bool sample_line(struct parser *p, const char *line)
{
    const char *c = line;
    while (isalnum((unsigned char)*c) || *c == '_' || *c == ':')
        c++;
    size_t nlen = (size_t)(c - line);
    char name[160];
    if (!metric_name(line, nlen) || nlen >= sizeof name)
        return fail(p, "bad metric name");
    memcpy(name, line, nlen);
    name[nlen] = '\0';
    if (strncmp(name, "inklet_", 7) != 0 && strncmp(name, "process_", 8) != 0)
        return fail(p, "'%s' is not named inklet_* or process_*", name);
    if (strstr(name, "_ms") && (ends_with(name, "_ms") || strstr(name, "_ms_")))
        return fail(p, "'%s' is in milliseconds; use seconds", name);
    if (strstr(name, "millisecond"))
        return fail(p, "'%s' is in milliseconds; use seconds", name);
    struct family *f = p->cur;
    if (!f || !f->type || !f->help)
        return fail(p, "sample '%s' before its family's HELP and TYPE", name);
    const char *suffix = NULL;
    if (f->t == F_HISTOGRAM) {
        size_t fl = strlen(f->name);
        if (strncmp(name, f->name, fl) == 0)
            suffix = name + fl;
        if (!suffix ||
            (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count")))
            return fail(p, "sample '%s' inside histogram family '%s'", name, f->name);
    } else if (strcmp(name, f->name) != 0) {
        return fail(p, "sample '%s' inside family '%s' (no TYPE of its own)", name, f->name);
    }
    char key[512], le[64] = "";
    bool has_le;
    if (!labels(p, &c, key, sizeof key, le, sizeof le, &has_le))
        return false;
    if (*c != ' ')
        return fail(p, "no single space before the value");
    c++;
    if (strchr(c, ' '))
        return fail(p, "a timestamp or trailing text after the value");
    double v;
    if (!number(c, &v))
        return fail(p, "value '%s' is not a number", c);
    if (!remember_series(p, name, key, le))
        return false;
    if (f->t == F_COUNTER && (!isfinite(v) || v < 0))
        return fail(p, "counter %s is %s", name, c);
    if (f->t != F_HISTOGRAM) {
        if (has_le)
            return fail(p, "an le label outside a histogram");
        return true;
    }
    struct hist *h = hist_for(p, key);
    if (strcmp(suffix, "_bucket") == 0) {
        if (!has_le)
            return fail(p, "%s without le", name);
        if (h->inf)
            return fail(p, "a bucket after +Inf");
        double bound;
        if (!number(le, &bound) || isnan(bound))
            return fail(p, "le=\"%s\" is not a number", le);
        if (bound <= h->last_le)
            return fail(p, "le=\"%s\" does not increase", le);
        if (v != floor(v) || v < 0 || (h->any_bucket && v < h->last_count))
            return fail(p, "bucket le=\"%s\" = %s is not a cumulative count", le, c);
        h->last_le = bound;
        h->last_count = v;
        h->any_bucket = true;
        if (isinf(bound)) {
            h->inf = true;
            h->inf_count = v;
        }
        return true;
    }
    if (has_le)
        return fail(p, "an le label on %s", name);
    if (!h->inf)
        return fail(p, "%s before the +Inf bucket", name);
    if (strcmp(suffix, "_sum") == 0) {
        if (h->sum || !isfinite(v) || v < 0)
            return fail(p, "bad or second %s", name);
        h->sum = true;
        return true;
    }
    if (h->count || v != h->inf_count)
        return fail(p, "%s %s is not the +Inf bucket's %g", name, c, h->inf_count);
    h->count = true;
    h->last_count = v;
    return true;
}

bool prom_parse(const char *text, struct prom_page *page, char *err, size_t err_len)
{
    memset(page, 0, sizeof *page);
    size_t len = strlen(text);
    if (!len || text[len - 1] != '\n') {
        snprintf(err, err_len, "the page is empty or does not end with a newline");
        return false;
    }
    struct parser p = {
        .err = err, .err_len = err_len, .fam = calloc(MAX_FAMILIES, sizeof(struct family))};
    bool ok = true;
    char *copy = strdup(text);
    struct family *prev = NULL;
    for (char *line = copy, *nl; ok && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        p.line++;
        if (strchr(line, '\r'))
            ok = fail(&p, "a carriage return");
        else if (!*line)
            ok = fail(&p, "a blank line");
        else if (line[0] == '#')
            ok = comment_line(&p, line);
        else
            ok = sample_line(&p, line);
        if (ok && p.cur != prev) { /* a new family started: the previous one is complete */
            if (prev && prev->t == F_HISTOGRAM)
                ok = close_histograms(&p);
            prev = p.cur;
        }
    }
    if (ok && prev && prev->t == F_HISTOGRAM)
        ok = close_histograms(&p);
    for (size_t i = 0; ok && i < p.nfam; i++)
        if (!p.fam[i].help || !p.fam[i].type)
            ok = fail(&p, "family '%s' lacks its %s", p.fam[i].name,
                      p.fam[i].help ? "TYPE" : "HELP");
    if (ok) {
        page->families = p.nfam;
        page->samples = p.nseries;
        page->family_names = calloc(p.nfam ? p.nfam : 1, sizeof *page->family_names);
        for (size_t i = 0; i < p.nfam; i++)
            page->family_names[i] = strdup(p.fam[i].name);
    }
    for (size_t i = 0; i < p.nseries; i++)
        free(p.series[i]);
    free(p.series);
    free(p.fam);
    free(p.hist);
    free(copy);
    return ok;
}

bool prom_has_family(const struct prom_page *page, const char *name)
{
    for (size_t i = 0; i < page->families; i++)
        if (strcmp(page->family_names[i], name) == 0)
            return true;
    return false;
}

void prom_page_free(struct prom_page *page)
{
    for (size_t i = 0; i < page->families; i++)
        free(page->family_names[i]);
    free(page->family_names);
    memset(page, 0, sizeof *page);
}
