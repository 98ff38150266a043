#!/usr/bin/env python3
"""Instruction-to-story pairs for the instruction-following experiment (issue 14).

usage: instruct_pairs.py STORIES.jsonl OUTDIR

A TinyStories story whose first paragraph introduces "a [adjectives] CREATURE named NAME"
becomes the response to "Write a story about a {creature} named {Name}." after the
main character's name and creature are substituted (every whole-word occurrence, with
"a"/"an" fixed). The response is the story's opening: its first sentences, at most 220
characters, so that a model can finish it (EOS) within the 60 tokens of the evaluation.

  instruct_train.jsonl  {"question": query, "answer": opening, "from_template": [name, creature]}:
                        6 substitutions per story, each with a random name and creature of those
                        the base models know (tinystory.NAMES, CREATURES: 88 and 30 without the
                        held-out ones), which the template copies from the query (its chat-format
                        copy requests). "from_template" has cmc train the delta to match the
                        template at those words instead of learning them (a delta trained on them
                        wrote its trained names over the template's copy; made-up names, which no
                        model here copies, made it write remembered syllables: READING.md). A pair
                        that mentions any held-out name or creature anywhere is dropped, so the
                        delta never sees one.
  instruct_seen.jsonl   the control: the first 24 distinct training queries (seen names and creatures).
  instruct_eval.jsonl   48 queries on HELD-OUT names and creatures (12 names x 8 creatures, every
                        other combination), with "answer" a reference opening (a substituted story
                        never used for training) and "name"/"creature" for the scorer.
"""
import json, os, random, re, sys

from tinystory import CREATURES, NAMES, intro, opening, substitute

EVAL_NAMES = "Amy Anna Sally Joe Molly Jake Emma Daisy Jill Sara Kim Roxy".split()
EVAL_CREATURES = "bear rabbit lion cow fox owl tiger goat".split()
# the delta's names and creatures: those the base models know (tinystory.NAMES, CREATURES), less the held-out ones
TRAIN_NAMES = [n for n in NAMES if n not in EVAL_NAMES]
TRAIN_CREATURES = [c for c in CREATURES if c not in EVAL_CREATURES]
QUERY = "Write a story about a {creature} named {name}."
PAIRS_PER_STORY = 6


def has_word(text, w):
    """w occurs in text as a whole word, case-sensitive: the match cmc train makes for from_template."""
    return re.search(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(w), text) is not None


def mentions(text, words):
    return any(re.search(r"\b%s\b" % re.escape(w), text, re.IGNORECASE) for w in words)


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        stories = [json.loads(l)["answer"] for l in f if l.strip()]
    rng = random.Random(14)
    intros = []
    for st in stories:
        found = intro(st)  # the main character is introduced in the first sentence or two
        if found:
            intros.append((st,) + found)
    held = EVAL_NAMES + EVAL_CREATURES
    train, spare = [], []
    for i, (st, creature, name) in enumerate(intros):
        if i % 10 == 9:  # every tenth story is kept for the evaluation's reference openings
            spare.append((st, creature, name))
            continue
        for _ in range(PAIRS_PER_STORY):
            n, c = rng.choice(TRAIN_NAMES), rng.choice(TRAIN_CREATURES)
            resp = opening(substitute(st, name, creature, n, c))
            if n not in resp or mentions(resp, held):
                continue
            # the name and creature are the template's to copy: cmc trains the delta to match T there
            anchored = [w for w in (n, c) if has_word(resp, w)]
            train.append({"question": QUERY.format(creature=c, name=n), "answer": resp, "from_template": anchored})
    evals = []
    for i, n in enumerate(EVAL_NAMES):
        for j, c in enumerate(EVAL_CREATURES):
            if (i + j) % 2:
                continue
            st, creature, name = spare[len(evals) % len(spare)]
            evals.append({"question": QUERY.format(creature=c, name=n), "answer": opening(substitute(st, name, creature, n, c)), "name": n, "creature": c})
    # the control: 24 queries the delta was trained on (seen names and creatures)
    seen, asked = [], set()
    for r in train:
        if r["question"] not in asked and len(seen) < 24:
            asked.add(r["question"])
            c, n = re.match(r"Write a story about a (\w+) named (\w+)\.", r["question"]).groups()
            seen.append({"question": r["question"], "answer": r["answer"], "name": n, "creature": c})
    os.makedirs(out, exist_ok=True)
    for fn, rows in (("instruct_train.jsonl", train), ("instruct_eval.jsonl", evals), ("instruct_seen.jsonl", seen)):
        with open(os.path.join(out, fn), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("instruct pairs: %d stories introduce a named character; %d training pairs, %d evaluation queries" % (len(intros), len(train), len(evals)))


main()
