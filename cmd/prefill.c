/* kvblend-prefill — compute KV caches: one for a text (-p/-f, written to -o),
 * or one per chunk record read on stdin, each on its own from position 0 (as
 * CacheBlend stores them), several chunks per forward pass, into the store. */
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "kvfile.h"
#include "model.h"

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "prompt", required_argument, NULL, 'p' },
	{ "file", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, 'o' },
	{ "dtype", required_argument, NULL, 'D' },
	{ "threads", required_argument, NULL, 't' },
	{ "no-bos", no_argument, NULL, 'B' },
	{ "no-logits", no_argument, NULL, 'L' },
	{ "no-parse-special", no_argument, NULL, 'N' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "complete-options", no_argument, NULL, 'O' },
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend prefill -m MODEL (-p TEXT | -f FILE) [-o OUT.kvc] [options]\n"
	       "Compute the KV cache of a text and write it as a .kvc stream (default stdout).\n\n"
	       "  -m, --model FILE        GGUF model\n"
	       "  -p, --prompt TEXT       the text\n"
	       "  -f, --file FILE         read the text from FILE ('-' = stdin)\n"
	       "  -o, --output FILE       where the cache goes (default '-', stdout; not a terminal)\n"
	       "      --dtype TYPE        f16 (default), bf16, f32 or q8_0\n"
	       "  -t, --threads N         threads (default: all cores)\n"
	       "      --no-bos            do not prepend the BOS token\n"
	       "      --no-logits         do not store the logits after the last token\n"
	       "      --no-parse-special  treat special tokens written in the text as plain text\n"
	       "  -v, --verbose           timings on stderr\n"
	       "  -h, --help              this help\n");
}

struct opts {
	const char *model, *prompt, *file, *output;
	int dtype, threads;
	bool no_bos, no_logits, no_special, verbose;
};

int main(int argc, char **argv)
{
	cli_tool = "kvblend-prefill";
	struct opts o = { .output = "-", .dtype = KVC_F16 };
	int c;
	while ((c = getopt_long(argc, argv, "m:p:f:o:t:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'p': o.prompt = optarg; break;
		case 'f': o.file = optarg; break;
		case 'o': o.output = optarg; break;
		case 'D':
			if ((o.dtype = kvc_dtype_from_name(optarg)) < 0)
				cli_usage_error("--dtype: unknown type '%s' (f16, bf16, f32, q8_0)", optarg);
			break;
		case 't': o.threads = (int)cli_long("--threads", optarg, 1, 1024); break;
		case 'B': o.no_bos = true; break;
		case 'L': o.no_logits = true; break;
		case 'N': o.no_special = true; break;
		case 'v': o.verbose = true; break;
		case 'h': usage(); return 0;
		case 'O': cli_complete_options(longopts); return 0;
		default: cli_usage_error("bad usage");
		}
	}
	if (!o.model)
		cli_usage_error("a model is required (-m MODEL)");
	if (!o.prompt && !o.file)
		cli_usage_error("give the text with -p TEXT or -f FILE");
	if (o.prompt && o.file)
		cli_usage_error("give the text with -p or -f, not both");
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (strcmp(o.output, "-") == 0 && isatty(STDOUT_FILENO))
		cli_usage_error("refusing to write a binary cache to a terminal (use -o FILE or a pipe)");
	kb_set_threads(o.threads);

	char *text = NULL;
	size_t len;
	if (o.prompt) {
		len = strlen(o.prompt);
	} else if (kb_read_file(o.file, &text, &len)) {
		cli_die("%s", kb_error());
	}
	if (len == 0)
		cli_die("text is empty");
	struct model *m;
	if (model_load(&m, o.model))
		cli_die("%s", kb_error());
	int32_t *ids;
	size_t n;
	if (tok_encode(m->tok, o.prompt ? o.prompt : text, len, !o.no_bos && tok_add_bos(m->tok),
		       !o.no_special, &ids, &n))
		cli_die("%s", kb_error());
	if (n == 0)
		cli_die("text is empty after tokenization");

	struct kv_cache kv;
	struct model_ws ws;
	int32_t *pos = malloc(n * sizeof *pos);
	if (!pos || kv_cache_init(&kv, m, (int)n) || model_ws_init(&ws, m, n < 512 ? (int)n : 512, (int)n))
		cli_die("%s", kb_error());
	for (size_t i = 0; i < n; i++)
		pos[i] = (int32_t)i;
	double t0 = kb_now();
	if (model_forward(m, &ws, &kv, ids, pos, (int)n, ws.logits, false))
		cli_die("%s", kb_error());
	double t1 = kb_now();
	struct kvc_header h;
	kvfile_header(&h, m, &kv, 0, (int)n, o.no_logits ? NULL : ws.logits, o.dtype, cli_tool, argc, argv);
	if (kvfile_write_path(o.output, &h, &kv, 0))
		cli_die("%s", kb_error());
	if (o.verbose)
		fprintf(stderr, "%s: %zu tokens in %.3f s (%.1f t/s), %s cache written to %s\n", cli_tool, n,
			t1 - t0, n / (t1 - t0), kvc_dtype_name(o.dtype), o.output);
	free(pos);
	free(ids);
	free(text);
	kv_cache_free(&kv);
	model_ws_free(&ws);
	model_free(m);
	return 0;
}
