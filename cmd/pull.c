/* kvblend-pull — models by URL into the local models folder, once: resumed
 * after an interruption, checked, renamed into place only when whole (pull.h).
 * Prints each model's local path; every tool's -m URL does the same download. */
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "pull.h"

static const struct option longopts[] = {
	{ "sha256", required_argument, NULL, 's' },
	{ "quiet", no_argument, NULL, 'Q' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend pull [--sha256 HEX] [--quiet] URL...\n"
	       "Download each model (GGUF) at URL into the models folder ($XDG_CACHE_HOME/kvblend/models,\n"
	       "else ~/.cache/kvblend/models) unless it is there, and print its local path. An\n"
	       "interrupted download resumes where it stopped; only a whole, checked file is kept.\n"
	       "Every tool's -m takes such a URL as well and downloads it the same way.\n\n"
	       "      --sha256 HEX   the file's SHA-256 (64 hex digits): a file with another is refused\n"
	       "                     and removed (with one URL only)\n"
	       "      --quiet        no progress bar (it is drawn only on a terminal)\n"
	       "  -h, --help         this help\n"
	       "      --version      the version\n"
	       "Environment: KVBLEND_REMOTE_TIMEOUT (seconds without progress before a try is given up,\n"
	       "default 10), KVBLEND_REMOTE_RETRIES (default 3).\n");
}

static const struct cli cli = { "kvblend-pull", "h", longopts, usage, NULL };

int main(int argc, char **argv)
{
	cli_start(&cli);
	const char *sha = NULL;
	bool quiet = false;
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 's': sha = optarg; break;
		case 'Q': quiet = true; break;
		default: cli_unreachable(c);
		}
	}
	if (optind == argc)
		cli_usage_error("give the URL of a model");
	if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64))
		cli_usage_error("--sha256: '%s' is not 64 hex digits", sha);
	if (sha && argc - optind > 1)
		cli_usage_error("--sha256 goes with one URL");
	if (quiet)
		pull_set_progress(NULL, NULL);
	int status = 0;
	for (int i = optind; i < argc; i++) {
		if (!pull_is_url(argv[i]))
			cli_usage_error("'%s' is not an http:// or https:// URL", argv[i]);
		struct pull_opts o = { .sha256 = sha };
		char *path;
		if (pull_model(argv[i], &o, &path)) {
			fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
			status = 1;
			continue;
		}
		printf("%s\n", path);
		free(path);
	}
	return status;
}
