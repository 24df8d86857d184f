#include "inklet/deadline.h"

#include "inklet/timeutil.h"

static _Thread_local int64_t deadline_ms;

void ink_deadline_set(int64_t mono_ms)
{
    deadline_ms = mono_ms;
}

int64_t ink_deadline_get(void)
{
    return deadline_ms;
}

int64_t ink_deadline_pause(void)
{
    return ink_now_mono_ms();
}

void ink_deadline_resume(int64_t token)
{
    if (deadline_ms)
        deadline_ms += ink_now_mono_ms() - token;
}
