/* kvblend-info — describe .kvc KV-cache streams (verifying every checksum) and
 * GGUF models: human-readable, or one JSON object per cache / model. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "gguf.h"
#include "hash.h"
#include "kbio.h"
#include "kvc.h"
#include "quant.h"

static const struct option longopts[] = {
	{ "json", no_argument, NULL, 'j' },
	CLI_COMMON_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static bool opt_json;

static void usage(void)
{
	printf("usage: kvblend info [--json] [FILE...]\n"
	       "Describe KV-cache streams (.kvc) and GGUF models; '-' or no FILE reads stdin.\n"
	       "A cache's every layer checksum and its end record are verified.\n\n"
	       "  -j, --json      one JSON object per cache or model, one per line\n"
	       "  -h, --help      this help\n"
	       "      --version   the version\n");
}

static const struct cli cli = { "kvblend-info", "jh", longopts, usage, NULL };

/* ---- output helpers ---- */

static void fp_hex(const uint8_t fp[32], char out[65])
{
	hash_hex(fp, 32, out);
}

/* Print one JSON object on a line; frees it. */
static void json_line(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		cli_die("out of memory");
	puts(s);
	free(s);
	cli_flush();
}

/* A float as the shortest decimal that reads back as the same f32 (1e-05, not 9.99999975e-06). */
static json_t *json_f32(float f)
{
	char buf[32];
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
		if (strtof(buf, NULL) == f)
			break;
	}
	return json_real(strtod(buf, NULL));
}

/* An argument as the shell would need it: bare when safe, else in single quotes. */
static void print_shell_word(const char *s)
{
	bool bare = *s != '\0';
	for (const char *p = s; *p && bare; p++)
		bare = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p) != NULL;
	if (bare) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (const char *p = s; *p; p++)
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*p);
	putchar('\'');
}

static const char *rope_mode_name(int mode)
{
	return mode == 0 ? "norm" : mode == 2 ? "neox" : "unknown";
}

static const char *rope_scaling_name(int s)
{
	return s == 0 ? "none" : s == 1 ? "linear" : s == 2 ? "llama3" : "unknown";
}

static void human_size(uint64_t n, char *buf, size_t cap)
{
	if (n < 10000)
		snprintf(buf, cap, "%" PRIu64 " bytes", n);
	else if (n < 10000000)
		snprintf(buf, cap, "%" PRIu64 " bytes (%.1f KiB)", n, n / 1024.0);
	else
		snprintf(buf, cap, "%" PRIu64 " bytes (%.1f MiB)", n, n / 1048576.0);
}

/* ---- .kvc ---- */

