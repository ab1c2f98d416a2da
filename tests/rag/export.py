#!/usr/bin/python3
"""export.py — turn the trained reader (a Hugging Face directory from train.py)
into tests/models/reader.gguf with kvblend's own importer, and record what
PyTorch computes on a few held-out prompts, so that kvblend's logits can be
checked against them without PyTorch (build/tests/test_reader, in make check).

    /usr/bin/python3 tests/rag/export.py DIR [--kvblend build/bin/kvblend]
                                         [--out tests/models]

writes OUT/reader.gguf (f32), OUT/reader.check (prompts and PyTorch's
next-token logits at their last position) and OUT/reader.sha256.
"""

import argparse
import hashlib
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prompts  # noqa: E402
import ragdata  # noqa: E402
import train  # noqa: E402

CHECK_SEED = 900  # held out: training uses seeds from 1000 on


def main(argv):
    ap = argparse.ArgumentParser(prog="export.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--kvblend", default="build/bin/kvblend")
    ap.add_argument("--out", default="tests/models")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    gguf = os.path.join(a.out, "reader.gguf")
    subprocess.run([a.kvblend, "quantize", "--hf", a.dir, gguf, "f32"], check=True)
    model, tok = train.load(a.dir)
    model.eval()
    lines = ["# reader.gguf checked against PyTorch (tests/rag/export.py): per prompt, its token ids",
             "# and the next-token logits PyTorch gives at the last position"]
    with torch.no_grad():
        for i, n in enumerate((2, 6, 11)):
            item = ragdata.item(CHECK_SEED, i, n, "mixed")
            ids, _ = prompts.encode(tok, item)
            logits = model(torch.tensor([ids]))[0, -1]
            lines.append("prompt " + " ".join(map(str, [len(ids)] + ids)))
            lines.append("logits " + " ".join([str(len(logits))] + [f"{float(v):.7g}" for v in logits]))
    with open(os.path.join(a.out, "reader.check"), "w") as f:
        f.write("\n".join(lines) + "\n")
    h = hashlib.sha256(open(gguf, "rb").read()).hexdigest()
    with open(os.path.join(a.out, "reader.sha256"), "w") as f:
        f.write(f"{h}  reader.gguf\n")
    print(f"{gguf}: {os.path.getsize(gguf)} bytes, sha256 {h}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
