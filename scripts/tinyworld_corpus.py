#!/usr/bin/env python3
"""Deterministic corpus of the tiny world, round two (issue 14); see tinyworld/MANIFEST.md.

usage: tinyworld_corpus.py FIXTURES OUTDIR

  forget.jsonl   TOFU forget10 authors 1-4 (20 QA each, with paraphrased/perturbed answers)
  retain.jsonl   TOFU retain authors 1-8 (retain_perturbed.json, the same fields)
  stories.jsonl  every TinyStories story of the validation sample (paragraphs regrouped
                 into stories: a story starts at "Once upon a time"), as {"question": "", "answer": story}
  stories_renamed.jsonl  the same, renamed as in the pretraining corpora (two copies), and
                 2000 copy drills: the delta starts' corpus
  pretrain_T.jsonl  the corpus of T and B; pretrain_A.jsonl  the corpus of A and M.
                 Each holds, shuffled with its own seed:
                 - the TOFU QA as cmc's qa prompt ({"question": q, "answer": a}, loss on a),
                 - the same facts in two more phrasings as plain text ("Q: q\\nA: paraphrased"
                   and "q a"), and as prose biographies (an author's answers joined, 5 per paragraph),
                   all twice (the facts are few and must be memorised),
                 - a subset of the stories (T: stories 0-519, A: 194-713), each one that
                   introduces its main character ("a CREATURE named NAME") three times, that
                   character renamed and re-creatured at random from a large pool and named in
                   a title line ("A tale of a CREATURE named NAME", "The CREATURE named NAME",
                   "NAME the CREATURE"): a name the model cannot guess must be copied from
                   earlier in the text, which is what lets it later name the character an
                   instruction asks for,
                 - 2000 copy drills (a random list of names and creatures said twice),
                 - 2000 copy requests in the chat format of the instruction experiment
                   ("<|user|>\nRepeat after me: Amy, fox.\n<|assistant|>\nAmy, fox."; never
                   a story instruction), so that the template and the users can copy an asked
                   name from that prompt, as the paper's base LLMs can,
                 - Alpaca outputs as plain text (T: 300 of them, A: 300 others, 150 shared).
  pretrain_R.jsonl  corpus T without the forget authors' facts: the reference model R of
                 TOFU's forget quality (a model that never learnt what is to be forgotten).
  Plain-text rows have an empty question: no prompt, the loss on every token.
"""
import json, os, random, re, sys

from tinystory import CREATURES, NAMES, intro, substitute

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


def facts(qa):
    """The authors' facts of qa in four phrasings (rows in author order)."""
    out = [{"question": r["question"], "answer": r["answer"]} for r in qa]
    out += [text("Q: %s\nA: %s" % (r["question"], r["paraphrased_answer"])) for r in qa]
    out += [text("%s %s" % (r["question"], r["answer"])) for r in qa]
    for a in range(0, len(qa), 5):  # 20 QA per author: 4 prose paragraphs each
        out.append(text(" ".join(r["answer"] for r in qa[a : a + 5])))
    return out


TITLES = ("A tale of a {c} named {n}\n", "The {c} named {n}\n", "{n} the {c}\n")


def renamed(seed, st, copies=3, asides=False):
    """The stories of st, each one that introduces its main character as copies
    renamed and re-creatured at random, every copy under a title that names it.
    asides: half the titles come after a line of other text, and a third (drawn apart from
    the first half) are followed by one: a sentence of another story, drawn by a second
    generator so that the names and creatures are those drawn without asides. The instruction prompt puts its character
    after a line of its own and before the answer's line, and a model that learnt to copy
    from a title only at the start of its text does not copy there (MANIFEST's probes)."""
    rng, out = random.Random(seed), []
    arng = random.Random(seed + 1000)
    sentences = [x for s in st for x in re.split(r"(?<=[.!?])\s+", s.replace("\n", " "))[1:] if 3 <= len(x.split()) <= 16] if asides else []
    for story in st:
        found = intro(story)
        if not found:
            out.append(text(story))
            continue
        for i in range(copies):
            name, creature = rng.choice(NAMES), rng.choice(CREATURES)
            body = substitute(story, found[1], found[0], name, creature)
            title = TITLES[i % len(TITLES)].format(c=creature, n=name)
            if asides:
                if arng.random() < 1 / 2:
                    title = arng.choice(sentences) + "\n" + title
                if arng.random() < 1 / 3:
                    title += arng.choice(sentences) + "\n"
            out.append(text(title + body))
    return out


def drills(seed, count=2000):
    """Copy drills: a random list of names and creatures, said twice. Half of every row
    can only be predicted by copying from earlier in the text, a signal dense enough for
    models this small to learn copying in minutes (the renamed stories alone, 1% of the
    tokens, taught it to none of them in 3 epochs)."""
    rng, words, out = random.Random(seed), NAMES + CREATURES, []
    for _ in range(count):
        s = ", ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + "."
        out.append(text(s + " " + s))
    return out


ASKS = ("Say these words: {w}.", "Repeat after me: {w}.", "Write the list {w}.", "Copy this: {w}.")


def chat_copies(seed, count=2000):
    """Copy requests in the open-instruct chat format of the instruction experiment
    ("<|user|>\nRepeat after me: Amy, fox.\n<|assistant|>\nAmy, fox."): 1-5 names and
    creatures, never a story instruction. Without them no model copied anything from
    that prompt (MANIFEST's copy probe under the instruction prompt: 0% for T, A, B and M),
    so neither the template nor the users could supply an asked name and a delta had to
    learn to copy alone, which a delta this small did not (tinyworld/READING.md)."""
    rng, words, out = random.Random(seed), NAMES + CREATURES, []
    for _ in range(count):
        w = ", ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
        out.append(text("<|user|>\n%s\n<|assistant|>\n%s." % (rng.choice(ASKS).format(w=w), w)))
    return out


def corpus(seed, st, al, qa):
    rs = facts(qa) * 2 + renamed(seed, st, asides=True) + drills(seed) + chat_copies(seed + 100) + [text(s) for s in al]
    random.Random(seed).shuffle(rs)
    return rs


dump("forget.jsonl", forget)
dump("retain.jsonl", retain)
dump("stories.jsonl", [text(s) for s in stories])
dump("stories_renamed.jsonl", renamed(12, stories, copies=2) + drills(12))
pretrain_T = corpus(10, stories[:520], alpaca[:300], forget + retain)
dump("pretrain_T.jsonl", pretrain_T)
dump("pretrain_A.jsonl", corpus(11, stories[194:714], alpaca[150:450], forget + retain))
dump("pretrain_R.jsonl", corpus(10, stories[:520], alpaca[:300], retain))
print("forget %d, retain %d, stories %d, alpaca %d, pretrain rows %d" % (len(forget), len(retain), len(stories), len(alpaca), len(pretrain_T)))
