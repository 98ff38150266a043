#!/usr/bin/env python3
"""Deterministic corpus of the tiny world (issue 7); see tinyworld/MANIFEST.md.

  forget.jsonl  TOFU forget10 authors 0..NF-1 (20 QA each, with paraphrased/perturbed answers)
  retain.jsonl  TOFU retain authors 0..NR-1 (from retain_perturbed.json, same fields)
  stories.txt   the first NS paragraphs of the TinyStories validation sample
  pretrain.jsonl  forget + retain QA, then the stories as {"question": "", "answer": story}
                (trained with the prompt template "{{if .Query}}Question: {{.Query}}\nAnswer: {{end}}",
                i.e. exactly cmc's qa template for QA rows and plain text for stories)
  qa_text.txt   the same QA rendered as plain "Question: ...\nAnswer: ..." text (for reading)
"""
import json, sys, os
fx, out, nf, nr, ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tofu = os.path.join(fx, "datasets/tofu")
def rows(name):
    with open(os.path.join(tofu, name)) as f:
        return [json.loads(l) for l in f if l.strip()]
keep = ("question", "answer", "paraphrased_answer", "perturbed_answer")
forget = [{k: r[k] for k in keep} for r in rows("forget10_perturbed.json")[: 20 * nf]]
retain = [{k: r[k] for k in keep} for r in rows("retain_perturbed.json")[: 20 * nr]]
with open(os.path.join(fx, "datasets/tinystories/tinystories_val_sample.txt")) as f:
    stories = [l.strip() for l in f if l.strip()][:ns]
os.makedirs(out, exist_ok=True)
def dump(name, rs):
    with open(os.path.join(out, name), "w") as f:
        for r in rs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
dump("forget.jsonl", forget)
dump("retain.jsonl", retain)
with open(os.path.join(out, "stories.txt"), "w") as f:
    f.write("\n".join(stories) + "\n")
qa = [{"question": r["question"], "answer": r["answer"]} for r in forget + retain]
dump("pretrain.jsonl", qa + [{"question": "", "answer": s} for s in stories])
with open(os.path.join(out, "qa_text.txt"), "w") as f:
    f.write("<|endoftext|>".join("Question: %s\nAnswer: %s" % (r["question"], r["answer"]) for r in qa) + "\n")
print("forget %d, retain %d, stories %d" % (len(forget), len(retain), len(stories)))