static int argmax(const float *x, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* Tokens kept by any kv head of layer l (kept lists are ascending: a merge count). */
static int layer_union(const struct kvc_header *h, int l, unsigned char *seen)
{
	memset(seen, 0, (size_t)h->n_tokens);
	int n = 0;
	for (int head = 0; head < h->n_kv_head; head++) {
		const int32_t *k = kvc_keep(h, l, head);
		for (int j = 0; j < kvc_layer_rows(h, l); j++)
			if (!seen[k[j]])
				seen[k[j]] = 1, n++;
	}
	return n;
}

/* A token-evicted cache: rows per layer (each kv head keeps that many) and how
 * many distinct tokens the heads keep between them. */
static void print_sparse(const struct kvc_header *h)
{
	unsigned char *seen = malloc((size_t)h->n_tokens + 1);
	if (!seen)
		cli_die("out of memory");
	printf("  evicted     token-evicted: per layer, the rows (tokens each of the %d kv heads keeps)\n"
	       "              and the tokens the heads keep between them, of the %d in the header:\n",
	       h->n_kv_head, h->n_tokens);
	for (int l = 0; l < h->n_layer; l++)
		printf("    layer %-4d %6d rows %6d tokens\n", l, kvc_layer_rows(h, l), layer_union(h, l, seen));
	free(seen);
}

static void kvc_print(const char *name, int idx, const struct kvc_header *h)
{
	char mfp[65], tfp[65], sz[64];
	fp_hex(h->model_fp, mfp);
	fp_hex(h->tok_fp, tfp);
	printf("%s: kvc %d.%d cache %d at byte %" PRIu64 "\n", name, h->major, h->minor, idx, h->stream_offset);
	printf("  dtype       %s\n", kvc_dtype_name(h->dtype));
	printf("  shape       %d layers x %d kv heads x %d (kv_dim %d)\n", h->n_layer, h->n_kv_head, h->head_dim,
	       h->n_kv_head * h->head_dim);
	printf("  tokens      %d", h->n_tokens);
	for (int i = 0; i < h->n_tokens && i < 16; i++)
		printf("%s%d", i ? " " : ": ", h->tokens[i]);
	printf("%s\n", h->n_tokens > 16 ? " ..." : "");
	if (h->n_tokens > 0) {
		int32_t lo = h->pos[0], hi = h->pos[0];
		bool consecutive = true;
		for (int i = 1; i < h->n_tokens; i++) {
			lo = h->pos[i] < lo ? h->pos[i] : lo;
			hi = h->pos[i] > hi ? h->pos[i] : hi;
			consecutive &= h->pos[i] == h->pos[i - 1] + 1;
		}
		printf("  positions   %" PRId32 "..%" PRId32 "%s\n", lo, hi, consecutive ? " (consecutive)" : "");
	}
	printf("  rope        %s, n_rot %d, base %g, scaling %s", rope_mode_name(h->rope_mode), h->n_rot,
	       h->rope_base, rope_scaling_name(h->rope_scaling));
	if (h->rope_scaling)
		printf(" x%g", h->rope_factor);
	if (h->rope_orig_ctx)
		printf(" (original context %d)", h->rope_orig_ctx);
	printf("\n  K           %s\n", h->k_rotated ? "stored rotated (RoPE applied)" : "stored unrotated");
	printf("  model       %.16s...\n", mfp);
	printf("  tokenizer   %.16s...\n", tfp);
	if (h->n_logits > 0)
		printf("  logits      %d (argmax %d)\n", h->n_logits, argmax(h->logits, h->n_logits));
	else
		printf("  logits      none\n");
	printf("  made by     %s %s", h->tool, h->version);
	for (int i = 0; i < h->argc; i++) {
		fputs(i ? " " : ": ", stdout);
		print_shell_word(h->argv[i]);
	}
	human_size(h->payload_total, sz, sizeof sz);
	if (kvc_codec_bits(h->dtype))
		printf("\n  payload     compressed (its size follows verification)\n");
	else if (kvc_is_sparse(h))
		printf("\n  payload     %s (%d layers, token-evicted)\n", sz, h->n_layer);
	else
		printf("\n  payload     %s (%d x %" PRIu64 ")\n", sz, h->n_layer, h->payload_bytes);
	if (kvc_is_sparse(h))
		print_sparse(h);
	cli_flush();
}

static json_t *kvc_json(const char *name, int idx, const struct kvc_header *h)
{
	char mfp[65], tfp[65], ver[32];
	fp_hex(h->model_fp, mfp);
	fp_hex(h->tok_fp, tfp);
	snprintf(ver, sizeof ver, "%d.%d", h->major, h->minor);
	json_t *o = json_object(), *toks = json_array(), *pos = json_array(), *argv = json_array();
	for (int i = 0; i < h->n_tokens; i++) {
		json_array_append_new(toks, json_integer(h->tokens[i]));
		json_array_append_new(pos, json_integer(h->pos[i]));
	}
	for (int i = 0; i < h->argc; i++)
		json_array_append_new(argv, json_string(h->argv[i]));
	json_object_set_new(o, "file", json_string(name));
	json_object_set_new(o, "format", json_string("kvc"));
	json_object_set_new(o, "cache", json_integer(idx));
	json_object_set_new(o, "offset", json_integer((json_int_t)h->stream_offset));
	json_object_set_new(o, "format_version", json_string(ver));
	json_object_set_new(o, "dtype", json_string(kvc_dtype_name(h->dtype)));
	json_object_set_new(o, "n_layer", json_integer(h->n_layer));
	json_object_set_new(o, "n_kv_head", json_integer(h->n_kv_head));
	json_object_set_new(o, "head_dim", json_integer(h->head_dim));
	json_object_set_new(o, "n_tokens", json_integer(h->n_tokens));
	json_object_set_new(o, "tokens", toks);
	json_object_set_new(o, "pos", pos);
	json_t *rope = json_object();
	json_object_set_new(rope, "mode", json_string(rope_mode_name(h->rope_mode)));
	json_object_set_new(rope, "mode_id", json_integer(h->rope_mode));
	json_object_set_new(rope, "n_rot", json_integer(h->n_rot));
	json_object_set_new(rope, "base", json_f32(h->rope_base));
	json_object_set_new(rope, "scaling", json_string(rope_scaling_name(h->rope_scaling)));
	json_object_set_new(rope, "factor", json_f32(h->rope_factor));
	json_object_set_new(rope, "orig_ctx", json_integer(h->rope_orig_ctx));
	json_object_set_new(o, "rope", rope);
	json_object_set_new(o, "k_rotated", json_boolean(h->k_rotated));
	json_object_set_new(o, "model_fingerprint", json_string(mfp));
	json_object_set_new(o, "tokenizer_fingerprint", json_string(tfp));
	json_object_set_new(o, "n_logits", json_integer(h->n_logits));
	if (h->n_logits > 0)
		json_object_set_new(o, "logits_argmax", json_integer(argmax(h->logits, h->n_logits)));
	json_t *prov = json_object();
	json_object_set_new(prov, "tool", json_string(h->tool));
	json_object_set_new(prov, "version", json_string(h->version));
	json_object_set_new(prov, "argv", argv);
	json_object_set_new(o, "provenance", prov);
	json_object_set_new(o, "payload_bytes", json_integer((json_int_t)h->payload_total));
	if (kvc_is_sparse(h)) {
		/* per layer: the rows, and per kv head the positions it keeps */
		json_t *layers = json_array();
		for (int l = 0; l < h->n_layer; l++) {
			json_t *lo = json_object(), *heads = json_array();
			for (int head = 0; head < h->n_kv_head; head++) {
				json_t *p = json_array();
				const int32_t *k = kvc_keep(h, l, head);
				for (int j = 0; j < kvc_layer_rows(h, l); j++)
					json_array_append_new(p, json_integer(h->pos[k[j]]));
				json_array_append_new(heads, p);
			}
			json_object_set_new(lo, "rows", json_integer(kvc_layer_rows(h, l)));
			json_object_set_new(lo, "head_pos", heads);
			json_array_append_new(layers, lo);
		}
		json_object_set_new(o, "evicted", layers);
	}
	return o;
}

/* Every cache of the stream: describe it, then verify its layers and end record. */
static int info_kvc(struct kvc_reader *r, const char *name)
{
	const struct kvc_header *h;
	int rc, idx = 0;
	while ((rc = kvc_reader_next_header(r, &h)) == KB_OK) {
		idx++;
		json_t *o = NULL;
		if (opt_json)
			o = kvc_json(name, idx, h);
		else
			kvc_print(name, idx, h);
		uint64_t start = h->stream_offset;
		int n_layer = h->n_layer, n_tokens = h->n_tokens;
		/* the K and V an f16 cache of the same rows would hold */
		double f16 = 0;
		for (int l = 0; l < h->n_layer; l++)
			f16 += 4.0 * kvc_layer_rows(h, l) * h->n_kv_head * h->head_dim;
		/* every layer read (a compressed one decompressed, to check it) */
		int l;
		while ((l = kvc_reader_layer(r, NULL, NULL, 0)) >= 0)
			;
		rc = l == KB_EOF ? KB_OK : l;
		const double payload = (double)kvc_reader_payload_read(r);
		if (opt_json) {
			json_object_set_new(o, "bytes", json_integer((json_int_t)(kvc_reader_offset(r) - start)));
			if (rc == KB_OK) {
				json_object_set_new(o, "payload_bytes", json_integer((json_int_t)payload));
				json_object_set_new(o, "bytes_per_token", json_real(n_tokens ? payload / n_tokens : 0));
				json_object_set_new(o, "ratio_to_f16", json_real(payload > 0 ? f16 / payload : 1));
			}
			json_object_set_new(o, "ok", json_boolean(rc == KB_OK));
			if (rc)
				json_object_set_new(o, "error", json_string(kb_error()));
			json_line(o);
		} else if (rc == KB_OK) {
			char sz[64];
			human_size(kvc_reader_offset(r) - start, sz, sizeof sz);
			printf("  verified    %d layer checksums and the end record; the cache is %s\n", n_layer, sz);
			printf("  stored      %.1f bytes per token of K and V, %.2fx smaller than f16\n",
			       n_tokens ? payload / n_tokens : 0.0, payload > 0 ? f16 / payload : 1.0);
		}
		if (rc)
			break;
	}
	if (rc == KB_EOF && idx == 0)
		rc = kb_fail(KB_ERR_FORMAT, "'%s': empty input", name);
	if (rc != KB_EOF) {
		fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
		return 1;
	}
	return 0;
}

/* ---- GGUF ---- */

/* A scalar metadata value as JSON; arrays as {"type": ..., "n": ...}. */
static json_t *kv_json(const struct gguf_kv *kv)
{
	switch (kv->type) {
	case GGUF_TYPE_STRING:
		return json_stringn(kv->strs[0].data, (size_t)kv->strs[0].len);
	case GGUF_TYPE_BOOL:
		return json_boolean(*(const uint8_t *)kv->data);
	case GGUF_TYPE_FLOAT32:
		return json_f32(kb_lef32(kv->data));
	case GGUF_TYPE_FLOAT64:
		return json_real(kb_lef64(kv->data));
	case GGUF_TYPE_ARRAY: {
		json_t *a = json_object();
		json_object_set_new(a, "type", json_string(gguf_vtype_name(kv->arr_type)));
		json_object_set_new(a, "n", json_integer((json_int_t)kv->arr_n));
		return a;
	}
	case GGUF_TYPE_UINT64:
		if (kb_le64(kv->data) > INT64_MAX)
			return json_real((double)kb_le64(kv->data));
		/* fall through */
	default:
		return json_integer((json_int_t)gguf_arr_get_i64(kv->type, kv->data, 0));
	}
}

static void kv_print(const struct gguf_kv *kv)
{
	printf("  %-40.*s ", (int)kv->key.len, kv->key.data);
	switch (kv->type) {
	case GGUF_TYPE_STRING: {
		struct gguf_str s = kv->strs[0];
		printf("%.*s%s\n", (int)(s.len < 60 ? s.len : 60), s.data, s.len > 60 ? "..." : "");
		break;
	}
	case GGUF_TYPE_BOOL: printf("%s\n", *(const uint8_t *)kv->data ? "true" : "false"); break;
	case GGUF_TYPE_FLOAT32:
	case GGUF_TYPE_FLOAT64: printf("%g\n", gguf_arr_get_f64(kv->type, kv->data, 0)); break;
	case GGUF_TYPE_ARRAY: printf("[%" PRIu64 " x %s]\n", kv->arr_n, gguf_vtype_name(kv->arr_type)); break;
	case GGUF_TYPE_UINT64: printf("%" PRIu64 "\n", kb_le64(kv->data)); break;
	default: printf("%" PRId64 "\n", gguf_arr_get_i64(kv->type, kv->data, 0)); break;
	}
}

/* key starts with prefix (a C string) */
static bool key_has_prefix(struct gguf_str key, const char *prefix, size_t n)
{
	return key.len > n && memcmp(key.data, prefix, n) == 0;
}

static int info_gguf(struct gguf *g, const char *name)
{
	struct gguf_str arch = { 0, "" }, s;
	(void)gguf_get_str(g, "general.architecture", &arch);
	char prefix[128];
	snprintf(prefix, sizeof prefix, "%.*s.", (int)(arch.len < 100 ? arch.len : 100), arch.data);
	size_t plen = strlen(prefix);
	uint8_t fp[32], tfp[32];
	char mfp[65], tfph[65];
	gguf_fingerprint(g, fp);
	gguf_tokenizer_fingerprint(g, tfp);
	fp_hex(fp, mfp);
	fp_hex(tfp, tfph);
	uint64_t n_vocab = 0;
	const struct gguf_str *toks;
	(void)gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n_vocab);

	/* tensor types: count and bytes per type, in type order */
	uint64_t count[QTYPE_COUNT + 1] = { 0 }, bytes[QTYPE_COUNT + 1] = { 0 }, total = 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		int t = g->tensors[i].type;
		int slot = t >= 0 && t < QTYPE_COUNT ? t : QTYPE_COUNT;
		count[slot]++;
		bytes[slot] += g->tensors[i].size;
		total += g->tensors[i].size;
	}

	if (opt_json) {
		json_t *o = json_object(), *hp = json_object(), *types = json_object(), *tk = json_object();
		json_object_set_new(o, "file", json_string(name));
		json_object_set_new(o, "format", json_string("gguf"));
		json_object_set_new(o, "gguf_version", json_integer(g->version));
		json_object_set_new(o, "bytes", json_integer((json_int_t)g->size));
		json_object_set_new(o, "architecture", json_stringn(arch.data, (size_t)arch.len));
		if (gguf_get_str(g, "general.name", &s) == KB_OK)
			json_object_set_new(o, "name", json_stringn(s.data, (size_t)s.len));
		for (uint64_t i = 0; i < g->n_kv; i++)
			if (key_has_prefix(g->kv[i].key, prefix, plen)) {
				char *k = gguf_str_dup(g->kv[i].key);
				if (k)
					json_object_set_new(hp, k + plen, kv_json(&g->kv[i]));
				free(k);
			}
		json_object_set_new(o, "hparams", hp);
		if (gguf_get_str(g, "tokenizer.ggml.model", &s) == KB_OK)
			json_object_set_new(tk, "model", json_stringn(s.data, (size_t)s.len));
		if (gguf_get_str(g, "tokenizer.ggml.pre", &s) == KB_OK)
			json_object_set_new(tk, "pre", json_stringn(s.data, (size_t)s.len));
		json_object_set_new(tk, "n_vocab", json_integer((json_int_t)n_vocab));
		json_object_set_new(o, "tokenizer", tk);
		struct template_choice tc;
		if (template_resolve("auto", g, &tc) == KB_OK)
			json_object_set_new(o, "template", json_pack("{s:s, s:s, s:b}", "name", tc.name, "why", tc.why,
								    "fallback", tc.fallback));
		json_object_set_new(o, "n_tensors", json_integer((json_int_t)g->n_tensors));
		for (int t = 0; t <= QTYPE_COUNT; t++)
			if (count[t]) {
				json_t *e = json_object();
				json_object_set_new(e, "n", json_integer((json_int_t)count[t]));
				json_object_set_new(e, "bytes", json_integer((json_int_t)bytes[t]));
				json_object_set_new(types, t < QTYPE_COUNT ? qtype_name(t) : "unknown", e);
			}
		json_object_set_new(o, "tensor_types", types);
		json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)total));
		json_object_set_new(o, "model_fingerprint", json_string(mfp));
		json_object_set_new(o, "tokenizer_fingerprint", json_string(tfph));
		json_line(o);
		return 0;
	}

	char sz[64];
	human_size(g->size, sz, sizeof sz);
	printf("%s: GGUF v%" PRIu32 ", %s\n", name, g->version, sz);
	printf("  architecture %.*s", (int)arch.len, arch.data);
	if (gguf_get_str(g, "general.name", &s) == KB_OK)
		printf(" (%.*s)", (int)(s.len < 80 ? s.len : 80), s.data);
	printf("\n");
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (key_has_prefix(g->kv[i].key, prefix, plen))
			kv_print(&g->kv[i]);
	printf("  tokenizer    ");
	if (gguf_get_str(g, "tokenizer.ggml.model", &s) == KB_OK)
		printf("%.*s", (int)(s.len < 40 ? s.len : 40), s.data);
	else
		printf("none");
	if (gguf_get_str(g, "tokenizer.ggml.pre", &s) == KB_OK)
		printf(", pre %.*s", (int)(s.len < 40 ? s.len : 40), s.data);
	printf(", %" PRIu64 " tokens\n", n_vocab);
	struct template_choice tc; /* what --template auto makes of the model */
	if (template_resolve("auto", g, &tc) == KB_OK)
		printf("  template     %s (%s)\n", tc.name, tc.why);
	human_size(total, sz, sizeof sz);
	printf("  tensors      %" PRIu64 ", %s:", g->n_tensors, sz);
	for (int t = 0; t <= QTYPE_COUNT; t++)
		if (count[t])
			printf(" %s x %" PRIu64, t < QTYPE_COUNT ? qtype_name(t) : "unknown", count[t]);
	printf("\n  model        %.16s...\n  tokenizer fp %.16s...\n", mfp, tfph);
	cli_flush();
	return 0;
}

