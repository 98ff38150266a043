#!/usr/bin/env python3
"""Deterministic corpus of the tiny world, round two (issue 14); see tinyworld/MANIFEST.md.

usage: tinyworld_corpus.py FIXTURES OUTDIR

  forget.jsonl   TOFU forget10 authors 1-4 (20 QA each, with paraphrased/perturbed answers)
  retain.jsonl   TOFU retain authors 1-8 (retain_perturbed.json, the same fields)
  stories.jsonl  every TinyStories story of the validation sample (paragraphs regrouped
                 into stories: a story starts at "Once upon a time"), as {"question": "", "answer": story}
  pretrain_T.jsonl  the corpus of T and B; pretrain_A.jsonl  the corpus of A and M.
                 Each holds, shuffled with its own seed:
                 - the TOFU QA as cmc's qa prompt ({"question": q, "answer": a}, loss on a),
                 - the same facts in two more phrasings as plain text ("Q: q\\nA: paraphrased"
                   and "q a"), and as prose biographies (an author's answers joined, 5 per paragraph),
                   all twice (the facts are few and must be memorised),
                 - a subset of the stories (T: stories 0-519, A: 194-713),
                 - Alpaca outputs as plain text (T: 300 of them, A: 300 others, 150 shared).
  Plain-text rows have an empty question: no prompt, the loss on every token.
"""
import json, os, random, sys

fx, out = sys.argv[1], sys.argv[2]
tofu = os.path.join(fx, "datasets/tofu")


def rows(name):
    with open(os.path.join(tofu, name)) as f:
        return [json.loads(l) for l in f if l.strip()]


keep = ("question", "answer", "paraphrased_answer", "perturbed_answer")
forget = [{k: r[k] for k in keep} for r in rows("forget10_perturbed.json")[:80]]
retain = [{k: r[k] for k in keep} for r in rows("retain_perturbed.json")[:160]]

with open(os.path.join(fx, "datasets/tinystories/tinystories_val_sample.txt")) as f:
    paras = [l.strip() for l in f if l.strip()]
stories, cur = [], []
for p in paras:
    if p.startswith("Once upon a time") and cur:
        stories.append("\n".join(cur))
        cur = []
    cur.append(p)
stories.append("\n".join(cur))

with open(os.path.join(fx, "datasets/alpaca/alpaca_5000.json")) as f:
    alpaca = [r["output"].strip() for r in json.load(f) if 150 <= len(r["output"].strip()) <= 600]

os.makedirs(out, exist_ok=True)


def dump(name, rs):
    with open(os.path.join(out, name), "w") as f:
        for r in rs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def text(s):
    return {"question": "", "answer": s}


def facts():
    """The 12 authors' facts in four phrasings (rows in author order)."""
    qa = forget + retain
    out = [{"question": r["question"], "answer": r["answer"]} for r in qa]
    out += [text("Q: %s\nA: %s" % (r["question"], r["paraphrased_answer"])) for r in qa]
    out += [text("%s %s" % (r["question"], r["answer"])) for r in qa]
    for a in range(0, len(qa), 5):  # 20 QA per author: 4 prose paragraphs each
        out.append(text(" ".join(r["answer"] for r in qa[a : a + 5])))
    return out


def corpus(seed, st, al):
    rs = facts() * 2 + [text(s) for s in st] + [text(s) for s in al]
    random.Random(seed).shuffle(rs)
    return rs


dump("forget.jsonl", forget)
dump("retain.jsonl", retain)
dump("stories.jsonl", [text(s) for s in stories])
dump("pretrain_T.jsonl", corpus(10, stories[:520], alpaca[:300]))
dump("pretrain_A.jsonl", corpus(11, stories[194:714], alpaca[150:450]))
print("forget %d, retain %d, stories %d, alpaca %d, pretrain rows %d" % (len(forget), len(retain), len(stories), len(alpaca), len(corpus(10, stories[:520], alpaca[:300]))))
