#!/usr/bin/python3
"""train.py — train the reader model: a small llama (RMSNorm, RoPE, SwiGLU,
grouped-query attention) that answers ragdata.py's questions from the passages,
on the prompt kvblend bench builds (prompts.py), with the tokenizer of rtok.py.

    /usr/bin/python3 tests/rag/train.py --out DIR [--steps N [--stop S]] [--seed S]

writes DIR/ as a Hugging Face model directory (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json) that `kvblend quantize --hf DIR OUT TYPE`
turns into GGUF, and DIR/log.tsv, the curriculum's progress. The run is
deterministic for a seed: the questions, their order, the stages (which
advance at fixed steps, or earlier on held-out exact match) and the learning
rate depend on the steps, never on the clock. --stop S ends a --steps N run
after step S: the checkpoint a longer run passes through.

Needs Debian's python3-torch (CPU) and, for speed, libopenblas0-pthread
(torch's own threads do the parallel work; see _threads_env for the rest).
Training questions come from seeds 1000 and up; every test set uses seeds
below 1000, so no held-out question is ever trained on.
"""

import argparse
import json
import math
import os
import random
import re
import struct
import sys
import time


def _threads_env():
    """Before torch loads: OpenMP threads that sleep at a barrier instead of
    spinning (on a shared 2-core machine spinning made steps 3-8x slower),
    and OpenBLAS's kernels for this CPU (its detection picked SSE3 ones here)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    if " avx512f" in flags:
        os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    elif " avx2" in flags:
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")


_threads_env()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prompts  # noqa: E402
import ragdata  # noqa: E402
import rtok  # noqa: E402

TRAIN_SEED0 = 1000


# ---- the model (Hugging Face LlamaForCausalLM's layout and names) ----

class Config:
    def __init__(self, **kw):
        self.vocab_size = 1024
        self.hidden_size = 128
        self.intermediate_size = 384
        self.num_hidden_layers = 4
        self.num_attention_heads = 4
        self.num_key_value_heads = 2
        self.max_position_embeddings = 1024
        self.rms_norm_eps = 1e-5
        self.rope_theta = 10000.0
        self.tie_word_embeddings = True
        self.__dict__.update(kw)

    def hf(self):
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings, "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta, "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32",
        }


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c.hidden_size, c.hidden_size // c.num_attention_heads
        self.nh, self.nkv, self.hd = c.num_attention_heads, c.num_key_value_heads, hd
        self.input_layernorm = RMSNorm(d, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(d, c.rms_norm_eps)
        self.q_proj = torch.nn.Linear(d, self.nh * hd, bias=False)
        self.k_proj = torch.nn.Linear(d, self.nkv * hd, bias=False)
        self.v_proj = torch.nn.Linear(d, self.nkv * hd, bias=False)
        self.o_proj = torch.nn.Linear(self.nh * hd, d, bias=False)
        self.gate_proj = torch.nn.Linear(d, c.intermediate_size, bias=False)
        self.up_proj = torch.nn.Linear(d, c.intermediate_size, bias=False)
        self.down_proj = torch.nn.Linear(c.intermediate_size, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        # RoPE, rotate-half form (the importer permutes q and k for GGUF's llama)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # grouped-query attention: query head i reads kv head i // (nh / nkv)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        y = torch.softmax(att, dim=-1) @ v
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Reader(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = torch.nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = torch.nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        hd = c.hidden_size // c.num_attention_heads
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        t = torch.arange(c.max_position_embeddings, dtype=torch.float64)
        f = torch.outer(t, inv)
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos().float(), persistent=False)
        self.register_buffer("sin", emb.sin().float(), persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
                if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                    p.data *= 1 / math.sqrt(2 * c.num_hidden_layers)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed_tokens(ids)
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x) @ self.embed_tokens.weight.t()


def hf_state(model):
    """The weights under Hugging Face's names."""
    out = {}
    for n, p in model.state_dict().items():
        if n in ("cos", "sin"):
            continue
        if n.startswith("layers."):
            i, rest = n.split(".", 2)[1:]
            sub = "self_attn." if rest.split(".")[0] in ("q_proj", "k_proj", "v_proj", "o_proj") else \
                  "mlp." if rest.split(".")[0] in ("gate_proj", "up_proj", "down_proj") else ""
            out[f"model.layers.{i}.{sub}{rest}"] = p
        else:
            out["model." + n] = p
    return out


