#!/usr/bin/env python3
"""rtok.py — the reader model's tokenizer: a small byte-level BPE (GPT-2's
scheme) trained on ragdata.py's text, written as a Hugging Face tokenizer.json
that kvblend converts with its own code (tokenizer.ggml.pre = gpt-2), and an
encoder that gives the ids kvblend gives.

    python3 tests/rag/rtok.py train --vocab N --out DIR [--seed S --count C]
    python3 tests/rag/rtok.py encode DIR [--no-bos] < text     ids on one line

Ids: 0 <s>, 1 </s>, 2..257 the 256 bytes in GPT-2's byte-to-unicode order of
byte values, then one token per merge, in merge order. The pre-tokenizer is
GPT-2's regex, written here for ASCII text (the generator writes nothing
else; kvblend applies the full Unicode regex, which agrees on ASCII).
tests/cli/reader.t checks that this encoder and `kvblend tokenize` agree.
Python 3 standard library only.
"""

import argparse
import collections
import json
import os
import re
import sys

# GPT-2's pre-tokenizer, \p{L} and \p{N} restricted to ASCII
PRE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
BOS, EOS = "<s>", "</s>"


def byte_chars():
    """GPT-2's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2C = byte_chars()


def pretokens(text):
    return PRE.findall(text)


def symbols(pre):
    return tuple(B2C[b] for b in pre.encode("utf-8"))


def allowed(a, b):
    """No merge joins a space to a capital letter: a name is then the same
    tokens after a space as at the start of a line (a title, a sentence that
    opens a passage), with the space a token of its own before it. The model
    matches names across passages and the question by their tokens."""
    return not (a.endswith(B2C[32]) and b[0].isupper())


def train(texts, n_vocab):
    """Merges learned from texts until the vocabulary has n_vocab entries."""
    words = collections.Counter()
    for t in texts:
        words.update(pretokens(t))
    seqs = {w: list(symbols(w)) for w in words}
    n_merges = n_vocab - 2 - 256
    merges = []
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for w, s in seqs.items():
        for a, b in zip(s, s[1:]):
            if allowed(a, b):
                pairs[a, b] += words[w]
                where[a, b].add(w)
    while len(merges) < n_merges and pairs:
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2:
            break
        merges.append((a, b))
        ab = a + b
        for w in list(where[a, b]):
            s, f = seqs[w], words[w]
            for x, y in zip(s, s[1:]):
                if allowed(x, y):
                    pairs[x, y] -= f
                    if pairs[x, y] <= 0:
                        del pairs[x, y]
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(ab)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
            for x, y in zip(out, out[1:]):
                if allowed(x, y):
                    pairs[x, y] += f
                    where[x, y].add(w)
        pairs.pop((a, b), None)
        where.pop((a, b), None)
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(self.merges)}
        vocab = [BOS, EOS] + [B2C[b] for b in sorted(B2C)] + [a + b for a, b in self.merges]
        self.vocab = vocab
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.cache = {}
        self.bos, self.eos = 0, 1

    @classmethod
    def load(cls, path):
        """From a tokenizer.json this module wrote (or the directory that holds it)."""
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
        return cls(merges)

    def _bpe(self, pre):
        got = self.cache.get(pre)
        if got is not None:
            return got
        s = list(symbols(pre))
        while len(s) > 1:
            best, at = None, -1
            for i in range(len(s) - 1):
                r = self.rank.get((s[i], s[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            s[at:at + 2] = [s[at] + s[at + 1]]
        ids = [self.ids[x] for x in s]
        if len(self.cache) < 1 << 20:
            self.cache[pre] = ids
        return ids

    def encode(self, text, bos=False):
        out = [self.bos] if bos else []
        for p in pretokens(text):
            out += self._bpe(p)
        return out

    def decode(self, ids):
        c2b = {c: b for b, c in B2C.items()}
        data = bytearray()
        for i in ids:
            if i >= 2:
                data += bytes(c2b[c] for c in self.vocab[i])
        return data.decode("utf-8", errors="replace")

    def save(self, d):
        """tokenizer.json and tokenizer_config.json in directory d."""
        os.makedirs(d, exist_ok=True)
        tj = {
            "version": "1.0",
            "added_tokens": [
                {"id": 0, "content": BOS, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True},
                {"id": 1, "content": EOS, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True},
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False,
                      "vocab": {t: i for i, t in enumerate(self.vocab)},
                      "merges": [a + " " + b for a, b in self.merges]},
        }
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
            f.write("\n")
        cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS,
               "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"}
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=1)
            f.write("\n")


def corpus(seed, count):
    """The text the tokenizer learns from: every piece of the prompts bench builds."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ragdata
    import prompts
    texts = []
    for i in range(count):
        it = ragdata.item(seed, i, 2 + i % 9, "mixed")
        texts += prompts.pieces(it) + [" " + a for a in it["answers"]]
    return texts


def main(argv):
    ap = argparse.ArgumentParser(prog="rtok.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="learn the merges and write DIR/tokenizer.json")
    t.add_argument("--vocab", type=int, default=1024)
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=1000)
    t.add_argument("--count", type=int, default=3000)
    e = sub.add_parser("encode", help="print the ids of stdin")
    e.add_argument("dir")
    e.add_argument("--no-bos", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "train":
        merges = train(corpus(a.seed, a.count), a.vocab)
        tok = Tokenizer(merges)
        tok.save(a.out)
        print(f"{len(tok.vocab)} tokens, {len(merges)} merges -> {a.out}/tokenizer.json", file=sys.stderr)
    else:
        tok = Tokenizer.load(a.dir)
        text = sys.stdin.buffer.read().decode("utf-8")
        print(" ".join(map(str, tok.encode(text, bos=not a.no_bos))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
