/* cli.h — what every tool's main() shares: one option grammar, messages named
 * after the tool, exit codes (0 ok, 1 runtime error or bad data, 2 usage),
 * number and size parsing, a checked stdout, and the helpers the shell
 * completions call. Header-only.
 *
 * A tool's main() is shaped like this:
 *
 *	static const struct option longopts[] = {
 *		{ "model", required_argument, NULL, 'm' },
 *		...
 *		CLI_COMMON_OPTIONS,     // --help --version --complete-options --complete-values
 *		{ NULL, 0, NULL, 0 },
 *	};
 *	static const struct cli cli = { "kvblend-x", "m:vh", longopts, usage, values };
 *	...
 *	cli_start(&cli);
 *	while ((c = cli_next(&cli, argc, argv)) != -1)
 *		switch (c) { case 'm': ...; default: cli_unreachable(c); }
 *
 * cli_next() answers the common options itself and turns every mistake
 * (unknown option, with a suggestion; missing or unwanted value) into one usage
 * message; a tool's switch sees only its own options.
 *
 * The grammar (kvblend(7) lists it): a short option letter means one thing in
 * every tool — the long option it stands for is the same everywhere, and
 * tests/cli/completion.t checks that over every tool's --complete-options. */
#ifndef KB_CLI_H
#define KB_CLI_H

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pull.h"
#include "template.h"

#ifndef KVBLEND_VERSION
#define KVBLEND_VERSION "unknown"
#endif

static const char *cli_tool = "kvblend";

/* The values of the options every tool has (above any character a tool uses). */
enum { CLI_VERSION = 0x1000, CLI_COMPLETE_OPTIONS, CLI_COMPLETE_VALUES };
/* Long options with no short letter that several tools share. */
enum { CLI_REMOTE = 0x1100 };
#define CLI_REMOTE_OPTION { "remote", required_argument, NULL, CLI_REMOTE }
#define CLI_REMOTE_HELP \
	"      --remote URL        the store's remote tier, s3://BUCKET/PREFIX or http(s)://... (default\n" \
	"                          $KVBLEND_REMOTE): missing caches are fetched from it, new ones written\n" \
	"                          to it (kvblend(7), MANY MACHINES)\n"

#define CLI_COMMON_OPTIONS                                                      \
	{ "help", no_argument, NULL, 'h' },                                     \
	{ "version", no_argument, NULL, CLI_VERSION },                          \
	{ "complete-options", no_argument, NULL, CLI_COMPLETE_OPTIONS },        \
	{ "complete-values", required_argument, NULL, CLI_COMPLETE_VALUES }

/* The words an option's value may be, for the completions: "--mode" and
 * "blend full reuse prefix epic" (space-separated). */
struct cli_values {
	const char *option;
	const char *words;
};

struct cli {
	const char *tool;                 /* "kvblend-chunk" */
	const char *shortopts;            /* getopt's, without a leading ':' */
	const struct option *longopts;    /* ends with CLI_COMMON_OPTIONS, then zeros */
	void (*usage)(void);              /* --help on stdout */
	const struct cli_values *values;  /* ends with { NULL, NULL }; may be NULL */
};

/* "kvblend-<tool>: <message>" on stderr, exit 1. */
__attribute__((format(printf, 1, 2), noreturn, unused)) static void cli_die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cli_tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* A usage error: the message, a hint, exit 2. */
__attribute__((format(printf, 1, 2), noreturn, unused)) static void cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cli_tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", cli_tool);
	exit(2);
}

/* ---- stdout: every write error is an exit 1 ---- */

/* "write error: REASON" and exit 1 — or, for a reader that went away (EPIPE,
 * when SIGPIPE is ignored), die quietly of SIGPIPE as a pipe's writer does. */
__attribute__((noreturn)) static void cli_write_failed(int err)
{
	if (err == EPIPE) {
		signal(SIGPIPE, SIG_DFL);
		raise(SIGPIPE);
	}
	if (err)
		fprintf(stderr, "%s: write error: %s\n", cli_tool, strerror(err));
	else
		fprintf(stderr, "%s: write error\n", cli_tool);
	_exit(1);
}

