# Writes a C file defining `const char ${NAME}[]` (NUL-terminated) and `${NAME}_len` from IN.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE ${OUT}.tmp "#include <stddef.h>\nconst char ${NAME}[] = {${hex} 0x00};\nconst size_t ${NAME}_len = ${n};\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
