#!/usr/bin/env python3
"""gguf2hf.py — write a GGUF llama or qwen2 model (f32 tensors) as a Hugging Face
model folder, for testing kvblend quantize --hf without PyTorch: the inverse of
the import, written independently of it (python3 standard library only).

    gguf2hf.py IN.gguf DIR --tokenizer tokenizer.json [options]

DIR gets config.json (LlamaForCausalLM or Qwen2ForCausalLM, the hyper-parameters
from the GGUF keys, tie_word_embeddings when there is no output.weight),
model.safetensors (or shards and model.safetensors.index.json), and a copy of
the tokenizer.json (and tokenizer_config.json when it sits beside it).
Tensors get their Hugging Face names; for llama, the rows of attn_q and attn_k
are put back in PyTorch's rotate-half order: within a head of hd rows, GGUF row
2i + j is Hugging Face row j * hd / 2 + i.

Options:
  --dtype f32|f16|bf16  the 2-D weights' dtype (default f32); vectors stay F32
  --shards N            N shard files and an index instead of model.safetensors
  --keep-lm-head        a tied model still gets lm_head.weight (a copy of the embeddings)
  --drop NAME           leave out the Hugging Face tensor NAME (for negative tests)
  --extra NAME          add a tensor NAME of 4 floats (for negative tests)
  --arch NAME           write NAME in config.json's architectures
  --no-unpermute        leave llama's q and k rows in GGUF's order: a wrong export,
                        which a test must be able to tell from a right one
"""
import argparse
import json
import os
import shutil
import struct
import sys
from array import array

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALARS[t])


def read_gguf(path):
    """(keys, {name: (ne, bytes)}, tensor names in file order) of an f32 GGUF file."""
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if data[:4] != b"GGUF":
        sys.exit("gguf2hf: %s: not a GGUF file" % path)
    r.pos = 4
    version = r.take("<I")
    if version not in (2, 3):
        sys.exit("gguf2hf: %s: GGUF version %d" % (path, version))
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    keys = {}
    for _ in range(n_kv):
        k = r.string()
        keys[k] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        ne = [r.take("<Q") for _ in range(r.take("<I"))]
        ty, off = r.take("<I"), r.take("<Q")
        if ty != 0:
            sys.exit("gguf2hf: %s: tensor %s is not f32" % (path, name))
        infos.append((name, ne, off))
    align = keys.get("general.alignment", 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, ne, off in infos:
        n = 1
        for d in ne:
            n *= d
        tensors[name] = (ne, data[base + off:base + off + 4 * n])
    return keys, tensors, [i[0] for i in infos]


def unpermute(raw, rows, cols, heads):
    """Rows of a GGUF llama q/k back in Hugging Face order."""
    hd, rb = rows // heads, 4 * cols
    out = []
    for h in range(heads):
        for j in range(2):
            for i in range(hd // 2):
                g = h * hd + 2 * i + j
                out.append(raw[g * rb:(g + 1) * rb])
    return b"".join(out)


def encode(raw, dtype):
    """f32 bytes as dtype bytes (round to nearest even)."""
    if dtype == "F32":
        return raw
    vals = array("f")
    vals.frombytes(raw)
    if dtype == "F16":
        return struct.pack("<%de" % len(vals), *vals)
    bits = array("I")
    bits.frombytes(raw)
    return struct.pack("<%dH" % len(bits), *(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF for u in bits))


def write_safetensors(path, tensors):
    """tensors: [(name, dtype, shape, bytes)]."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            f.write(t[3])


def main():
    ap = argparse.ArgumentParser(description="write a GGUF model as a Hugging Face model folder")
    ap.add_argument("gguf")
    ap.add_argument("dir")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--shards", type=int, default=0)
    ap.add_argument("--keep-lm-head", action="store_true")
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--arch")
    ap.add_argument("--no-unpermute", action="store_true")
    a = ap.parse_args()

    keys, tensors, order = read_gguf(a.gguf)
    arch = keys["general.architecture"]
    if arch not in ("llama", "qwen2"):
        sys.exit("gguf2hf: architecture %s" % arch)
    hp = lambda k: keys["%s.%s" % (arch, k)]
    n_head, n_kv = hp("attention.head_count"), hp("attention.head_count_kv")
    tied = "output.weight" not in tensors
    vocab = tensors["token_embd.weight"][0][1]
    config = {
        "architectures": [a.arch or ("LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM")],
        "model_type": arch,
        "hidden_size": hp("embedding_length"),
        "intermediate_size": hp("feed_forward_length"),
        "num_hidden_layers": hp("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "max_position_embeddings": hp("context_length"),
        "rms_norm_eps": hp("attention.layer_norm_rms_epsilon"),
        "rope_theta": hp("rope.freq_base"),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[a.dtype],
    }
    for k, name in (("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id"),
                    ("tokenizer.ggml.padding_token_id", "pad_token_id")):
        if k in keys:
            config[name] = keys[k]

    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
                 "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
                 "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
                 "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                 "ffn_down.weight": "mlp.down_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
                 "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias"}
    dtype = a.dtype.upper()
    out = []
    for g in order:
        ne, raw = tensors[g]
        if g.startswith("blk."):
            _, l, rest = g.split(".", 2)
            hf = "model.layers.%s.%s" % (l, per_layer[rest])
        else:
            hf = names[g]
        if arch == "llama" and not a.no_unpermute and g.endswith((".attn_q.weight", ".attn_k.weight")):
            raw = unpermute(raw, ne[1], ne[0], n_head if ".attn_q." in g else n_kv)
        shape = list(reversed(ne))
        if hf not in a.drop:
            out.append((hf, dtype if len(ne) == 2 else "F32", shape, encode(raw, dtype) if len(ne) == 2 else raw))
        if hf == "model.embed_tokens.weight" and tied and a.keep_lm_head:
            out.append(("lm_head.weight",) + out[-1][1:])
    for name in a.extra:
        out.append((name, "F32", [4], struct.pack("<4f", 1, 2, 3, 4)))

    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if a.shards > 0:
        per = -(-len(out) // a.shards)
        weight_map, total = {}, 0
        for s in range(a.shards):
            file = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
            part = out[s * per:(s + 1) * per]
            write_safetensors(os.path.join(a.dir, file), part)
            for t in part:
                weight_map[t[0]] = file
                total += len(t[3])
        with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    else:
        write_safetensors(os.path.join(a.dir, "model.safetensors"), out)
    shutil.copyfile(a.tokenizer, os.path.join(a.dir, "tokenizer.json"))
    tc = os.path.join(os.path.dirname(a.tokenizer), "tokenizer_config.json")
    if os.path.exists(tc):
        shutil.copyfile(tc, os.path.join(a.dir, "tokenizer_config.json"))


if __name__ == "__main__":
    main()
