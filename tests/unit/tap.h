/* tap.h — a tiny TAP producer for the C unit tests (run by prove).
 *
 *   ok(cond, "name %d", i);   plan is printed at the end by done_testing()
 *   skip("why %d", i)         one test skipped ("ok N # SKIP why")
 *   skip_all("why")           when a test needs ../shared and it is absent
 *   tap_shared(rel)           path of a file under $KVBLEND_TESTDATA or ../shared, or NULL
 *   tap_tmpdir()              a fresh directory under $TMPDIR (else /tmp), removed
 *                             with what it holds when the test exits
 *   tap_mkstemp(buf, n, stem) a new file "stem-XXXXXX" in it (mkstemp): its descriptor
 */
#ifndef KB_TAP_H
#define KB_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

static __attribute__((unused)) int tap_n, tap_failed;
static __attribute__((unused)) unsigned long long tap_seed_used; /* 0: tap_seed() not called */

__attribute__((format(printf, 2, 3))) static int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond) {
		/* prove hides standard output: say it on standard error too, so a
		 * failure in a CI log names itself */
		fprintf(stderr, "# failed test %d: ", tap_n);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, "\n");
		tap_failed++;
	}
	return cond;
}

__attribute__((format(printf, 1, 2), unused)) static void diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static __attribute__((unused)) int done_testing(void)
{
	printf("1..%d\n", tap_n);
	if (tap_failed && tap_seed_used)
		fprintf(stderr, "# random data from seed %llu: KVBLEND_SEED=%llu replays it\n", tap_seed_used,
			tap_seed_used);
	return tap_failed ? 1 : 0;
}

__attribute__((format(printf, 1, 2), unused)) static void skip(const char *fmt, ...)
{
	va_list ap;
	printf("ok %d # SKIP ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static __attribute__((unused)) void skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

/* Path of rel under the shared test data (static buffer), or NULL if absent. */
static __attribute__((unused)) const char *tap_shared(const char *rel)
{
	static char buf[4096];
	const char *dirs[] = { getenv("KVBLEND_TESTDATA"), "../shared", "../../shared" };
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		if (!dirs[i] || !*dirs[i])
			continue;
		snprintf(buf, sizeof buf, "%s/%s", dirs[i], rel);
		if (access(buf, R_OK) == 0)
			return buf;
	}
	return NULL;
}

static __attribute__((unused)) char tap_tmp[4096];

static __attribute__((unused)) void tap_tmp_remove(void)
{
	if (tap_tmp[0] && getpid() == (pid_t)strtol(strrchr(tap_tmp, '.') + 1, NULL, 10)) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tap_tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "# could not remove %s\n", tap_tmp);
	}
}

/* A new directory "$TMPDIR/kvblend-NAME.XXXXXX.PID" (TMPDIR unset or empty:
 * /tmp), made once per process and removed with its contents at exit (by the
 * process that made it, not by forked children). Exits the test when it cannot
 * be made. */
static __attribute__((unused)) const char *tap_tmpdir(void)
{
	if (tap_tmp[0])
		return tap_tmp;
	const char *base = getenv("TMPDIR");
	char tmpl[4000];
	snprintf(tmpl, sizeof tmpl, "%s/kvblend-test.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpl)) {
		printf("Bail out! cannot make a temporary directory under %s\n", base && *base ? base : "/tmp");
		exit(1);
	}
	/* the pid in the name tells the maker from forked children at exit */
	snprintf(tap_tmp, sizeof tap_tmp, "%s.%ld", tmpl, (long)getpid());
	if (rename(tmpl, tap_tmp) != 0) {
		printf("Bail out! cannot rename %s\n", tmpl);
		exit(1);
	}
	atexit(tap_tmp_remove);
	return tap_tmp;
}

/* mkstemp of "<tap_tmpdir()>/stem-XXXXXX" into buf[n]: the descriptor, or -1. */
static __attribute__((unused)) int tap_mkstemp(char *buf, size_t n, const char *stem)
{
	snprintf(buf, n, "%s/%s-XXXXXX", tap_tmpdir(), stem);
	return mkstemp(buf);
}

/* Normalized error ||a - b|| / max(||b||, tiny). */
static __attribute__((unused)) double tap_nerr(const float *a, const float *b, long n)
{
	double num = 0, den = 0;
	for (long i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

/* Uniform floats in [lo, hi) (xorshift64*). Fresh each run: tap_seed() seeds from
 * $KVBLEND_SEED or the clock and prints the seed, so a failure can be replayed. */
static __attribute__((unused)) unsigned long long tap_rng = 0x9E3779B97F4A7C15ull;
static __attribute__((unused)) void tap_seed(void)
{
	const char *s = getenv("KVBLEND_SEED");
	unsigned long long seed = s ? strtoull(s, NULL, 0) : (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
	tap_rng = seed ? seed : 1;
	tap_seed_used = tap_rng;
	printf("# seed %llu (KVBLEND_SEED=%llu to replay)\n", seed, seed);
}
static __attribute__((unused)) float tap_randf(float lo, float hi)
{
	tap_rng ^= tap_rng >> 12;
	tap_rng ^= tap_rng << 25;
	tap_rng ^= tap_rng >> 27;
	unsigned long long r = tap_rng * 2685821657736338717ull;
	return lo + (hi - lo) * (float)((r >> 40) * (1.0 / 16777216.0));
}

#endif
