"""prompts.py — the prompt kvblend bench builds for a CacheBlend-schema question
(common/dataset.c: dataset_prefix, dataset_chunk, dataset_query; template
plain), as the pieces it tokenizes one by one: the head (after BOS), one piece
per passage, the tail. The reader model is trained on exactly these pieces, so
that what it sees in training is what bench, blend and the demo give it.
"""

PREFIX = ("Answer the question based on the given passages. Only give me the answer and do not output any "
          "other words.\n\nThe following are given passages.\n")


def chunk(ctx):
    return f"{ctx['title']}\n\n{ctx['text']}\n\n"


def query(question):
    """CacheBlend's normalize_question: the first letter lowered, a '?' at the end."""
    q = question[:1].lower() + question[1:]
    if not q.endswith("?"):
        q += "?"
    return ("\n\nAnswer the question based on the given passages. Answer the question within 5 words. "
            f"Do NOT repeat the question or output any other words. Question: {q}\nAnswer:")


def pieces(item):
    """[head, chunk 1, ..., chunk n, tail]."""
    return [PREFIX] + [chunk(c) for c in item["ctxs"]] + [query(item["question"])]


def encode(tok, item):
    """The prompt's ids (BOS first), each piece tokenized alone, as kvblend does;
    and the index where each piece starts."""
    ids, starts = [tok.bos], []
    for p in pieces(item):
        starts.append(len(ids))
        ids += tok.encode(p)
    return ids, starts
