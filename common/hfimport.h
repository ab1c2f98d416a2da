/* hfimport.h — a Hugging Face model folder as a GGUF model (what
 * kvblend quantize --hf does).
 *
 * The folder is what transformers' save_pretrained() writes:
 *   config.json           architectures and hyper-parameters
 *   model.safetensors     the weights (F32, F16 or BF16), or shards listed by
 *                         model.safetensors.index.json ("weight_map")
 *   tokenizer.json        a byte-level BPE or WordPiece tokenizer (tokjson.h;
 *                         tokenizer_config.json beside it is read too)
 * Architectures: LlamaForCausalLM and MistralForCausalLM become GGUF "llama",
 * Qwen2ForCausalLM "qwen2"; any other is refused, by name.
 *
 * The GGUF file has the keys llama.cpp's converter writes: general.architecture,
 * general.name (the folder's name), ARCH.context_length (max_position_embeddings),
 * embedding_length, block_count, feed_forward_length, attention.head_count,
 * attention.head_count_kv, rope.dimension_count (the head size), rope.freq_base,
 * attention.layer_norm_rms_epsilon (attention.key_length / value_length too when
 * config.json's head_dim is not hidden_size / num_attention_heads; rope.scaling.*
 * for linear RoPE scaling), general.file_type, then the tokenizer.ggml.* keys
 * (tokjson_to_gguf). Llama 3 RoPE scaling becomes the rope_freqs.weight tensor,
 * as llama.cpp writes it.
 *
 * Tensors are renamed (model.embed_tokens.weight -> token_embd.weight,
 * model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight, ...), written
 * in the order synth.h writes them, and converted to the target's types by
 * convert_tensor_type() (convert.h): 1-D ones f32, 2-D ones the target type or
 * its fallback. For llama, the rows of q_proj and k_proj are permuted within
 * each head as llama.cpp's converter does: PyTorch's Llama rotates the two
 * halves of a head (rotate_half), GGUF's "llama" rotates adjacent pairs, so
 * GGUF row 2i + j of a head is Hugging Face row j * head_dim / 2 + i (j = 0, 1).
 * Qwen2 is not permuted (GGUF's qwen2 rotates halves, NEOX style) and has q/k/v
 * biases. With tie_word_embeddings there is no output.weight: the runtime then
 * uses token_embd.weight (model.h), as for synthetic tied models; a
 * lm_head.weight in a tied checkpoint must equal the embeddings and is dropped.
 *
 * Every tensor is checked before anything is converted: a missing one, one of
 * another shape (the message names it, with both shapes) and one the
 * architecture does not have are errors; the rotary_emb.inv_freq buffers older
 * checkpoints hold are skipped, as llama.cpp does.
 */
#ifndef KB_HFIMPORT_H
#define KB_HFIMPORT_H

#include "convert.h"
#include "util.h"

struct hfimport_opts {
	/* Called once per tensor, in output order, before the file is written; may be NULL.
	 * t->name is the GGUF name, t->source the Hugging Face one. */
	void (*on_tensor)(void *ctx, const struct convert_tensor *t);
	/* Called with what had to be guessed (the tokenizer's special tokens); may be NULL. */
	void (*on_warning)(void *ctx, const char *msg);
	void *ctx;
};

/* The GGUF architecture of a config.json "architectures" entry
 * ("LlamaForCausalLM" -> "llama"), or NULL when it is not supported. */
const char *hfimport_arch(const char *hf_arch);

/* Import the Hugging Face model folder dir into the GGUF file out ("-" = stdout,
 * else written atomically) with the 2-D weights in the types of target (convert.h:
 * a type or a K-quant mix). opts and stats may be NULL; stats->in_file_bytes is
 * the size of the safetensors files. Returns KB_OK, or KB_ERR_ARG (not a target),
 * KB_ERR_IO (a file that cannot be read), KB_ERR_FORMAT (a broken file, a tensor
 * missing, extra or of the wrong shape, hyper-parameters that do not fit),
 * KB_ERR_UNSUPPORTED (an architecture, dtype or feature the runtime lacks),
 * KB_ERR_NOMEM, with kb_error() naming the file and the problem; nothing is left
 * at out on failure. The converted tensors are held in memory until the file is
 * written. */
int hfimport_dir(const char *dir, const char *out, int target, const struct hfimport_opts *opts,
		 struct convert_stats *stats) KB_WUR;

#endif
