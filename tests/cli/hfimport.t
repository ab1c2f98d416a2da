#!/bin/sh
# hfimport.t — kvblend quantize --hf: a Hugging Face model folder into GGUF.
#
# The round trip needs no PyTorch: a synthetic f32 model (llama and qwen2, tied
# and untied, with SmolLM2's byte-level BPE tokenizer) is written as a Hugging
# Face folder by tests/hf/gguf2hf.py (python3 standard library; the inverse
# mapping, written apart from the importer: q/k rows back in rotate-half order,
# Hugging Face names, safetensors, config.json) and imported back. The result
# must be the same model: the same model and tokenizer fingerprints (every
# hyper-parameter and every tensor byte), and, for a few prompts, the same
# prefill .kvc byte for byte (the K and V of every layer and the logits of the
# last token). A wrong export (q/k left in GGUF order) must be told apart.
# Then F16/BF16 weights, shards, a quantized target, and errors: one line, exit 1.
. "$(dirname "$0")/tap.sh"
need_bin quantize prefill decode info
q=$KVBLEND_BIN/kvblend-quantize
T=$TAP_TMP

# st_write FILE HEADER N: a safetensors file: HEADER (under 64 KiB), then N zero bytes.
st_write() {
	n=${#2}
	# shellcheck disable=SC2059
	printf "$(printf '\\%03o\\%03o' $((n % 256)) $((n / 256)))\\0\\0\\0\\0\\0\\0" >"$1"
	printf '%s' "$2" >>"$1"
	head -c "$3" /dev/zero >>"$1"
}
# fails NAME PATTERN CMD...: CMD exits 1 with one line on stderr that matches PATTERN
fails() {
	name=$1 pat=$2
	shift 2
	run "$@"
	[ "$RUN_RC" -eq 1 ] && [ "$(wc -l <"$TAP_TMP/err")" -eq 1 ]
	ok $? "$name: exit 1, one line ($RUN_ERR)"
	like "$RUN_ERR" "kvblend-quantize: $pat" "$name: the message says why"
}

# ---- errors that need no exported model ----
fails "a missing folder" "'$T/nope': No such file or directory" "$q" --hf "$T/nope" "$T/x.gguf" f32
: >"$T/file"
fails "a file, not a folder" "'$T/file': not a folder*" "$q" --hf "$T/file" "$T/x.gguf" f32
mkdir "$T/empty"
fails "no config.json" "'$T/empty/config.json': No such file or directory" "$q" --hf "$T/empty" "$T/x.gguf" f32
mkdir "$T/gpt2"
echo '{"architectures": ["GPT2LMHeadModel"], "n_embd": 8}' >"$T/gpt2/config.json"
fails "an unknown architecture" "*architecture 'GPT2LMHeadModel' is not supported*" "$q" --hf "$T/gpt2" "$T/x.gguf" f32
mkdir "$T/small"
cat >"$T/small/config.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16, "max_position_embeddings": 64}
EOF
fails "no weights" "'$T/small': no model.safetensors, nor model.safetensors.index.json*" \
	"$q" --hf "$T/small" "$T/x.gguf" f32
st_write "$T/small/model.safetensors" '{"model.embed_tokens.weight":{"dtype":"F32","shape":[10,8],"data_offsets":[0,320]}}' 320
fails "a tensor of the wrong shape" \
	"'$T/small/model.safetensors': tensor 'model.embed_tokens.weight' has shape \[10, 8\], expected \[16, 8\] from '$T/small/config.json'" \
	"$q" --hf "$T/small" "$T/x.gguf" f32
st_write "$T/small/model.safetensors" '{"model.embed_tokens.weight":{"dtype":"F32","shape":[16,8],"data_offsets":[0,512]}}' 100
fails "a truncated safetensors file" "*tensor 'model.embed_tokens.weight'*ends past the data section*truncated*" \
	"$q" --hf "$T/small" "$T/x.gguf" f32
st_write "$T/small/model.safetensors" '{"model.embed_tokens.weight":{"dtype":"F32","shape":[16,8],"data_offsets":[0,512]}}' 512
fails "a missing tensor" "*missing tensor 'model.norm.weight'*" "$q" --hf "$T/small" "$T/x.gguf" f32
[ ! -e "$T/x.gguf" ]; ok $? "nothing is left at OUT after the failures"
"$q" --hf "$T/small" 2>/dev/null; [ $? -eq 2 ]; ok $? "--hf DIR without OUT TYPE is a usage error"
"$q" --hf "$T/small" "$T/in.gguf" "$T/x.gguf" f32 2>/dev/null; [ $? -eq 2 ]; ok $? "--hf DIR with an IN operand is a usage error"
"$q" --hf "$T/small" --synthetic tiny-llama "$T/x.gguf" f32 2>/dev/null; [ $? -eq 2 ]
ok $? "--hf with --synthetic is a usage error"

# ---- the round trip ----
tok=$(tap_shared tokenizers/smollm2-135m-instruct/tokenizer.json)
if ! command -v python3 >/dev/null 2>&1 || [ -z "$tok" ]; then
	skip "the round trip needs python3 and ../shared/tokenizers"
	done_testing
fi
export_hf() { python3 "$KVBLEND_ROOT/tests/hf/gguf2hf.py" "$@" --tokenizer "$tok"; }
fp() { "$KVBLEND_BIN/kvblend-info" -j "$1" | sed -n 's/.*"model_fingerprint": *"\([0-9a-f]*\)".*"tokenizer_fingerprint": *"\([0-9a-f]*\)".*/\1 \2/p'; }
# same_caches A B: prefill of each prompt gives the same .kvc from A and from B
same_caches() {
	for p in "The quick brown fox" "Once upon a time, 1999 caf\303\251s" "a"; do
		"$KVBLEND_BIN/kvblend-prefill" -m "$1" -p "$p" -o "$T/a.kvc" 2>/dev/null &&
			"$KVBLEND_BIN/kvblend-prefill" -m "$2" -p "$p" -o "$T/b.kvc" 2>/dev/null &&
			cmp -s "$T/a.kvc" "$T/b.kvc" || return 1
	done
}

for shape in tiny-llama tiny-llama-tied tiny-qwen2 tiny-qwen2-untied; do
	"$q" --synthetic $shape --seed 7 --vocab "$tok" "$T/$shape.gguf" f32 2>/dev/null
	export_hf "$T/$shape.gguf" "$T/$shape"
	ok $? "$shape: written as a Hugging Face folder"
	"$q" --hf "$T/$shape" "$T/$shape-back.gguf" f32 2>"$T/err"
	ok $? "$shape: imported ($(cat "$T/err"))"
	want=$(fp "$T/$shape.gguf")
	[ -n "$want" ] && [ "$(fp "$T/$shape-back.gguf")" = "$want" ]
	ok $? "$shape: the same model and tokenizer fingerprints"
	same_caches "$T/$shape.gguf" "$T/$shape-back.gguf"
	ok $? "$shape: the same K, V and logits for three prompts (prefill .kvc byte for byte)"
done
"$KVBLEND_BIN/kvblend-info" "$T/tiny-llama-back.gguf" | grep -q "architecture llama (tiny-llama)"
ok $? "general.name is the folder's name"
"$KVBLEND_BIN/kvblend-info" -j "$T/tiny-qwen2-back.gguf" | grep -q '"output.weight"'
[ $? -ne 0 ]; ok $? "a tied model gets no output.weight"

# the control: q and k left in GGUF's row order load, but are another model
export_hf "$T/tiny-llama.gguf" "$T/wrong" --no-unpermute
"$q" --hf "$T/wrong" "$T/wrong.gguf" f32 2>/dev/null
ok $? "a llama exported without the inverse permutation still imports"
[ "$(fp "$T/wrong.gguf")" != "$(fp "$T/tiny-llama.gguf")" ] && ! same_caches "$T/tiny-llama.gguf" "$T/wrong.gguf"
ok $? "...and the test tells it apart: other fingerprint, other caches"

"$q" -v --hf "$T/tiny-llama" "$T/v.gguf" q8_0 2>"$T/err"
grep -q "^kvblend-quantize: blk.1.attn_k.weight \[64, 32\] f32 -> q8_0 from model.layers.1.self_attn.k_proj.weight, rows permuted$" "$T/err" &&
	grep -q "blk.1.attn_v.weight .* from model.layers.1.self_attn.v_proj.weight$" "$T/err"
ok $? "-v: each tensor with its Hugging Face name; llama's q and k rows permuted, v not"
"$q" "$T/tiny-llama.gguf" "$T/ref-q8_0.gguf" q8_0 2>/dev/null
is "$(fp "$T/v.gguf")" "$(fp "$T/ref-q8_0.gguf")" "--hf to q8_0: the model converting the GGUF to q8_0 gives"

# F16 and BF16 weights (vectors in F32, as the exporter writes them): the model
# the f32 one converted to that type is
for t in f16 bf16; do
	export_hf "$T/tiny-qwen2-untied.gguf" "$T/q-$t" --dtype $t
	"$q" --hf "$T/q-$t" "$T/q-$t.gguf" $t 2>/dev/null
	ok $? "$t safetensors import"
	"$q" "$T/tiny-qwen2-untied.gguf" "$T/ref-$t.gguf" $t 2>/dev/null
	is "$(fp "$T/q-$t.gguf")" "$(fp "$T/ref-$t.gguf")" "$t: the model converting the f32 GGUF to $t gives"
done

# shards and their index
export_hf "$T/tiny-llama-tied.gguf" "$T/sharded" --shards 3
[ -e "$T/sharded/model-00003-of-00003.safetensors" ] && [ ! -e "$T/sharded/model.safetensors" ]
ok $? "the exporter wrote 3 shards and an index"
"$q" --hf "$T/sharded" "$T/sharded.gguf" f32 2>/dev/null
is "$(fp "$T/sharded.gguf")" "$(fp "$T/tiny-llama-tied.gguf")" "a sharded checkpoint imports as the single file does"
sed 's/model-00003-of-00003/model-00002-of-00003/' "$T/sharded/model.safetensors.index.json" >"$T/i" &&
	mv "$T/i" "$T/sharded/model.safetensors.index.json"
fails "an index that puts a tensor in the wrong shard" "*is not in '$T/sharded/model-00002-of-00003.safetensors', where the index puts it" \
	"$q" --hf "$T/sharded" "$T/x.gguf" f32

# tied, with lm_head.weight kept (a copy of the embeddings): accepted, dropped
export_hf "$T/tiny-qwen2.gguf" "$T/head" --keep-lm-head
"$q" --hf "$T/head" "$T/head.gguf" f32 2>/dev/null
is "$(fp "$T/head.gguf")" "$(fp "$T/tiny-qwen2.gguf")" "a tied checkpoint with lm_head.weight: the same model"
export_hf "$T/tiny-llama.gguf" "$T/mistral" --arch MistralForCausalLM
"$q" --hf "$T/mistral" "$T/mistral.gguf" f32 2>/dev/null
is "$(fp "$T/mistral.gguf")" "$(fp "$T/tiny-llama.gguf")" "MistralForCausalLM imports as llama"

# errors on an exported model
export_hf "$T/tiny-llama.gguf" "$T/drop" --drop model.layers.1.mlp.up_proj.weight
fails "a missing tensor" "'$T/drop/model.safetensors': missing tensor 'model.layers.1.mlp.up_proj.weight' (for blk.1.ffn_up.weight*" \
	"$q" --hf "$T/drop" "$T/x.gguf" f32
export_hf "$T/tiny-llama.gguf" "$T/extra" --extra model.layers.0.self_attn.o_proj.bias
fails "an extra tensor" "*unexpected tensor 'model.layers.0.self_attn.o_proj.bias' (a LlamaForCausalLM has no such weight)" \
	"$q" --hf "$T/extra" "$T/x.gguf" f32
sed 's/"intermediate_size": 128/"intermediate_size": 96/' "$T/tiny-llama/config.json" >"$T/c" && mv "$T/c" "$T/tiny-llama/config.json"
fails "config.json and the weights disagree" \
	"*tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[128, 64\], expected \[96, 64\] from*" \
	"$q" --hf "$T/tiny-llama" "$T/x.gguf" f32
rm "$T/tiny-qwen2/tokenizer.json"
fails "no tokenizer.json" "'$T/tiny-qwen2/tokenizer.json': No such file or directory*" \
	"$q" --hf "$T/tiny-qwen2" "$T/x.gguf" f32
[ ! -e "$T/x.gguf" ]; ok $? "nothing is left at OUT after the failures"
done_testing
