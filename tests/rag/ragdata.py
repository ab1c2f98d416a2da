#!/usr/bin/env python3
"""ragdata.py — a deterministic generator of multi-passage QA tasks for the
reader model (issue 12), in CacheBlend's dataset schema, so that
`kvblend bench --dataset` reads its output unchanged.

    python3 tests/rag/ragdata.py --seed S --count N [--passages P]
                                 [--kind single|twohop|mixed]

prints a JSON array, one question per line:

    {"id": "S-i", "kind": "single"|"twohop", "type": ...,
     "question": ..., "answers": [...], "ctxs": [{"title", "text"}, ...],
     "support": [indices of the passages that hold the answer]}

Every entity is invented (names built from syllables), so the model can only
answer from the passages. Question types:

  single  born    "Where was P born?"; one passage about P says it, beside
                  other facts (the city P lived in, the year, the trade) and
                  beside passages about other people.
  single  job, year, lived: the same passage, another relation.
  twohop  alias   "Where was P born?", worded exactly as the single-hop
                  question, but the passage that holds the birthplace names P
                  only by a nickname N; another passage says that P was called
                  N. Other nicknames and other people's birthplaces stand in
                  further passages, so the answer needs the two passages read
                  together: the nickname passage's tokens must attend to the
                  passage that introduces it. This is what a cache computed
                  per passage (reuse without recomputation) cannot see.
  twohop  river   "Which river flows through the city where P was born?": the
                  person passage gives the city, a city passage the river;
                  the city P lived in has a passage (and a river) too.

The support passages stand anywhere (lost-in-the-middle), in either order,
with at least one passage between the two of a two-hop question when there
is room. Item i depends only on (seed, i, passages, kind), never on --count,
so a longer set extends a shorter one. Python 3 standard library only.
"""

import argparse
import json
import random
import sys

ONSETS = ["b", "br", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "m", "k"]
JOBS = ["baker", "potter", "sailor", "painter", "weaver", "miner", "doctor", "teacher",
        "farmer", "singer", "tailor", "builder", "fisher", "smith", "clerk", "gardener"]
CITY_TAILS = ["ton", "ford", "mere", "by", "holm", "wick", "dale", "port"]
GOODS = ["glass", "wool", "salt", "clocks", "paper", "rope", "cheese", "bells"]


def syllables(rng, n):
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(n))