/* A problem the tool goes on after (a bad record, told by the record loop):
 * "kvblend-<tool>: <msg>" on stderr. The shape of records.h's rec_report_fn. */
static __attribute__((unused)) void cli_report(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "%s: %s\n", cli_tool, msg);
}

/* Flush stdout now (streaming output); a failure ends the tool (exit 1). */
static __attribute__((unused)) void cli_flush(void)
{
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout))
		cli_write_failed(errno);
}

/* At exit: stdout must have been written in full (as gnulib's close_stdout). */
static void cli_close_stdout(void)
{
	int had_error = ferror(stdout);
	errno = 0;
	if (fclose(stdout) != 0 || had_error)
		cli_write_failed(errno);
}

/* ---- options ---- */

/* Edit distance of a and b (optimal string alignment: a swap of two
 * neighbouring letters counts 1); gives up above 9. */
static size_t cli_distance(const char *a, size_t na, const char *b, size_t nb)
{
	if (na > 40 || nb > 40)
		return 10;
	size_t d[41][41];
	for (size_t i = 0; i <= na; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= nb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= na; i++)
		for (size_t j = 1; j <= nb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[na][nb];
}

/* Whether the words of name[0..n) ("max-bytes") are words of opt, in order
 * ("max-doc-bytes"). */
static bool cli_words_in(const char *name, size_t n, const char *opt)
{
	const char *end = name + n;
	while (name < end) {
		size_t w = strcspn(name, "-");
		if (name + w > end)
			w = (size_t)(end - name);
		for (;;) {
			size_t ow = strcspn(opt, "-");
			if (!*opt)
				return false;
			bool same = ow == w && !strncmp(opt, name, w);
			opt += ow + (opt[ow] == '-');
			if (same)
				break;
		}
		name += w + (name + w < end);
	}
	return true;
}

/* The long option closest to name[0..n) ("max-token" → "max-tokens"), or
 * NULL when none is close: within a third of the name's length (at least 1),
 * or holding its words ("max-bytes" → "max-doc-bytes"). */
static const char *cli_suggest(const struct option *opts, const char *name, size_t n)
{
	const char *best = NULL;
	size_t best_d = 0;
	for (const struct option *o = opts; o->name; o++) {
		if (!strncmp(o->name, "complete-", 9))
			continue;
		size_t d = cli_distance(name, n, o->name, strlen(o->name));
		bool close = d <= (n / 3 > 1 ? n / 3 : 1) || (n >= 3 && cli_words_in(name, n, o->name));
		if (close && (!best || d < best_d)) {
			best = o->name;
			best_d = d;
		}
	}
	return best;
}

/* getopt's complaint about argv[optind - 1] (or the short option optopt) as a
 * usage error: an unknown option (with the closest one, if any is close), an
 * ambiguous abbreviation, a missing or an unwanted value. */
__attribute__((noreturn)) static void cli_bad_option(const struct cli *c, char **argv, int missing)
{
	// getopt has moved past a long option it complains about, but not always
	// past a group of short ones (-vx): a long one is argv[optind - 1], named so.
	const char *arg = argv[optind - 1];
	const char *name = arg + 2;
	size_t n = strcspn(name, "=");
	bool is_long = !strncmp(arg, "--", 2) && !optopt;
	for (const struct option *o = c->longopts; o->name && !is_long; o++)
		is_long = !strncmp(arg, "--", 2) && o->val == optopt && !strncmp(o->name, name, n);
	if (!is_long) {
		if (missing)
			cli_usage_error("option '-%c' needs a value", optopt);
		cli_usage_error("unknown option '-%c'", optopt);
	}
	if (missing)
		cli_usage_error("option '--%.*s' needs a value", (int)n, name);
	if (optopt) // a known option (val is never 0 here) given a value it does not take
		cli_usage_error("option '--%.*s' takes no value", (int)n, name);
	size_t n_prefix = 0;
	for (const struct option *o = c->longopts; o->name; o++)
		n_prefix += !strncmp(o->name, name, n);
	if (n_prefix > 1) {
		char list[512] = "";
		size_t len = 0;
		for (const struct option *o = c->longopts; o->name && len < sizeof list; o++)
			if (!strncmp(o->name, name, n))
				len += (size_t)snprintf(list + len, sizeof list - len, "%s--%s", len ? ", " : "", o->name);
		cli_usage_error("option '--%.*s' is ambiguous: %s", (int)n, name, list);
	}
	const char *near = cli_suggest(c->longopts, name, n);
	if (near)
		cli_usage_error("unknown option '--%.*s' (did you mean '--%s'?)", (int)n, name, near);
	cli_usage_error("unknown option '--%.*s'", (int)n, name);
}

/* --complete-options: one option per line, "--name" plus "=" when it takes a
 * value, then " -x" when a short option stands for it (completions ask the
 * tool, so they never drift; the grammar test reads the pairs). */
static void cli_complete_options(const struct cli *c)
{
	for (const struct option *o = c->longopts; o->name; o++) {
		if (!strncmp(o->name, "complete-", 9))
			continue;
		printf("--%s%s", o->name, o->has_arg == required_argument ? "=" : "");
		if (o->val > 0 && o->val < 128 && o->val != ':' && strchr(c->shortopts, o->val))
			printf(" -%c", o->val);
		putchar('\n');
	}
}

/* --complete-values OPT: the words OPT's value may be, one per line. */
static void cli_complete_values(const struct cli *c, const char *opt)
{
	const char *name = opt + strspn(opt, "-");
	for (const struct cli_values *v = c->values; v && v->option; v++) {
		if (strcmp(v->option + strspn(v->option, "-"), name) != 0)
			continue;
		for (const char *w = v->words; *w;) {
			size_t n = strcspn(w, " ");
			if (n)
				printf("%.*s\n", (int)n, w);
			w += n + (w[n] == ' ');
		}
		return;
	}
	const struct option *o = c->longopts;
	while (o->name && strcmp(o->name, name) != 0)
		o++;
	if (!o->name)
		cli_usage_error("--complete-values: unknown option '%s'", opt);
	// a known option whose values are not a fixed list: no words
}

/* A download's progress (a model by URL, pull.h), drawn in place on a
 * terminal at most 10 times a second; nothing when stderr is not one. */
static void cli_download_progress(void *ctx, const char *name, uint64_t done, uint64_t total)
{
	static double last;
	static bool drawn;
	(void)ctx;
	if (!isatty(STDERR_FILENO))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
	bool end = total && done >= total;
	if (!end && now - last < 0.1)
		return;
	last = now;
	if (total) {
		int w = 30, f = (int)(w * (double)done / (double)total);
		fprintf(stderr, "\r%s: %s [%.*s%*s] %.1f/%.1f MiB (%.0f%%)", cli_tool, name, f,
			"##############################", w - f, "", done / 1048576.0, total / 1048576.0,
			100.0 * (double)done / (double)total);
	} else {
		fprintf(stderr, "\r%s: %s %.1f MiB", cli_tool, name, done / 1048576.0);
	}
	drawn = true;
	if (end && drawn) {
		fputc('\n', stderr);
		drawn = false;
	}
}

/* First thing in main(): name the tool in messages, check stdout at exit,
 * and show the progress of a model downloaded by URL (-m https://…). */
static __attribute__((unused)) void cli_start(const struct cli *c)
{
	cli_tool = c->tool;
	atexit(cli_close_stdout);
	pull_set_progress(cli_download_progress, NULL);
}

/* The next of the tool's own options (getopt_long's value, optarg set), or -1
 * at the first operand. --help, --version, --complete-options and
 * --complete-values are answered here (exit 0); a mistake is a usage error
 * (exit 2). */
static __attribute__((unused)) int cli_next(const struct cli *c, int argc, char **argv)
{
	char spec[64];
	snprintf(spec, sizeof spec, ":%s", c->shortopts); // ':' tells a missing value from an unknown option
	opterr = 0;
	optopt = 0;
	int ch = getopt_long(argc, argv, spec, c->longopts, NULL);
	switch (ch) {
	case ':': cli_bad_option(c, argv, 1);
	case '?': cli_bad_option(c, argv, 0);
	case 'h': c->usage(); exit(0);
	case CLI_VERSION: printf("%s %s\n", c->tool, KVBLEND_VERSION); exit(0);
	case CLI_COMPLETE_OPTIONS: cli_complete_options(c); exit(0);
	case CLI_COMPLETE_VALUES: cli_complete_values(c, optarg); exit(0);
	default: return ch;
	}
}

/* For a tool's switch: an option in the table that the switch forgot. */
__attribute__((noreturn, unused)) static void cli_unreachable(int ch)
{
	fprintf(stderr, "%s: option %d is not handled (a bug)\n", cli_tool, ch);
	abort();
}

/* ---- values ---- */

static __attribute__((unused)) long cli_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		cli_usage_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
	return v;
}

