/* progress.h — one progress meter for the tools' long work (prefill of many
 * chunks, embed, blend, bench, chunk --by ppl): a count, the total when it is
 * known, the rate and the time left, on standard error.
 *
 * It draws only when asked to: progress_wanted() is true when stderr is a
 * terminal or with -v (--progress), never with --quiet, so logs stay clean. On
 * a terminal one line is redrawn in place (at most 10 times a second); else a
 * line is written every 10 seconds. The library never prints: its loops take a
 * callback (progress_cb has that shape). Header-only, after cli.h. */
#ifndef KB_PROGRESS_H
#define KB_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct progress {
	char what[64];      /* the unit counted, plural: "chunks", "tokens of 'a.md'" */
	uint64_t done, total; /* total 0: unknown */
	double t0, t_drawn; /* seconds: the start, the last line drawn */
	bool on, tty, drawn;
};

static double progress_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Whether progress is wanted: not with --quiet; with -v (or --progress), or
 * when standard error is a terminal. */
static __attribute__((unused)) bool progress_wanted(bool quiet, bool verbose)
{
	return !quiet && (verbose || isatty(STDERR_FILENO));
}

/* Start counting what (copied) towards total (0: unknown); on: draw at all. */
static __attribute__((unused)) void progress_start(struct progress *p, const char *what, uint64_t total, bool on)
{
	*p = (struct progress){ .total = total, .on = on, .tty = isatty(STDERR_FILENO) };
	snprintf(p->what, sizeof p->what, "%s", what);
	p->t0 = progress_now();
	p->t_drawn = p->tty ? p->t0 - 1 : p->t0; // on a terminal the first count shows at once
}

static void progress_draw(struct progress *p, double now)
{
	double dt = now - p->t0, rate = dt > 0 ? p->done / dt : 0;
	char left[32] = "";
	if (p->total && p->done && p->done < p->total && rate > 0) {
		long s = (long)((p->total - p->done) / rate + 0.5);
		snprintf(left, sizeof left, ", %ld:%02ld left", s / 60, s % 60);
	}
	if (p->total)
		fprintf(stderr, "%s%s: %llu/%llu %s (%.0f%%), %.1f/s%s%s", p->tty ? "\r" : "", cli_tool,
			(unsigned long long)p->done, (unsigned long long)p->total, p->what,
			100.0 * (double)p->done / (double)p->total, rate, left, p->tty ? "\033[K" : "\n");
	else
		fprintf(stderr, "%s%s: %llu %s, %.1f/s%s", p->tty ? "\r" : "", cli_tool,
			(unsigned long long)p->done, p->what, rate, p->tty ? "\033[K" : "\n");
	p->t_drawn = now;
	p->drawn = true;
}

/* done of total so far; redraws when it is time to. */
static __attribute__((unused)) void progress_set(struct progress *p, uint64_t done)
{
	p->done = done;
	if (!p->on)
		return;
	double now = progress_now();
	if (now - p->t_drawn >= (p->tty ? 0.1 : 10.0))
		progress_draw(p, now);
}

/* The lines left to read in f when it is a regular file (a total for records
 * on a redirected stdin), read with pread so f's position is untouched; 0 when
 * it is not a file (a pipe) or cannot be read. */
static __attribute__((unused)) uint64_t progress_lines(FILE *f)
{
	struct stat sb;
	int fd = fileno(f);
	off_t off = fd >= 0 ? lseek(fd, 0, SEEK_CUR) : -1;
	if (off < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode))
		return 0;
	char buf[65536];
	uint64_t n = 0;
	char last = '\n';
	ssize_t got;
	while ((got = pread(fd, buf, sizeof buf, off)) > 0) {
		for (ssize_t i = 0; i < got; i++)
			n += buf[i] == '\n';
		last = buf[got - 1];
		off += got;
	}
	return n + (last != '\n');
}

/* A callback for library loops: ctx is a struct progress. */
static __attribute__((unused)) void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	p->total = total;
	progress_set(p, done);
}

/* The end: on a terminal the line is cleared (the tool's own summary, if any,
 * follows); elsewhere (-v) the final count is the last line. */
static __attribute__((unused)) void progress_end(struct progress *p)
{
	if (p->on && p->tty && p->drawn)
		fputs("\r\033[K", stderr);
	else if (p->on && !p->tty)
		progress_draw(p, progress_now());
	p->on = p->drawn = false;
}

#endif