def load_hf_state(model, state):
    mine = {}
    for n, p in state.items():
        n = n[len("model."):]
        n = n.replace("self_attn.", "").replace("mlp.", "")
        mine[n] = p
    model.load_state_dict(mine, strict=False)


def write_safetensors(path, tensors, meta):
    header, off, blobs = {"__metadata__": meta}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().float().contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy()).view(e["shape"])
    return out


def save(model, tok, d, meta):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(model.c.hf(), f, indent=1)
        f.write("\n")
    write_safetensors(os.path.join(d, "model.safetensors"), hf_state(model), meta)
    tok.save(d)


def load(d):
    with open(os.path.join(d, "config.json")) as f:
        h = json.load(f)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings")
    model = Reader(Config(**{k: h[k] for k in keys}))
    load_hf_state(model, read_safetensors(os.path.join(d, "model.safetensors")))
    return model, rtok.Tokenizer.load(d)


# ---- data ----

def example(tok, item):
    """(ids, n_prompt): the prompt and its answer with EOS after it; the
    tokens from n_prompt on are the answer, scored apart from the rest."""
    ids, _ = prompts.encode(tok, item)
    ans = tok.encode(" " + item["answers"][0]) + [tok.eos]
    return ids + ans, len(ids)


FACTS = [  # (relation, pattern in a person passage, question)
    ("born", re.compile(r"born in (?:the town of )?([A-Z]\w+)"), "Where was {} born?"),
    ("job", re.compile(r"as a (\w+)"), "What was the job of {}?"),
    ("year", re.compile(r"(?:born in [A-Z]\w+ in|In) (\d{4})"), "In which year was {} born?"),
    ("lived", re.compile(r"(?:lived in|moved to) ([A-Z]\w+)"), "In which town did {} live later?"),
]


def more_questions(rng, item, k):
    """Up to k more single-hop questions about the same passages: what each
    person passage says of its subject (its title), read back from the text."""
    qs = []
    for c in item["ctxs"]:
        for rel, pat, q in FACTS:
            m = pat.search(c["text"])
            if m and c["text"].startswith((c["title"], "In ")):
                qs.append((q.format(c["title"]), m.group(1)))
    rng.shuffle(qs)
    return qs[:k]


def multi_example(tok, rng, item, k, limit=1024):
    """The question, then up to k more about the same passages, each framed
    as bench frames one and followed by its answer and EOS: the first is
    exactly an ordinary example; the others add answers to learn from
    (which passage is about whom) at the price of a query each. The extra
    questions stop where the next would pass the context (limit tokens)."""
    ids, _ = prompts.encode(tok, item)
    spans = []
    for i, (q, a) in enumerate([(item["question"], item["answers"][0])] + more_questions(rng, item, k)):
        more = tok.encode(prompts.query(q)) if i else []
        ans = tok.encode(" " + a) + [tok.eos]
        if i and len(ids) + len(more) + len(ans) > limit:
            break
        ids += more
        spans.append((len(ids), len(ids) + len(ans)))
        ids += ans
    return ids, spans


def copy_example(tok, item, limit=1024):
    """The auxiliary copy task: the passages, then the same passages again;
    the second copy is scored like an answer. Copying a span seen earlier is
    the mechanism (an induction head) every question needs, and the plain
    questions alone teach it slowly. As many passages as fit twice in the
    context (limit tokens)."""
    for k in range(len(item["ctxs"]), 0, -1):
        once = tok.encode("".join(prompts.chunk(c) for c in item["ctxs"][:k]))
        if 1 + 2 * len(once) <= limit:
            break
    return [tok.bos] + once + once, 1 + len(once)