static __attribute__((unused)) double cli_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		cli_usage_error("%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
	return v;
}

/* Parse a size into *out: digits, an optional fraction (".5"), then an
 * optional unit: k, M, G, T, each a power of 1024 (as du, ls -h and sort -h
 * count), written alone, with "B" or with "iB", in either case ("64k", "64K",
 * "64KB", "64KiB", "1.5g"); "B" or nothing means bytes.
 * Returns 0, or -1 when s is not a size or does not fit in 64 bits (*out is
 * then untouched). kvblend(7) documents the units. */
static __attribute__((unused)) int cli_parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	uint64_t ip = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ip > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		ip = ip * 10 + (uint64_t)(*p - '0');
	}
	uint64_t num = 0, den = 1; // the fraction, num/den
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++)
			if (den < 1000000) { // six digits are plenty (and num << 40 fits)
				num = num * 10 + (uint64_t)(*p - '0');
				den *= 10;
			}
	}
	int shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	}
	if (shift && (p[0] == 'i' || p[0] == 'I') && (p[1] == 'B' || p[1] == 'b'))
		p += 2;
	else if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return -1;
	if (ip > (UINT64_MAX >> shift))
		return -1;
	uint64_t v = ip << shift;
	uint64_t frac = (num << shift) / den; // num < 1e6 < 2^20, shift <= 40: no overflow
	if (frac > UINT64_MAX - v)
		return -1;
	*out = v + frac;
	return 0;
}

