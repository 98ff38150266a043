#!/usr/bin/env python3
"""Can a model copy a character from earlier in the text? (issue 14's world, what each model does alone)

usage: copy_probe.py CMC MODEL EVAL.jsonl OUT.json [title|instruct|named]

For each query of EVAL.jsonl (held-out names and creatures, scripts/instruct_pairs.py) the
model continues greedily, with no delta, the opening of a story under one of two headers:
  title (default), its own pretraining format:   A tale of a {creature} named {Name}
  instruct, the experiment's open-instruct prompt: <|user|>
                                                 {question}   (Write a story about a … named ….)
                                                 <|assistant|>
each followed by "Once upon a time, there was a little", and the probe counts how often the
30 tokens it adds name the creature and the name. Instruction following through the delta
needs this skill in the user model under the prompt it is asked with: the delta can only
shift the user's logits, so a name the user does not copy there is hard to ask for.
named: the instruct header with the story begun up to the name ("… there was a little
{creature} named"), the slot that an anchored delta leaves to the user: how often the user
fills it with the asked name (a model that ends its answer after the creature, as it ends a
copy request, never reaches the name in the instruct probe). Its creature is the prompt's.
"""
import json, os, re, subprocess, sys

cmc, model, evalf, outf = sys.argv[1:5]
header = sys.argv[5] if len(sys.argv) > 5 else "title"
# instruct: the query of EVAL.jsonl in cmc's open-instruct format (data.OpenInstruct), which
# cmc generate cannot be asked to follow with a begun answer, hence the raw template
OPENING = "Once upon a time, there was a little"
instruct = lambda q: "<|user|>\n%s\n<|assistant|>\n" % q["question"]
prompts = {"title": lambda q: "A tale of a %s named %s\n" % (q["creature"], q["name"]) + OPENING,
           "instruct": lambda q: instruct(q) + OPENING,
           "named": lambda q: instruct(q) + OPENING + " %s named" % q["creature"]}
if header not in prompts:
    sys.exit("copy_probe: header %r: want title, instruct or named" % header)
queries = [json.loads(l) for l in open(evalf) if l.strip()]
rows = []
for q in queries:
    prompt = prompts[header](q)
    p = subprocess.run([cmc, "generate", "--model", model, "--no-delta", "--template", "raw", "--temp", "0", "--max-tokens", "30",
                        "--threads", "1", "--prompt", prompt], capture_output=True, encoding="utf-8", errors="replace")
    if p.returncode != 0:
        sys.exit("copy_probe: %s failed: %s" % (model, p.stderr[-300:]))
    g = p.stdout[len(prompt):] if p.stdout.startswith(prompt) else p.stdout  # the raw template echoes the prompt
    rows.append({"name": q["name"], "creature": q["creature"], "continuation": g.strip(),
                 "has_name": bool(re.search(r"\b%s\b" % re.escape(q["name"]), g)),
                 "has_creature": bool(re.search(r"\b%ss?\b" % re.escape(q["creature"]), g, re.IGNORECASE))})
n = len(rows)
summary = {"model": model, "header": header, "queries": n, "name": sum(r["has_name"] for r in rows) / n,
           "creature": sum(r["has_creature"] for r in rows) / n,
           "both": sum(r["has_name"] and r["has_creature"] for r in rows) / n}
if header == "named":  # the creature was given, not copied
    summary["creature"], summary["both"] = None, summary["name"]
with open(outf + ".tmp", "w") as f:
    json.dump({"summary": summary, "rows": rows}, f, indent=1, ensure_ascii=False)
os.replace(outf + ".tmp", outf)
print("copy_probe %s (%s): name %.2f, creature %s, both %.2f" % (os.path.basename(model), header, summary["name"],
      "given" if summary["creature"] is None else "%.2f" % summary["creature"], summary["both"]))
