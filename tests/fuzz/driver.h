/* driver.h — the standalone main() of a fuzz target, for machines without
 * libFuzzer (tests/fuzz/run.sh --replay). A target built with
 * -DKVBLEND_FUZZ_MAIN defines FUZZ_NAME, includes this file, then defines
 * write_seeds():
 *
 *   fuzz_NAME FILE|DIR...         run LLVMFuzzerTestOneInput over the files,
 *                                 directories walked recursively
 *   fuzz_NAME --write-seeds DIR   write the seed corpus into DIR
 *
 * Each input is handed over in a buffer of its exact size, so a sanitizer
 * sees any read past its end. */
#ifndef KB_FUZZ_DRIVER_H
#define KB_FUZZ_DRIVER_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static int write_seeds(const char *dir);

/* A seed given as its text, for targets whose inputs are text files. */
struct fuzz_text_seed {
	const char *name, *text;
};

/* Write each of the n seeds as dir/name: 0, or 1 after saying what failed. */
static __attribute__((unused)) int fuzz_write_text_seeds(const char *dir, const struct fuzz_text_seed *seeds,
							  size_t n)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
		FILE *f = fopen(path, "wb");
		if (!f || fputs(seeds[i].text, f) < 0 || fclose(f) != 0) {
			perror(path);
			bad = 1;
		}
	}
	return bad;
}

static int run_path(const char *path, int *n)
{
	struct stat sb;
	if (stat(path, &sb) != 0) {
		perror(path);
		return 1;
	}
	if (S_ISDIR(sb.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		int bad = 0;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char sub[4096];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			bad |= run_path(sub, n);
		}
		if (d)
			closedir(d);
		return bad;
	}
	char *buf;
	size_t len;
	if (kb_read_file(path, &buf, &len) != KB_OK) {
		fprintf(stderr, FUZZ_NAME ": %s\n", kb_error());
		return 1;
	}
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) {
		free(buf);
		fprintf(stderr, FUZZ_NAME ": %s: out of memory\n", path);
		return 1;
	}
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	++*n;
	return 0;
}

int main(int argc, char **argv)
{
	int n = 0, bad = 0;
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: " FUZZ_NAME " FILE|DIR...\n       " FUZZ_NAME " --write-seeds DIR\n");
		return 2;
	}
	for (int i = 1; i < argc; i++)
		bad |= run_path(argv[i], &n);
	printf(FUZZ_NAME ": %d inputs ran\n", n);
	return bad;
}

#endif
