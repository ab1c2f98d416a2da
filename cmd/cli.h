/* cli.h — what every tool's main() shares: messages named after the tool,
 * exit codes (0 ok, 1 runtime error or bad data, 2 usage), number parsing,
 * and --complete-options for the shell completions. Header-only; each tool
 * sets cli_tool first thing in main(). */
#ifndef KB_CLI_H
#define KB_CLI_H

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cli_tool = "kvblend";

/* "kvblend-<tool>: <message>" on stderr, exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) static void cli_die(const char *fmt, ...)
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
__attribute__((format(printf, 1, 2), noreturn)) static void cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cli_tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", cli_tool);
	exit(2);
}

/* Print the long options one per line, "--name=" for those that take a value
 * (completions ask the tool, so they never drift). */
static void cli_complete_options(const struct option *opts)
{
	for (const struct option *o = opts; o->name; o++)
		if (strcmp(o->name, "complete-options") != 0)
			printf("--%s%s\n", o->name, o->has_arg == required_argument ? "=" : "");
}

/* getopt's complaint as a usage error named after the tool (for tools that set
 * opterr = 0): a missing or unwanted value, or an unknown option. */
__attribute__((noreturn, unused)) static void cli_bad_option(char **argv, const struct option *longopts)
{
	const char *arg = argv[optind - 1];
	for (const struct option *lo = longopts; lo->name; lo++)
		if (optopt && lo->val == optopt)
			cli_usage_error(lo->has_arg ? "option '%s' needs a value" : "option '%s' takes no value",
					arg);
	if (optopt > 0 && optopt < 256)
		cli_usage_error("unknown option '-%c'", optopt);
	cli_usage_error("unknown option '%s'", arg);
}

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

#endif
