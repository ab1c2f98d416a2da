/* tok_unicode.h — Unicode tables for the tokenizers (generated into tok_unicode.c
 * by common/gen_tok_unicode.py; see there for what each table holds). Private to
 * common/tok*.c. */
#ifndef KB_TOK_UNICODE_H
#define KB_TOK_UNICODE_H

#include <stdint.h>

/* The general category of a code point, by its first letter (C split in two). */
enum tok_uc_class {
	TOK_UC_UNDEFINED = 0, /* Cn */
	TOK_UC_LETTER,        /* L* */
	TOK_UC_NUMBER,        /* N* */
	TOK_UC_MARK,          /* M* */
	TOK_UC_PUNCT,         /* P* */
	TOK_UC_SYMBOL,        /* S* */
	TOK_UC_SEPARATOR,     /* Z* */
	TOK_UC_CONTROL,       /* Cc Cf Co Cs */
};

extern const char tok_unicode_version[];
extern const uint32_t tok_uc_class_start[]; /* [tok_uc_n_class], ascending, [0] = 0 */
extern const uint8_t tok_uc_class_val[];    /* [tok_uc_n_class]: enum tok_uc_class of the run */
extern const uint32_t tok_uc_n_class;
extern const uint32_t tok_uc_lower[][2];    /* [tok_uc_n_lower]: {code point, lowercase}, ascending */
extern const uint32_t tok_uc_n_lower;
extern const uint32_t tok_uc_nfd[][3];      /* [tok_uc_n_nfd]: {first, last, first of NFD}, ascending */
extern const uint32_t tok_uc_n_nfd;

#endif