/* A size option's value in [lo, hi] bytes (see cli_parse_size), or a usage error. */
static __attribute__((unused)) uint64_t cli_size(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
	uint64_t v;
	if (cli_parse_size(s, &v) || v < lo || v > hi)
		cli_usage_error("%s: '%s' is not a size in [%llu, %llu] bytes (a number, or with k, M, G, T: powers of 1024)",
				opt, s, (unsigned long long)lo, (unsigned long long)hi);
	return v;
}

/* --template's value, checked before anything is loaded: "auto" or a
 * template.h name, else a usage error. */
static __attribute__((unused)) void cli_template_check(const char *name)
{
	if (strcmp(name, "auto") && !template_known(name))
		cli_usage_error("--template: unknown template '%s' (" TEMPLATE_NAMES ")", name);
}

/* The template to frame prompts with: requested ("auto" or a name) resolved
 * against the model's GGUF g. Falling back to plain is one warning on stderr
 * (none when quiet); with verbose, which template and why. Returns its name
 * (static). */
static __attribute__((unused)) const char *cli_template(const char *requested, const struct gguf *g, bool verbose,
							bool quiet)
{
	struct template_choice tc;
	if (template_resolve(requested, g, &tc))
		cli_usage_error("--template: %s", kb_error());
	if (tc.fallback && !quiet)
		fprintf(stderr, "%s: warning: template: plain (%s; --template NAME to choose one)\n", cli_tool, tc.why);
	else if (verbose)
		fprintf(stderr, "%s: template: %s (%s)\n", cli_tool, tc.name, tc.why);
	return tc.name;
}

#endif
