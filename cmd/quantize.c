/* kvblend-quantize — convert the weights of a GGUF model to another type. */
#include <inttypes.h>
#include <stdbool.h>

#include "cli.h"
#include "convert.h"
#include "hfimport.h"
#include "quant.h"
#include "synth.h"

static const struct option longopts[] = {
	{ "verbose", no_argument, NULL, 'v' },
	{ "list-types", no_argument, NULL, 'L' },
	{ "synthetic", required_argument, NULL, 'S' },
	{ "hf", required_argument, NULL, 'F' },
	{ "seed", required_argument, NULL, 's' },
	{ "vocab", required_argument, NULL, 'V' },
	{ "list-shapes", no_argument, NULL, 'H' },
	{ "untied", no_argument, NULL, 'U' },
	{ "chat-template", required_argument, NULL, 'C' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend quantize [-v] [--chat-template FILE] IN.gguf OUT.gguf TYPE\n"
	       "       kvblend quantize [-v] --hf DIR OUT.gguf TYPE\n"
	       "       kvblend quantize --synthetic SHAPE [--seed N] [--vocab FILE] [--untied] OUT.gguf TYPE\n"
	       "Convert the weights of a GGUF model to TYPE: f32, f16, bf16, q8_0, q4_0,\n"
	       "q4_k, q5_k, q6_k, or the mixes q4_k_m, q5_k_m (q6_k for the output and some\n"
	       "attn_v, ffn_down). 2-D weights become TYPE (when their rows are not whole\n"
	       "blocks of it: q8_0 for the K-quants if they are whole blocks of 32, else f32);\n"
	       "1-D tensors (norms, biases) become f32; the metadata is kept, with\n"
	       "general.file_type set to match. OUT is replaced atomically ('-' = stdout).\n\n"
	       "  -v, --verbose      one line per tensor on stderr: name, shape, types\n"
	       "      --hf DIR       import a Hugging Face model folder instead (config.json,\n"
	       "                     model.safetensors or its shards, tokenizer.json):\n"
	       "                     LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM\n"
	       "      --chat-template FILE  set tokenizer.chat_template to FILE's text (the chat\n"
	       "                     template --template auto recognises; '-' = stdin)\n"
	       "      --list-types   print the types TYPE can be, one per line\n"
	       "      --synthetic SHAPE  write a model of a real model's shape with seeded random\n"
	       "                     weights instead of converting one (for speed work)\n"
	       "      --seed N       seed of the synthetic weights (default 1)\n"
	       "      --vocab FILE   the synthetic model's tokenizer from a tokenizer.json, or\n"
	       "                     the tokenizer.* keys of a GGUF file\n"
	       "                     (default: a generated SentencePiece vocabulary, WordPiece for bert)\n"
	       "      --untied       give the synthetic model its own output matrix where the real\n"
	       "                     one ties it to the embeddings (a tied random model repeats the\n"
	       "                     last token; an untied one makes greedy continuations that vary)\n"
	       "      --list-shapes  print the shapes --synthetic knows, one per line\n"
	       "  -h, --help         this help\n"
	       "      --version      the version\n");
}

static const struct cli cli = { "kvblend-quantize", "vh", longopts, usage, NULL };

static void list_types(void)
{
	int n;
	const int *types = convert_types(&n);
	for (int i = 0; i < n; i++)
		printf("%s\n", convert_target_name(types[i]));
}

/* TYPE, case-insensitive, one of convert_types(). */
static int parse_type(const char *s)
{
	int t = convert_target_from_name(s);
	if (t < 0)
		cli_usage_error("unknown type '%s' (see --list-types)", s);
	return t;
}

static void report(void *ctx, const struct convert_tensor *t)
{
	(void)ctx;
	char shape[128];
	int n = snprintf(shape, sizeof shape, "[%" PRId64, t->ne[0]);
	for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < sizeof shape; d++)
		n += snprintf(shape + n, sizeof shape - (size_t)n, ", %" PRId64, t->ne[d]);
	if (n > 0 && (size_t)n < sizeof shape)
		snprintf(shape + n, sizeof shape - (size_t)n, "]");
	char why[96] = "";
	switch (t->action) {
	case CONVERT_CONVERTED: break;
	case CONVERT_COPIED: snprintf(why, sizeof why, " (copied)"); break;
	case CONVERT_KEPT_1D: snprintf(why, sizeof why, " (1-D: kept in f32)"); break;
	case CONVERT_KEPT_BLOCKS:
		snprintf(why, sizeof why, " (rows are not whole %s blocks)", qtype_name(t->want));
		break;
	case CONVERT_KEPT_AS_IS: snprintf(why, sizeof why, " (not weights: copied)"); break;
	}
	fprintf(stderr, "%s: %s %s %s -> %s%s", cli_tool, t->name, shape, qtype_name(t->from), qtype_name(t->to), why);
	if (t->source)
		fprintf(stderr, " from %s%s", t->source, t->permuted ? ", rows permuted" : "");
	fputc('\n', stderr);
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