class Names:
    """Unique invented names within one question."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def _fresh(self, make):
        while True:
            s = make()
            if s.lower() not in self.used:
                self.used.add(s.lower())
                return s

    def person(self):
        r = self.rng
        return self._fresh(lambda: syllables(r, r.choice([1, 2])).capitalize() + " "
                           + syllables(r, 2).capitalize())

    def nickname(self):
        r = self.rng
        return self._fresh(lambda: syllables(r, 1).capitalize() + r.choice(["o", "y", "ie", "a"]))

    def city(self):
        r = self.rng
        return self._fresh(lambda: syllables(r, r.choice([1, 2])).capitalize() + r.choice(CITY_TAILS))

    def river(self):
        r = self.rng
        return self._fresh(lambda: syllables(r, 2).capitalize())


def person_facts(rng, names):
    return {
        "name": names.person(),
        "born": names.city(),
        "lived": names.city(),
        "year": str(rng.randint(1700, 1990)),
        "job": rng.choice(JOBS),
    }


def person_text(rng, p, subject=None, with_birth=True):
    """A short paragraph about p, naming p as subject (its name or a nickname)."""
    s = subject or p["name"]
    birth = [
        f"{s} was born in {p['born']} in {p['year']}.",
        f"In {p['year']}, {s} was born in the town of {p['born']}.",
    ]
    rest = [
        f"{s} worked as a {p['job']}.",
        f"{s} later lived in {p['lived']}.",
        f"As a grown-up, {s} moved to {p['lived']} and worked as a {p['job']} there.",
    ]
    sentences = ([rng.choice(birth)] if with_birth else []) + rng.sample(rest[:2], 2)
    if rng.random() < 0.4:
        sentences = sentences[:1] + [rest[2]] if with_birth else [rest[2]]
    return " ".join(sentences)


def alias_text(rng, p, nick):
    """The passage that ties a person to a nickname, and says nothing of the birthplace."""
    return rng.choice([
        f"{p['name']} worked as a {p['job']}. Everyone who knew {p['name']} called this person {nick}.",
        f"The {p['job']} {p['name']} was better known by the nickname {nick}.",
        f"Friends never used the name {p['name']}; to them, the {p['job']} was simply {nick}.",
    ])


def city_text(rng, city, river, goods):
    return rng.choice([
        f"{city} is a town on the {river} River. It is known for its {goods}.",
        f"The {river} River flows through {city}, a town famous for {goods}.",
        f"{city} makes {goods}, and the {river} River runs through the middle of it.",
    ])


def place(rng, n, support, filler):
    """Lay the support passages at random positions (apart when there is room)
    among the filler ones; returns (ctxs, support indices)."""
    while True:
        pos = rng.sample(range(n), len(support))
        if len(pos) < 2 or n < 3 or abs(pos[0] - pos[1]) > 1:
            break
    ctxs = [None] * n
    for i, ctx in zip(pos, support):
        ctxs[i] = ctx
    it = iter(filler)
    for i in range(n):
        if ctxs[i] is None:
            ctxs[i] = next(it)
    return ctxs, pos


def single(rng, names, n):
    p = person_facts(rng, names)
    rel = rng.choice(["born", "born", "job", "year", "lived"])
    question = {
        "born": f"Where was {p['name']} born?",
        "job": f"What was the job of {p['name']}?",
        "year": f"In which year was {p['name']} born?",
        "lived": f"In which town did {p['name']} live later?",
    }[rel]
    support = [{"title": p["name"], "text": person_text(rng, p)}]
    filler = []
    for _ in range(n - 1):
        if rng.random() < 0.75:
            q = person_facts(rng, names)
            filler.append({"title": q["name"], "text": person_text(rng, q)})
        else:
            c = names.city()
            filler.append({"title": c, "text": city_text(rng, c, names.river(), rng.choice(GOODS))})
    ctxs, pos = place(rng, n, support, filler)
    return "single", rel, question, [p[rel]], ctxs, pos


def twohop_alias(rng, names, n):
    p = person_facts(rng, names)
    nick = names.nickname()
    a = {"title": p["name"], "text": alias_text(rng, p, nick)}
    b = {"title": nick, "text": person_text(rng, p, subject=nick)}
    support = [a, b] if rng.random() < 0.5 else [b, a]
    # Distractors of the same two shapes: other people known by other
    # nicknames, born elsewhere, and people named outright.
    filler = []
    while len(filler) < n - 2:
        q = person_facts(rng, names)
        k = rng.random()
        if k < 0.4 and len(filler) <= n - 4:
            qn = names.nickname()
            filler += [{"title": q["name"], "text": alias_text(rng, q, qn)},
                       {"title": qn, "text": person_text(rng, q, subject=qn)}]
        elif k < 0.7:
            qn = names.nickname()
            filler.append({"title": qn, "text": person_text(rng, q, subject=qn)})
        else:
            filler.append({"title": q["name"], "text": person_text(rng, q)})
    rng.shuffle(filler)
    ctxs, pos = place(rng, n, support, filler)
    return "twohop", "alias", f"Where was {p['name']} born?", [p["born"]], ctxs, sorted(pos)


def twohop_river(rng, names, n):
    p = person_facts(rng, names)
    river = names.river()
    a = {"title": p["name"], "text": person_text(rng, p)}
    b = {"title": p["born"], "text": city_text(rng, p["born"], river, rng.choice(GOODS))}
    support = [a, b] if rng.random() < 0.5 else [b, a]
    filler = []
    if n >= 3:  # the town p lived in has a river too: the nearest wrong answer
        filler.append({"title": p["lived"], "text": city_text(rng, p["lived"], names.river(), rng.choice(GOODS))})
    while len(filler) < n - 2:
        if rng.random() < 0.5:
            q = person_facts(rng, names)
            filler.append({"title": q["name"], "text": person_text(rng, q)})
        else:
            c = names.city()
            filler.append({"title": c, "text": city_text(rng, c, names.river(), rng.choice(GOODS))})
    rng.shuffle(filler)
    ctxs, pos = place(rng, n, support, filler)
    question = f"Which river flows through the town where {p['name']} was born?"
    return "twohop", "river", question, [river], ctxs, sorted(pos)


def item(seed, i, n, kind):
    rng = random.Random(f"ragdata:{seed}:{i}:{n}:{kind}")
    names = Names(rng)
    if kind == "mixed":
        kind = "single" if rng.random() < 0.5 else "twohop"
    if kind == "single":
        made = single(rng, names, n)
    else:
        made = (twohop_alias if rng.random() < 0.5 else twohop_river)(rng, names, n)
    k, typ, question, answers, ctxs, support = made
    return {"id": f"{seed}-{i}", "kind": k, "type": typ, "question": question,
            "answers": answers, "ctxs": ctxs, "support": support}


def main(argv):
    ap = argparse.ArgumentParser(prog="ragdata.py",
                                 description="Generate invented multi-passage QA tasks (CacheBlend schema).")
    ap.add_argument("--seed", type=int, required=True, help="seed; sets for training and testing use different seeds")
    ap.add_argument("--count", type=int, required=True, help="number of questions")
    ap.add_argument("--passages", type=int, default=6, help="passages per question (default 6)")
    ap.add_argument("--kind", choices=["single", "twohop", "mixed"], default="mixed",
                    help="question kind (default mixed: half single-hop, half two-hop)")
    a = ap.parse_args(argv)
    if a.count < 0:
        ap.error("--count must be >= 0")
    if a.passages < 2 and a.kind != "single":
        ap.error("two-hop questions need --passages of at least 2")
    if a.passages < 1:
        ap.error("--passages must be >= 1")
    out = sys.stdout
    out.write("[")
    for i in range(a.count):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(item(a.seed, i, a.passages, a.kind), ensure_ascii=False))
    out.write("\n]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