/* ---- inputs ---- */

/* A GGUF model: mapped by its path, or read whole into memory from a pipe. */
static int info_gguf_io(struct kbio *io)
{
	const char *name = kbio_name(io);
	struct gguf *g;
	char *buf = NULL;
	size_t len;
	int rc;
	if (kbio_path(io))
		rc = gguf_open(&g, kbio_path(io));
	else if ((rc = kbio_read_all(io, &buf, &len)) == KB_OK)
		rc = gguf_open_mem(&g, buf, len, name);
	if (rc) {
		fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
		free(buf);
		return 1;
	}
	rc = info_gguf(g, name);
	gguf_close(g);
	free(buf);
	return rc;
}

static int info_path(const char *path)
{
	struct kbio *io = NULL;
	enum kbio_type type;
	if (kbio_open(&io, path) || kbio_sniff(io, &type)) {
		fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
		kbio_close(io);
		return 1;
	}
	const char *name = kbio_name(io);
	struct kvc_reader *r;
	int rc = 1;
	switch (type) {
	case KBIO_KVC:
		if (kbio_kvc_reader(io, &r)) {
			fprintf(stderr, "%s: %s\n", cli_tool, kb_error());
		} else {
			rc = info_kvc(r, name);
			kvc_reader_free(r);
		}
		break;
	case KBIO_GGUF:
		rc = info_gguf_io(io);
		break;
	case KBIO_EMPTY:
		fprintf(stderr, "%s: '%s': empty input\n", cli_tool, name);
		break;
	case KBIO_OTHER:
		fprintf(stderr, "%s: '%s': not a kvc stream or a GGUF model (unknown magic)\n", cli_tool, name);
		break;
	}
	kbio_close(io);
	return rc;
}

int main(int argc, char **argv)
{
	cli_start(&cli);
	int c;
	while ((c = cli_next(&cli, argc, argv)) != -1) {
		switch (c) {
		case 'j': opt_json = true; break;
		default: cli_unreachable(c);
		}
	}
	if (optind == argc && isatty(STDIN_FILENO))
		cli_usage_error("no input: give FILE... or a stream on stdin");
	int bad = 0;
	if (optind == argc)
		bad |= info_path("-");
	for (int i = optind; i < argc; i++)
		bad |= info_path(argv[i]);
	return bad ? 1 : 0;
}