/* The one-line summary on stderr: sizes (for stdout, where the output size is
 * not known, the weights') and the tensors by type. */
static void summary(const char *out, const struct convert_stats *st)
{
	bool file = st->out_file_bytes > 0;
	fprintf(stderr, "%s: wrote %s (%" PRIu64 " tensors, %s%.2f MiB -> %.2f MiB", cli_tool,
		file ? out : "<stdout>", st->n_tensors, file ? "" : "weights ",
		mib(file ? st->in_file_bytes : st->in_tensor_bytes), mib(file ? st->out_file_bytes : st->out_tensor_bytes));
	/* the 2-D weights by type (the 1-D ones are all f32; integer data is counted below) */
	const char *sep = "; ";
	for (int ty = 0; ty < QTYPE_COUNT; ty++) {
		uint64_t n = st->n_by_type[ty] - (ty == QTYPE_F32 ? st->n_kept_1d : 0);
		if (n > 0 && !qtype_info(ty)->is_data) {
			fprintf(stderr, "%s%" PRIu64 " in %s", sep, n, qtype_name(ty));
			sep = ", ";
		}
	}
	if (st->n_kept_1d)
		fprintf(stderr, "%s%" PRIu64 " 1-D in f32", sep, st->n_kept_1d);
	if (st->n_kept_as_is)
		fprintf(stderr, ", %" PRIu64 " copied as they are", st->n_kept_as_is);
	if (st->n_kept_blocks)
		fprintf(stderr, "; %" PRIu64 " fell back as their rows are not whole blocks of their type",
			st->n_kept_blocks);
	fprintf(stderr, ")\n");
}

static void warn(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "%s: warning: %s\n", cli_tool, msg);
}

/* --synthetic SHAPE OUT TYPE */
static int synthetic(const char *shape, const char *out, const char *type, uint64_t seed, const char *vocab,
		     bool untied)
{
	struct synth_spec sp;
	if (synth_shape(shape, &sp))
		cli_usage_error("%s", kb_error());
	if (untied)
		sp.tied = false;
	sp.type = parse_type(type);
	sp.seed = seed;
	sp.tokenizer_json = vocab;
	if (synth_write(out, &sp))
		cli_die("%s", kb_error());
	fprintf(stderr, "%s: wrote %s (synthetic %s, %s, seed %llu)\n", cli_tool, out, shape,
		convert_target_name(sp.type), (unsigned long long)seed);
	return 0;
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	bool verbose = false, untied = false;
	const char *shape = NULL, *vocab = NULL, *hf = NULL, *chat_template = NULL;
	uint64_t seed = 1;
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'v': verbose = true; break;
		case 'L': list_types(); return 0;
		case 'S': shape = optarg; break;
		case 'F': hf = optarg; break;
		case 'V': vocab = optarg; break;
		case 'U': untied = true; break;
		case 'C': chat_template = optarg; break;
		case 's': seed = (uint64_t)cli_long("--seed", optarg, 1, 0x7fffffffffffffffL); break;
		case 'H':
			for (size_t i = 0; synth_shape_name(i); i++)
				printf("%s\n", synth_shape_name(i));
			return 0;
		default: cli_unreachable(c);
		}
	}
	if (shape && hf)
		cli_usage_error("--synthetic and --hf exclude each other");
	if (chat_template && (shape || hf))
		cli_usage_error("--chat-template goes with IN.gguf (convert the model written to set one)");
	if (shape) {
		if (argc - optind != 2)
			cli_usage_error("expected --synthetic SHAPE OUT.gguf TYPE");
		return synthetic(shape, argv[optind], argv[optind + 1], seed, vocab, untied);
	}
	if (vocab || untied)
		cli_usage_error("%s goes with --synthetic", vocab ? "--vocab" : "--untied");
	int n_in = hf ? 0 : 1;
	if (argc - optind != n_in + 2)
		cli_usage_error("expected %s OUT.gguf TYPE, got %d operand%s", hf ? "--hf DIR" : "IN.gguf",
				argc - optind, argc - optind == 1 ? "" : "s");
	const char *out = argv[optind + n_in];
	int type = parse_type(argv[optind + n_in + 1]);

	struct convert_stats st;
	int rc;
	if (hf) {
		struct hfimport_opts opts = { .on_tensor = verbose ? report : NULL, .on_warning = warn };
		rc = hfimport_dir(hf, out, type, &opts, &st);
	} else {
		struct convert_opts opts = { .on_tensor = verbose ? report : NULL };
		char *tmpl = NULL;
		size_t n;
		if (chat_template) {
			if (kb_read_file(chat_template, &tmpl, &n))
				cli_die("%s", kb_error());
			if (n == 0 || memchr(tmpl, 0, n))
				cli_die("'%s': %s", chat_template, n ? "the chat template holds a NUL byte" : "the chat template is empty");
			opts.chat_template = tmpl;
		}
		rc = convert_gguf(argv[optind], out, type, &opts, &st);
		free(tmpl);
	}
	if (rc != KB_OK)
		cli_die("%s", kb_error());
	summary(out, &st);
	return 0;
}