def batch(tok, items, copies=(), raw=(), multi=()):
    exs = [example(tok, it) for it in items] + list(multi) + [copy_example(tok, it) for it in copies] + list(raw)
    raw0 = len(exs) - len(raw)
    T = max(len(e[0]) for e in exs)
    x = torch.zeros(len(exs), T, dtype=torch.long)
    y = torch.full((len(exs), T), -1, dtype=torch.long)
    ans = torch.zeros(len(exs), T, dtype=torch.bool)
    for b, (ids, n_prompt) in enumerate(exs):
        t = torch.tensor(ids)
        x[b, :len(ids)] = t
        if isinstance(n_prompt, list):  # a multi_example: its answers' spans
            y[b, :len(ids) - 1] = t[1:]
            for s0, s1 in n_prompt:
                ans[b, s0 - 1:s1 - 1] = True
            continue
        if n_prompt < 0:  # an echo sequence: each token after the marker names the one before it
            y[b, 3:len(ids)] = t[2:len(ids) - 1]
            ans[b, 3:len(ids)] = True
            continue
        y[b, :len(ids) - 1] = t[1:]
        ans[b, n_prompt - 1:len(ids) - 1] = True
        if b >= raw0:  # random tokens before the copy: nothing to learn there
            y[b, :n_prompt - 1] = -1
    return x, y, ans


STAGES = [
    # (name, passages lo..hi, kind, the last step it may run to): a stage ends
    # there, or earlier at a check where its held-out exact match is >= 0.9
    ("single-1-2", (1, 2), "single", 1600),
    ("single-2-4", (2, 4), "single", 2800),
    ("mixed-2-4", (2, 4), "mixed", 3800),
    ("mixed-3-7", (3, 7), "mixed", 4800),
    ("mixed-4-11", (4, 11), "mixed", 1 << 30),
]


def random_aux(rng, n_vocab):
    """An auxiliary sequence of random tokens, every answer being a span
    copied from a passage: "copy" (BOS, L tokens, the same L again; the second
    half is scored: needs an induction head, which the questions alone had not
    formed after 1,000 steps) or "echo" (BOS, EOS as a marker, L tokens, each
    scored on naming the token before it: a previous-token head, the first half
    of an induction head, which forms in ~150 steps)."""
    L = rng.randint(20, 60)
    r = [rng.randrange(2, n_vocab) for _ in range(L)]
    if rng.random() < 0.5:
        return [0] + r + r, 1 + L
    return [0, 1] + r, -1


def draw(rng, stage, counter):
    _, (lo, hi), kind, _ = stage
    n = rng.randint(lo, hi)
    counter[0] += 1
    return ragdata.item(TRAIN_SEED0 + n, counter[0], n, kind)


@torch.no_grad()
def answer(model, tok, item, max_new=8):
    ids, _ = prompts.encode(tok, item)
    out = []
    for _ in range(max_new):
        logits = model(torch.tensor([ids + out]))[0, -1]
        t = int(logits.argmax())
        if t == tok.eos:
            break
        out.append(t)
        if "\n" in tok.decode(out):
            break
    return tok.decode(out).strip().split("\n")[0].strip()


def evaluate(model, tok, seed, n, passages, kind):
    model.eval()
    hits = {}
    for i in range(n):
        it = ragdata.item(seed, i, passages, kind)
        k = it["kind"] if kind == "mixed" else kind
        got = answer(model, tok, it)
        h = hits.setdefault(k, [0, 0])
        h[0] += got == it["answers"][0]
        h[1] += 1
    model.train()
    return {k: v[0] / v[1] for k, v in hits.items()}


