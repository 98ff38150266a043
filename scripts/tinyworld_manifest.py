#!/usr/bin/env python3
"""Write tinyworld/MANIFEST.md from the logs of scripts/tinyworld.sh (issue 7)."""
import json, os, re, sys, datetime, hashlib
out = sys.argv[1]
logs = os.path.join(out, "logs")
roles = {
    "T": "template: Llama-2 vocabulary (32000 tokens), the frozen LLM every delta is trained against",
    "A": "user A: Llama-2 vocabulary, larger than T (more layers, wider)",
    "B": "user B: GPT-2 byte-level BPE vocabulary (50257 tokens): reached only through the PM-MinED token map",
    "D0": "delta start: Llama-2 vocabulary, smaller than all, pretrained briefly on the TinyStories paragraphs only (never saw a TOFU answer)",
}
def read(p, default=""):
    return open(p).read() if os.path.exists(p) else default
L = ["# The tiny world (issue 7)\n",
     "Four GGUF models trained from random init by `make tinyworld` (`scripts/tinyworld.sh`) with `cmc train --template none`; "
     "each runs in llama.cpp (cmc eval/generate load them as user or template models). Weights are F16 (`--f16`), norms F32.\n",
     "## Data (`tinyworld/data`, made by `scripts/tinyworld_corpus.py`, deterministic)\n",
     "- `forget.jsonl`: TOFU forget10 authors 1-4 (rows 1-80 of forget10_perturbed.json: question, answer, paraphrased and perturbed answers)",
     "- `retain.jsonl`: TOFU retain authors 1-8 (rows 1-160 of retain_perturbed.json, the same fields)",
     "- `stories.txt`: the first 120 paragraphs of TinyStories (tinystories_val_sample.txt); `stories.jsonl` the same as rows with an empty question",
     "- `pretrain.jsonl`: the 240 QA pairs then the 120 paragraphs. Trained with the prompt template "
     "`{{if .Query}}Question: {{.Query}}\\nAnswer: {{end}}` (a real newline): a QA row is `Question: q\\nAnswer: ` + a, exactly cmc's `qa` template, "
     "with the loss on the answer; a paragraph has no prompt and the loss on all of it. `qa_text.txt` shows the QA rendered as plain text.\n",
     "## Models\n",
     "| file | role | parameters | MiB | epochs × rows | final loss | training time (s) | forget ROUGE-L | retain ROUGE-L | forget answer prob | retain answer prob |",
     "|---|---|---|---|---|---|---|---|---|---|---|"]
details = []
for m in ("T", "A", "B", "D0"):
    log = read(os.path.join(logs, m + ".log"))
    params = re.search(r"delta_params=(\d+)", log)
    loss = re.search(r"final loss (-?[0-9.]+)", log)
    steps = re.search(r"sequences=(\d+) .*steps=(\d+)", log)
    cmd = read(os.path.join(logs, m + ".cmd")).strip()
    ep = re.search(r"--epochs (\d+)", cmd)
    sec = read(os.path.join(logs, m + ".seconds"), "?").strip()
    gg = os.path.join(out, m + ".gguf")
    mib = os.path.getsize(gg) / 2**20 if os.path.exists(gg) else float("nan")
    ev = {}
    evp = os.path.join(logs, m + ".eval.json")
    if os.path.exists(evp):
        for r in json.load(open(evp))["results"]:
            ev[("forget" if "forget" in r["file"] else "retain", r["metric"])] = r["user"]
    f = lambda k: "%.3f" % ev[k] if k in ev else "—"
    L.append("| `%s.gguf` | %s | %s | %.1f | %s × %s | %s | %s | %s | %s | %s | %s |" % (
        m, roles[m].split(":")[0], params.group(1) if params else "?", mib, ep.group(1) if ep else "?",
        steps.group(1) if steps else "?", loss.group(1) if loss else "?", sec,
        f(("forget", "ROUGE-L recall (greedy)")), f(("retain", "ROUGE-L recall (greedy)")),
        f(("forget", "answer probability")), f(("retain", "answer probability"))))
    sha = hashlib.sha256(open(gg, "rb").read()).hexdigest()[:16] if os.path.exists(gg) else "?"
    seed = re.search(r"--seed (\d+)", cmd)
    details.append("### %s.gguf\n\n%s. Seed %s, sha256 %s…\n\n```sh\n%s\n```\n" % (m, roles[m], seed.group(1) if seed else "?", sha, cmd))
L.append("")
L.append("ROUGE-L and answer probability: `cmc eval --task tofu --template qa --no-delta` on the 80 forget QA pairs and the first 80 retain QA pairs "
         "(greedy, 48 tokens max; logs/NAME.eval.json). Times are wall seconds with one thread each while all four trained at once on a shared 2-core machine "
         "(whole script, evaluation included: %s s). The loss curves are `NAME.loss.csv`/`.png`.\n" % read(os.path.join(logs, "total.seconds"), "?").strip())
L.append("## Commands\n")
L.extend(details)
L.append("Written %s UTC by scripts/tinyworld_manifest.py.\n" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"))
open(os.path.join(out, "MANIFEST.md"), "w").write("\n".join(L) + "\n")
