/* kvblend — dispatcher: `kvblend <tool> args...` runs kvblend-<tool>, looked up
 * first beside this executable, then on PATH (like git). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
	const char *name, *what;
} tools[] = {
	{ "chunk", "split documents into chunk records" },
	{ "embed", "embed chunks, search the store" },
	{ "prefill", "compute KV caches: of a text, or of every chunk into the store" },
	{ "blend", "fuse chunk caches at query time: CacheBlend" },
	{ "decode", "generate text from a prompt or a KV cache" },
	{ "evict", "keep the cache store within a budget, verify it" },
	{ "bench", "speed and quality of each method side by side" },
	{ "tokenize", "text to token ids with a model's tokenizer" },
	{ "quantize", "convert a GGUF model's weights to another type" },
	{ "info", "describe and verify KV caches (.kvc) and GGUF models" },
	{ "pull", "download a model by URL into the local models folder" },
};
#define N_TOOLS (sizeof tools / sizeof *tools)

/* Directory of this executable into dir (no trailing slash); 0 on success. */
static int self_dir(char *dir, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", dir, cap - 1);
	if (n <= 0)
		return -1;
	dir[n] = '\0';
	char *slash = strrchr(dir, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	return 0;
}

/* Full path of kvblend-<tool> beside us or on PATH into out; 0 if found. */
static int find_tool(const char *tool, char *out, size_t cap)
{
	char dir[PATH_MAX];
	if (self_dir(dir, sizeof dir) == 0) {
		int n = snprintf(out, cap, "%s/kvblend-%s", dir, tool);
		if (n > 0 && (size_t)n < cap && access(out, X_OK) == 0)
			return 0;
	}
	const char *path = getenv("PATH");
	while (path && *path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		int n = snprintf(out, cap, "%.*s/kvblend-%s", (int)(len ? len : 1), len ? path : ".", tool);
		if (n > 0 && (size_t)n < cap && access(out, X_OK) == 0)
			return 0;
		path = colon ? colon + 1 : NULL;
	}
	return -1;
}

static void usage(FILE *f)
{
	char path[PATH_MAX];
	fprintf(f, "usage: kvblend <tool> [args...]\n"
		   "       kvblend help [TOOL]\n"
		   "       kvblend --help | --version | --list-tools\n\n"
		   "Fast retrieval-augmented generation by reusing the KV caches of text chunks.\n\n"
		   "tools:\n");
	for (size_t i = 0; i < N_TOOLS; i++)
		fprintf(f, "  %-10s %s%s\n", tools[i].name, tools[i].what,
			find_tool(tools[i].name, path, sizeof path) ? " (not installed)" : "");
	fprintf(f, "\n'kvblend help TOOL' or 'kvblend TOOL --help' shows a tool's options;\n"
		   "man kvblend(7) is the overview, man kvblend-TOOL(1) a tool's manual.\n");
}

/* Run kvblend-<tool> with argv (argv[0] replaced by its path); returns only on failure. */
static int run_tool(const char *tool, char **argv)
{
	char path[PATH_MAX];
	if (find_tool(tool, path, sizeof path) != 0) {
		fprintf(stderr, "kvblend: '%s' is not a kvblend tool (see 'kvblend --help')\n", tool);
		return 2;
	}
	argv[0] = path;
	execv(path, argv);
	fprintf(stderr, "kvblend: cannot run '%s': %s\n", path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	cli_tool = "kvblend";
	atexit(cli_close_stdout);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || (!strcmp(cmd, "help") && argc == 2)) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "help")) { // kvblend help TOOL: the tool's --help
		if (argc > 3)
			cli_usage_error("help: one tool at a time ('%s' is one too many)", argv[3]);
		if (argv[2][0] == '-' || strchr(argv[2], '/'))
			cli_usage_error("help: '%s' is not a tool name", argv[2]);
		char *help_argv[] = { argv[2], "--help", NULL };
		return run_tool(argv[2], help_argv);
	}
	if (!strcmp(cmd, "--version")) {
		printf("kvblend %s\n", KVBLEND_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--list-tools")) {
		char path[PATH_MAX];
		for (size_t i = 0; i < N_TOOLS; i++)
			if (find_tool(tools[i].name, path, sizeof path) == 0)
				printf("%s\n", tools[i].name);
		return 0;
	}
	if (cmd[0] == '-' || strchr(cmd, '/'))
		cli_usage_error("unknown option '%s'", cmd);
	return run_tool(cmd, argv + 1);
}