def main(argv):
    ap = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the model directory to write")
    ap.add_argument("--steps", type=int, default=6000, help="optimizer steps (default 6000)")
    ap.add_argument("--stop", type=int, help="stop after this step (a checkpoint of a --steps run)")
    ap.add_argument("--seed", type=int, default=1, help="initialisation and sampling seed")
    ap.add_argument("--tokenizer", help="an existing tokenizer directory (default: train one)")
    ap.add_argument("--init", help="start from the weights of a model directory this script wrote "
                    "(its tokenizer too); the step count, stages and data start afresh")
    ap.add_argument("--batch-tokens", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lm-weight", type=float, default=1.0, help="weight of the non-answer tokens' loss")
    ap.add_argument("--copy-share", type=float, default=0.2, help="share of copy-task sequences in a batch")
    ap.add_argument("--aux-share", type=float, default=0.4, help="share of random-token copy/echo sequences")
    ap.add_argument("--aux-until", type=int, default=3000, help="the auxiliary tasks' last step")
    ap.add_argument("--first-stage", choices=[st[0] for st in STAGES], help="start the curriculum here")
    ap.add_argument("--more-questions", type=int, default=0,
                    help="ask up to N more questions after each one (about the same passages)")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--ff", type=int, default=384)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    if a.tokenizer:
        tok = rtok.Tokenizer.load(a.tokenizer)
    else:
        tok = rtok.Tokenizer(rtok.train(rtok.corpus(TRAIN_SEED0, 3000), 1024))
    cfg = Config(hidden_size=a.d, num_hidden_layers=a.layers, intermediate_size=a.ff,
                 num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=len(tok.vocab))
    model = Reader(cfg)
    if a.init:
        model, tok = load(a.init)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05)
    log = open(os.path.join(a.out, "log.tsv"), "w")
    log.write("step\tminutes\tstage\tlr\tloss\tanswer_loss\ttokens_per_s\teval\n")
    print(f"{n_params} parameters, {len(tok.vocab)} tokens", file=sys.stderr)
    t0 = time.time()
    stage, counter, step, seen = 0, [0], 0, 0
    if a.first_stage:
        stage = [st[0] for st in STAGES].index(a.first_stage)
    ema = ema_ans = None
    tp_t, tp_n = time.time(), 0
    last = a.stop or a.steps
    while step < last:
        # lr: warm up 100 steps, hold, then down to a tenth over the last 20%
        lr = a.lr * min(1.0, (step + 1) / 100)
        frac = step / a.steps
        if frac > 0.8:
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (frac - 0.8) / 0.2))
        for g in opt.param_groups:
            g["lr"] = lr
        # a batch of about batch_tokens tokens
        items, copies, raw, multi, n_tok = [], [], [], [], 0
        while n_tok < a.batch_tokens:
            if step < a.aux_until and rng.random() < a.aux_share:
                raw.append(random_aux(rng, len(tok.vocab)))
                n_tok += len(raw[-1][0])
                continue
            it = draw(rng, STAGES[stage], counter)
            if step < a.aux_until and rng.random() < a.copy_share:
                copies.append(it)
                n_tok += 120 * len(it["ctxs"])
            elif a.more_questions:
                multi.append(multi_example(tok, rng, it, a.more_questions))
                n_tok += len(multi[-1][0])
            else:
                items.append(it)
                n_tok += 60 * len(it["ctxs"]) + 80
        x, y, ans = batch(tok, items, copies, raw, multi)
        logits = model(x)
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-1, reduction="none")
        ce = ce.view(y.shape)
        valid = y >= 0
        other = valid & ~ans
        l_ans = ce[ans].mean()
        l_other = ce[other].mean()
        loss = l_ans + a.lm_weight * l_other
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += int(valid.sum())
        tp_n += x.numel()
        ema = float(l_other) if ema is None else 0.98 * ema + 0.02 * float(l_other)
        ema_ans = float(l_ans) if ema_ans is None else 0.98 * ema_ans + 0.02 * float(l_ans)
        if step % 50 == 0:
            now = time.time()
            tps = tp_n / (now - tp_t)
            line = f"{step}\t{(now - t0) / 60:.1f}\t{STAGES[stage][0]}\t{lr:.2e}\t{ema:.3f}\t{ema_ans:.3f}\t{tps:.0f}\t"
            if step % 200 == 0:
                _, (lo, hi), kind, end = STAGES[stage]
                acc = evaluate(model, tok, 7, 60, hi, kind)
                line += json.dumps(acc)
                # the next stage when this one is learnt or its steps are spent
                if stage + 1 < len(STAGES) and (min(acc.values()) >= 0.9 or step >= end):
                    stage += 1
                    line += f"\t-> {STAGES[stage][0]}"
                save(model, tok, a.out, {"step": str(step), "stage": STAGES[stage][0], "seed": str(a.seed)})
            log.write(line + "\n")
            log.flush()
            print(line, file=sys.stderr, flush=True)
            tp_t, tp_n = time.time(), 0
    save(model, tok, a.out, {"step": str(step), "stage": STAGES[stage][0], "seed": str(a.seed),
                             "steps": str(a.steps)})
    res = {}
    for kind in ("single", "twohop"):
        res[kind] = evaluate(model, tok, 11, 100, 6, kind)[kind]
    print(f"done: {step} steps, {seen} tokens, held-out exact match (6 passages): {res}", file=sys.stderr)
    log.write(f"# done: {step} steps, {seen} tokens, held-out exact match (6 passages): {json.dumps(res)}\n")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
