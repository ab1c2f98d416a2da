/* kvblend — dispatcher: `kvblend <tool> args...` runs kvblend-<tool>, looked up
 * first beside this executable, then on PATH (like git). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
	const char *name, *what;
} tools[] = {
	{ "chunk", "split documents into chunk records" },
	{ "embed", "embed chunks, search the store" },
	{ "prefill", "compute KV caches: of a text, or of every chunk into the store" },
	{ "blend", "fuse chunk caches at query time: CacheBlend" },
	{ "decode", "generate text from a prompt or a KV cache" },
	{ "evict", "keep the cache store within a budget, verify it" },
	{ "bench", "speed and quality of each method side by side (planned)" },
	{ "tokenize", "text to token ids with a model's tokenizer" },
	{ "quantize", "convert a GGUF model's weights to another type" },
	{ "info", "describe and verify KV caches (.kvc) and GGUF models" },
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
		   "       kvblend --help | --version | --list-tools\n\n"
		   "Fast retrieval-augmented generation by reusing the KV caches of text chunks.\n\n"
		   "tools:\n");
	for (size_t i = 0; i < N_TOOLS; i++)
		if (find_tool(tools[i].name, path, sizeof path) == 0)
			fprintf(f, "  %-10s %s\n", tools[i].name, tools[i].what);
	fprintf(f, "\n'kvblend <tool> --help' shows a tool's options; man kvblend(7) is the overview.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
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
	if (cmd[0] == '-' || strchr(cmd, '/')) {
		fprintf(stderr, "kvblend: unknown option '%s'\nTry 'kvblend --help' for more information.\n", cmd);
		return 2;
	}
	char path[PATH_MAX];
	if (find_tool(cmd, path, sizeof path) != 0) {
		fprintf(stderr, "kvblend: '%s' is not a kvblend tool (see 'kvblend --help')\n", cmd);
		return 2;
	}
	argv[1] = path;
	execv(path, argv + 1);
	fprintf(stderr, "kvblend: cannot run '%s': %s\n", path, strerror(errno));
	return 1;
}
