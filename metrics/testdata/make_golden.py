#!/usr/bin/env python3
"""Makes the golden files that metrics tests compare against.

Run from metrics/testdata with NLTK installed (Debian: apt-get install
python3-nltk; rouge_score itself is not packaged, so its tokenizer and LCS
score, a few lines each, are written out below as rouge_score has
them):

    python3 make_golden.py ../../../shared/fixtures/datasets

porter_nltk.tsv   word, stem by nltk.stem.porter.PorterStemmer() (the default
                  NLTK_EXTENSIONS mode, which rouge_score uses), for every
                  word longer than 3 letters in the TOFU fixtures and the
                  examples of Porter's paper.
rougel_tofu.tsv   ROUGE-L of answer (reference) against paraphrased_answer
                  and perturbed_answer[0] (candidates) for the 400 rows of
                  forget10_perturbed.json, with and without stemming.

With scipy installed (python3-scipy) it also prints the KS test values that
ks_test.go expects.
"""
import json
import re
import sys

import nltk
from nltk.stem import porter

STEMMER = porter.PorterStemmer()


def tokenize(text, stem):
    # rouge_score/tokenize.py
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    tokens = re.split(r"\s+", text)
    if stem:
        tokens = [STEMMER.stem(x) if len(x) > 3 else x for x in tokens]
    return [x for x in tokens if re.match(r"^[a-z0-9]+$", x)]


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def rouge_l(target, prediction, stem):
    # rouge_score/rouge_scorer.py, _score_lcs
    t, p = tokenize(target, stem), tokenize(prediction, stem)
    if not t or not p:
        return 0.0, 0.0, 0.0
    n = lcs(t, p)
    precision, recall = n / len(p), n / len(t)
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(datasets):
    tofu = datasets + "/tofu/"
    texts = []
    for name in ["forget10_perturbed", "retain90", "real_authors_perturbed", "world_facts_perturbed"]:
        for r in rows(tofu + name + ".json"):
            texts += [r["question"], r["answer"], r.get("paraphrased_answer", "")]
            texts += r.get("perturbed_answer", [])
    words = {w for t in texts for w in tokenize(t, False) if len(w) > 3}
    paper = """caresses ponies ties caress cats feed agreed plastered bled motoring
    sing conflated troubled sized hopping tanned falling hissing fizzed failing
    filing happy sky relational conditional rational valenci hesitanci digitizer
    conformabli radicalli differentli vileli analogousli vietnamization
    predication operator feudalism decisiveness hopefulness callousness formaliti
    sensitiviti sensibiliti triplicate formative formalize electriciti electrical
    hopeful goodness revival allowance inference airliner gyroscopic adjustable
    defensible irritant replacement adjustment dependent adoption homologou
    communism activate angulariti homologous effective bowdlerize probate rate
    cease controll roll dying lying tying news innings outings cannings howe
    proceed exceed succeed dies died spied flies enjoy spy generously archaeology
    theology geology skies fully hopefulli""".split()
    words.update(w for w in paper if len(w) > 3)
    with open("porter_nltk.tsv", "w") as f:
        f.write("# word<TAB>stem by NLTK %s PorterStemmer(); made by make_golden.py\n" % nltk.__version__)
        for w in sorted(words):
            f.write("%s\t%s\n" % (w, STEMMER.stem(w)))

    with open("rougel_tofu.tsv", "w") as f:
        f.write("# row<TAB>candidate<TAB>stem<TAB>precision<TAB>recall<TAB>f; made by make_golden.py\n")
        for i, r in enumerate(rows(tofu + "forget10_perturbed.json")):
            for name, cand in [("paraphrased", r["paraphrased_answer"]), ("perturbed0", r["perturbed_answer"][0])]:
                for stem in (True, False):
                    p, rec, fm = rouge_l(r["answer"], cand, stem)
                    f.write("%d\t%s\t%s\t%.17g\t%.17g\t%.17g\n" % (i, name, stem, p, rec, fm))


def lattice(n, mult, shift, scale):
    # ks_test.go's lattice()
    return [shift + scale * ((i * mult) % 1009) / 1009 for i in range(n)]


def print_ks_cases():
    from scipy.stats import ks_2samp
    cases = {
        "shift 400": (lattice(400, 37, 0, 1), lattice(400, 53, 0.1, 1)),
        "far 400": (lattice(400, 37, 0, 1), lattice(400, 53, 0.8, 1)),
        "unequal 300x200": (lattice(300, 37, 0, 1), lattice(200, 53, 0.05, 1.2)),
        "unequal 40x25": (lattice(40, 37, 0, 1), lattice(25, 53, 0.3, 1)),
    }
    for name, (a, b) in cases.items():
        r = ks_2samp(a, b)
        print("%s: d %r, p %r" % (name, float(r.statistic), float(r.pvalue)))


if __name__ == "__main__":
    main(sys.argv[1])
    print_ks_cases()
