"""TinyStories helpers shared by the tiny world's corpus and its instruction pairs.

A story "introduces" its main character when an early sentence says "a [adjectives]
CREATURE named NAME"; substitute renames that character and changes its creature
everywhere in the story (whole words, with "a"/"an" fixed).
"""
import re

ADJ = r"(?:(?:little|big|small|young|kind|happy|old|tiny|friendly|cute|brave|smart|curious|fluffy|silly|nice|good|shy|lazy|sweet|pretty|funny),? )*"
INTRO = re.compile(r"\b(a|an) (" + ADJ + r")([a-z]+) named ([A-Z][a-z]+)")


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def intro(story, within=120):
    """(creature, name) of the main character if the story introduces one early, else None."""
    m = INTRO.search(story.split("\n")[0])
    if m and m.start() < within:
        return m.group(3), m.group(4)
    return None


def substitute(story, name, creature, new_name, new_creature):
    """The story with its main character renamed and re-creatured."""
    s = INTRO.sub(lambda m: "%s %s%s named %s" % (article((m.group(2) or new_creature)), m.group(2), new_creature, new_name), story, count=1)
    s = re.sub(r"\b%s\b" % re.escape(name), new_name, s)
    s = re.sub(r"\b(a|an) %s\b" % re.escape(creature), lambda m: "%s %s" % (article(new_creature), new_creature), s)
    s = re.sub(r"\b%ss\b" % re.escape(creature), new_creature + "s", s)
    return re.sub(r"\b%s\b" % re.escape(creature), new_creature, s)


def opening(story, limit=220):
    """The first sentences of the story, at most limit characters (at least one sentence)."""
    sents = re.split(r"(?<=[.!?])\s+", story.replace("\n", " "))
    out = sents[0]
    for s in sents[1:]:
        if len(out) + 1 + len(s) > limit:
            break
        out += " " + s
    return out
