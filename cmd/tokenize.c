/* kvblend-tokenize — text to the token ids of a GGUF model's tokenizer.
 *
 * The input is tokenized exactly as given, all of it at once: a trailing newline
 * is text too (use `printf %s`, not echo, to leave it out). */
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "gguf.h"
#include "tok.h"

static const struct option longopts[] = {
	{ "model", required_argument, NULL, 'm' },
	{ "no-bos", no_argument, NULL, 'B' },
	{ "special", no_argument, NULL, 'S' },
	{ "pieces", no_argument, NULL, 'P' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf("usage: kvblend tokenize -m MODEL [--no-bos] [--special] [--pieces] [FILE]\n"
	       "Print the token ids of FILE (or stdin) on one line, separated by spaces.\n"
	       "The text is tokenized as given, trailing newline included (printf %%s leaves it out).\n\n"
	       "  -m, --model FILE     GGUF model whose tokenizer is used\n"
	       "      --no-bos         do not put the beginning-of-sequence token first\n"
	       "      --special        turn special tokens written in the text (<s>, <|user|>) into those tokens\n"
	       "                       (default: they are plain text, as in every tool)\n"
	       "      --pieces         one line per token: id, a tab, its piece (control bytes escaped as \\n, \\xNN)\n"
	       "  -h, --help           this help\n"
	       "      --version        the version\n");
}

static const struct cli cli = { "kvblend-tokenize", "m:h", longopts, usage, NULL };

struct opts {
	const char *model, *file;
	bool no_bos, parse_special, pieces;
};

static void parse(int argc, char **argv, struct opts *o)
{
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'B': o->no_bos = true; break;
		case 'S': o->parse_special = true; break;
		case 'P': o->pieces = true; break;
		default: cli_unreachable(c);
		}
	}
	if (!o->model)
		cli_usage_error("a model is required (-m MODEL)");
	if (argc - optind > 1)
		cli_usage_error("unexpected argument '%s' (one input file at most)", argv[optind + 1]);
	o->file = optind < argc ? argv[optind] : "-";
	if (!strcmp(o->file, "-") && isatty(STDIN_FILENO))
		cli_usage_error("no input: give a FILE or text on stdin");
}

/* A piece on one line: bytes below 0x20, DEL and the backslash escaped. */
static void print_piece(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\\')
			fputs("\\\\", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02X", c);
		else
			putchar(c);
	}
}

static void print_ids(const struct tok *t, const int32_t *ids, size_t n, bool pieces)
{
	for (size_t i = 0; i < n; i++) {
		if (pieces) {
			printf("%d\t", ids[i]);
			print_piece(tok_piece(t, ids[i]));
			putchar('\n');
		} else {
			printf(i ? " %d" : "%d", ids[i]);
		}
	}
	if (!pieces)
		putchar('\n');
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	struct opts o = { 0 };
	parse(argc, argv, &o);

	struct gguf *g;
	struct tok *t;
	if (gguf_open(&g, o.model))
		cli_die("%s", kb_error());
	int rc = tok_load(&t, g);
	gguf_close(g); // the tokenizer keeps its own copy
	if (rc)
		cli_die("%s", kb_error());
	if (tok_warning(t))
		fprintf(stderr, "%s: warning: %s\n", cli_tool, tok_warning(t));

	char *text;
	size_t len;
	if (kb_read_file(o.file, &text, &len))
		cli_die("%s", kb_error());
	int32_t *ids;
	size_t n;
	if (tok_encode(t, text, len, !o.no_bos && tok_add_bos(t), o.parse_special, &ids, &n))
		cli_die("%s", kb_error());
	print_ids(t, ids, n, o.pieces);
	cli_flush();

	free(ids);
	free(text);
	tok_free(t);
	return 0;
}
