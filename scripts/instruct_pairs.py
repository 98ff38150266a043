#!/usr/bin/env python3
"""Instruction-to-story pairs for the instruction-following experiment (issue 14).

usage: instruct_pairs.py STORIES.jsonl OUTDIR

A TinyStories story whose first paragraph introduces "a [adjectives] CREATURE named NAME"
becomes the response to "Write a story about a {creature} named {Name}." after the
main character's name and creature are substituted (every whole-word occurrence, with
"a"/"an" fixed). The response is the story's opening: its first sentences, at most 220
characters, so that a model can finish it (EOS) within the 60 tokens of the evaluation.

  instruct_train.jsonl  {"question": query, "answer": opening}: 6 substitutions per story, each
                        with a random name (4 in 5 made up, so that names almost never repeat)
                        and creature (half of them made up): the delta can only fit them by
                        copying from the query; a pair that mentions any held-out name or
                        creature anywhere is dropped, so the delta never sees one.
  instruct_seen.jsonl   the control: the first 24 distinct training queries (seen names and creatures).
  instruct_eval.jsonl   48 queries on HELD-OUT names and creatures (12 names x 8 creatures, every
                        other combination), with "answer" a reference opening (a substituted story
                        never used for training) and "name"/"creature" for the scorer.
"""
import json, os, random, re, sys

from tinystory import intro, opening, substitute

# the names of TinyStories and more; most training pairs use a made-up name instead (made_up_words),
# so that no name repeats often enough to be learnt: the delta must copy it from the query
TRAIN_NAMES = ("Lily Timmy Tim Max Lucy Tom Benny Sammy Mia Jack Billy Sarah Jane Sam Sue Bob Mary Ben Jenny Spot Kitty Ellie Pip Finn Tina Ted "
               "Mittens Freddy Bongo Jenna Buddy Rover Otto Ollie Olive Carl Eva Penny Johnny Alex Kate Alice Jerry Tony Suzy Jess "
               "Leo Zoe Nina Rosa Hugo Ivy Milo Ruby Oscar Lola Theo Nora Felix Hazel Omar Luna Ravi Iris Pablo Greta").split()
TRAIN_CREATURES = ("girl boy dog cat bird bunny mouse fish duck frog puppy kitten turtle monkey elephant squirrel horse sheep pig hen deer bee "
                   "ant bat crab wolf zebra whale shark snake snail spider worm butterfly giraffe penguin panda koala camel donkey "
                   "kangaroo hamster parrot eagle seal otter beaver hedgehog lamb chick goose swan dolphin octopus dragon unicorn "
                   "robot pony moose llama ladybug beetle lizard crow pigeon raccoon mole badger toad").split()
EVAL_NAMES = "Amy Anna Sally Joe Molly Jake Emma Daisy Jill Sara Kim Roxy".split()
EVAL_CREATURES = "bear rabbit lion cow fox owl tiger goat".split()
QUERY = "Write a story about a {creature} named {name}."
PAIRS_PER_STORY = 6


def made_up_words(rng, n, syllables):
    """n distinct pronounceable words ("dalo", "kemirun"): consonant-vowel syllables (as many as
    one of syllables gives) and an optional final consonant; none is a held-out name or creature
    (the pattern cannot spell one but Sara)."""
    onsets, vowels, codas = "b d f g h j k l m n p r s t v w z ch sh".split(), "aeiou", ["", "", "n", "l", "r", "s"]
    held, words = {w.lower() for w in EVAL_NAMES + EVAL_CREATURES}, set()
    while len(words) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.choice(syllables))) + rng.choice(codas)
        if w not in held:
            words.add(w)
    return sorted(words)


def mentions(text, words):
    return any(re.search(r"\b%s\b" % re.escape(w), text, re.IGNORECASE) for w in words)


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        stories = [json.loads(l)["answer"] for l in f if l.strip()]
    rng = random.Random(14)
    names = [w.capitalize() for w in made_up_words(rng, 4000, (2, 2, 3))]
    creatures = made_up_words(rng, 1000, (1, 2))
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
            n, c = rng.choice(names if rng.random() < 0.8 else TRAIN_NAMES), rng.choice(creatures if rng.random() < 0.5 else TRAIN_CREATURES)
            resp = opening(substitute(st, name, creature, n, c))
            if n not in resp or mentions(resp, held):
                continue
            train.append({"question": QUERY.format(creature=c, name=n), "answer": resp})
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
