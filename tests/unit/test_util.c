/* test_util.c — the helpers of common/util.c that others build on: kb_grow
 * (appending one element, jumping far past the capacity, the first size, an
 * impossible size) and the overflow-checked size arithmetic. */
#include <stdint.h>

#include "tap.h"
#include "util.h"

static void test_grow(void)
{
	int *v = NULL;
	size_t cap = 0;
	int good = 1;
	for (size_t n = 0; n < 1000; n++) { /* appending one at a time */
		good &= kb_grow(&v, &cap, n, sizeof *v, 4) == KB_OK && cap > n;
		if (good)
			v[n] = (int)n;
	}
	for (size_t n = 0; n < 1000 && good; n++)
		good &= v[n] == (int)n;
	ok(good, "kb_grow: 1000 appends keep every element, cap > n each time");

	size_t c0 = cap;
	ok(kb_grow(&v, &cap, 10, sizeof *v, 4) == KB_OK && cap == c0, "kb_grow: n below the capacity changes nothing");
	int rc = kb_grow(&v, &cap, 100000, sizeof *v, 4);
	ok(rc == KB_OK && cap > 100000 && v[999] == 999,
	   "kb_grow: n far past the capacity grows until it fits (cap %zu), the contents kept", cap);
	v[100000] = 7; /* writable (ASan checks it) */
	free(v);

	char *s = NULL;
	size_t sc = 0;
	ok(kb_grow(&s, &sc, 0, 1, 0) == KB_OK && sc >= 1, "kb_grow: a first size of 0 still makes room");
	ok(kb_grow(&s, &sc, SIZE_MAX / 2 + 1, 1, 0) == KB_ERR_NOMEM && sc >= 1 && s,
	   "kb_grow: an impossible size is KB_ERR_NOMEM, the array as it was");
	free(s);
}

static void test_sizes(void)
{
	size_t r;
	ok(kb_mul_size(3, 5, &r) == 0 && r == 15, "kb_mul_size 3 x 5");
	ok(kb_mul_size(SIZE_MAX / 2 + 1, 2, &r) == -1, "kb_mul_size overflow is -1");
}

int main(void)
{
	test_grow();
	test_sizes();
	return done_testing();
}
