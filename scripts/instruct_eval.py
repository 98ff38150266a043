#!/usr/bin/env python3
"""Score instruction following on held-out names and creatures (issue 14).

usage: instruct_eval.py CMC EVAL.jsonl OUT.json MODEL DELTA|none JUDGE [TEMPLATE]

For every query of EVAL.jsonl (from scripts/instruct_pairs.py) runs
  CMC generate --model MODEL [--delta DELTA --delta-template open-instruct | --no-delta]
      --template TEMPLATE --temp 0 --max-tokens 60 --threads 1 --stats --prompt QUERY
and records the greedy story, its finish reason and token count (cmc's own "generated" log
line: finish=stop is the end-of-generation token, since no --stop string is given).
Then scores:
  name      the story contains the character's name (whole word, case-sensitive)
  creature  it contains the creature (whole word, singular or plural, any case)
  both      both, in whatever answer
  story     the answer has at least STORY_WORDS words, prose rather than a word list (the base
            models answer an instruction as they learnt to answer a copy request: "Amy, bear.")
  follows   a story that names both: what the instruction asks
  eos       it ended with the end-of-generation token within the 60 tokens
  fluency   perplexity of the stories under JUDGE (a model that did not write them), as plain
            text with no prompt: CMC eval --task nll --template raw
OUT.json holds the summary and every generation. Env INSTRUCT_LIMIT=N: the first N queries only; INSTRUCT_ALPHA: the delta's strength (1);
INSTRUCT_DELTA_TEMPLATE: the delta's prompt template (default: TEMPLATE, the user's).
"""
import json, os, re, subprocess, sys, tempfile

cmc, evalf, outf, model, delta, judge = sys.argv[1:7]
template = sys.argv[7] if len(sys.argv) > 7 else "open-instruct"
with open(evalf) as f:
    queries = [json.loads(l) for l in f if l.strip()]
if os.environ.get("INSTRUCT_LIMIT"):  # a quick check of the pipeline: the first N queries only
    queries = queries[: int(os.environ["INSTRUCT_LIMIT"])]

STORY_WORDS = 8  # the base models alone answer with 1-7 words; the shortest story any delta led to has 9
STAT = re.compile(r"msg=generated tokens=(\d+) finish=(\w+)")
rows = []
for q in queries:
    cmd = [cmc, "generate", "--model", model, "--template", template, "--temp", "0", "--max-tokens", "60", "--threads", "1", "--stats", "--prompt", q["question"]]
    cmd += ["--no-delta"] if delta == "none" else ["--delta", delta, "--delta-template", os.environ.get("INSTRUCT_DELTA_TEMPLATE", template), "--alpha", os.environ.get("INSTRUCT_ALPHA", "1")]
    p = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")  # a byte token can end mid-character
    m = STAT.search(p.stderr)
    if p.returncode != 0 or not m:
        sys.exit("instruct_eval: %s failed (rc %d): %s" % (" ".join(cmd), p.returncode, p.stderr[-500:]))
    g = p.stdout.strip()
    rows.append({
        "question": q["question"], "name": q["name"], "creature": q["creature"], "generation": g,
        "tokens": int(m.group(1)), "finish": m.group(2),
        "has_name": bool(re.search(r"\b%s\b" % re.escape(q["name"]), g)),
        "has_creature": bool(re.search(r"\b%ss?\b" % re.escape(q["creature"]), g, re.IGNORECASE)),
        "story": len(g.split()) >= STORY_WORDS,
    })

# fluency: the judge's perplexity of the non-empty stories
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as t:
    for r in rows:
        if r["generation"]:
            t.write(json.dumps({"question": "", "answer": r["generation"]}) + "\n")
    tname = t.name
jname = tname + ".json"
ppl = None
if os.path.getsize(tname):
    p = subprocess.run([cmc, "eval", "--model", judge, "--no-delta", "--template", "raw", "--task", "nll", "--format", "tofu", "--threads", "1", "--data", tname, "--json", jname], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("instruct_eval: judging with %s failed: %s" % (judge, p.stderr[-500:]))
    with open(jname) as f:
        ppl = next(r["user"] for r in json.load(f)["results"] if r["metric"] == "perplexity")
    os.unlink(jname)
os.unlink(tname)

n = len(rows)
summary = {
    "model": model, "delta": delta, "alpha": float(os.environ.get("INSTRUCT_ALPHA", "1")), "judge": judge, "template": template, "queries": n,
    "name": sum(r["has_name"] for r in rows) / n,
    "creature": sum(r["has_creature"] for r in rows) / n,
    "both": sum(r["has_name"] and r["has_creature"] for r in rows) / n,
    "story": sum(r["story"] for r in rows) / n,
    "follows": sum(r["story"] and r["has_name"] and r["has_creature"] for r in rows) / n,
    "eos": sum(r["finish"] == "stop" for r in rows) / n,
    "mean_tokens": sum(r["tokens"] for r in rows) / n,
    "fluency_ppl": ppl,
}
with open(outf + ".tmp", "w") as f:
    json.dump({"summary": summary, "rows": rows}, f, indent=1, ensure_ascii=False)
os.replace(outf + ".tmp", outf)
print("instruct_eval %s + %s: follows %.2f (name %.2f, creature %.2f, both %.2f), EOS %.2f, judge ppl %s" % (
    os.path.basename(model), os.path.basename(delta), summary["follows"], summary["name"], summary["creature"], summary["both"], summary["eos"], "%.1f" % ppl if ppl else "-"))
