#include "inklet/json_text.h"

#include "inklet/timeutil.h"

void ink_jt_key(struct ink_sb *sb, const char *key)
{
    ink_sb_puts(sb, sb->len && sb->buf[sb->len - 1] == '{' ? "\"" : ",\"");
    ink_sb_puts(sb, key);
    ink_sb_puts(sb, "\":");
}

void ink_jt_str(struct ink_sb *sb, const char *key, const char *value)
{
    ink_jt_key(sb, key);
    if (!value) {
        ink_sb_puts(sb, "null");
        return;
    }
    ink_sb_puts(sb, "\"");
    ink_sb_escaped(sb, INK_ESC_JSON, value, ink_sb_room(sb));
    ink_sb_puts(sb, "\"");
}

void ink_jt_time(struct ink_sb *sb, const char *key, long long epoch)
{
    ink_jt_key(sb, key);
    if (epoch <= 0) {
        ink_sb_puts(sb, "null");
        return;
    }
    char t[21];
    ink_time_rfc3339((time_t)epoch, t);
    ink_sb_puts(sb, "\"");
    ink_sb_puts(sb, t);
    ink_sb_puts(sb, "\"");
}

void ink_jt_bool(struct ink_sb *sb, const char *key, bool value)
{
    ink_jt_key(sb, key);
    ink_sb_puts(sb, value ? "true" : "false");
}
