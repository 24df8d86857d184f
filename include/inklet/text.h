/** Small string helpers shared by the parsers of configuration values. */
#ifndef INKLET_TEXT_H
#define INKLET_TEXT_H

/** Trims ASCII white space at both ends of `s` in place; returns the first kept character. */
char *ink_trim(char *s);

#endif
