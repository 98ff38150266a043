"""TinyStories helpers shared by the tiny world's corpus and its instruction pairs.

A story "introduces" its main character when an early sentence says "a [adjectives]
CREATURE named NAME"; substitute renames that character and changes its creature
everywhere in the story (whole words, with "a"/"an" fixed).
"""
import re

# what a renamed story may be called: the stories' own names, the instruction experiment's
# (the base models know every name; only the delta is kept from the held-out ones) and more
NAMES = ("Lily Timmy Tim Max Lucy Tom Sue Spot Bob Benny Jack Sam Sarah Mia Amy Mittens Billy Sammy Sally Jane "
         "Fluffy Freddy Bongo Mary Jenna Roxy Buddy Kitty Rover Pip Otto Emma Ellie Ollie Olive Finn Carl Eva Joe "
         "Penny Johnny Jake Alex Jenny Anna Kate Kim Alice Jerry Tony Suzy Jess Molly Daisy Jill Sara Ben Tina Ted "
         "Leo Zoe Nina Rosa Hugo Ivy Milo Ruby Oscar Lola Theo Nora Felix Hazel Omar Luna Ravi Iris Pablo Greta "
         "Bella Charlie Lucas Chloe Henry Grace Jasper Mabel Arlo Poppy Ezra Wren Gus Maya Rex Dot Kai Tess Bruno Fern").split()
CREATURES = ("girl boy dog cat bird bunny rabbit puppy horse squirrel fish frog monkey bee duck mouse bear turtle sheep "
             "deer elephant kitten owl goat zebra lion cow fox tiger pig hen wolf lamb ant snail whale duckling pony").split()

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
