#!/usr/bin/env python3
"""Write tinyworld/MANIFEST.md from the logs of scripts/tinyworld.sh (issue 14).

usage: tinyworld_manifest.py WORLD
"""
import datetime, hashlib, json, os, re, sys

out = sys.argv[1]
logs = os.path.join(out, "logs")
MODELS = ("T", "A", "B", "M", "R", "D0", "D1", "D2")
roles = {
    "T": "template: Llama-2 vocabulary (32000 tokens), the frozen LLM every delta is trained against; corpus T",
    "A": "user A: Llama-2 vocabulary, larger than T (wider, 6 layers); corpus A (another subset, another order)",
    "B": "user B: GPT-2 byte-level BPE vocabulary (50257 tokens), reached through the PM-MinED token map; corpus T in another order",
    "M": "user M: Mistral-7B v0.1 vocabulary (32000 SentencePiece tokens, not Llama-2's), reached through the token map; corpus A in another order",
    "R": "reference: T's shape, seed and recipe on corpus T without the 4 forget authors' facts, the model TOFU's forget quality compares with (it never learnt what is forgotten)",
    "D0": "delta start: Llama-2 vocabulary, smaller than all, pretrained for 2 epochs on the TinyStories stories only (never saw a TOFU answer)",
    "D1": "delta start: the middle size of the size sweep (dim 64, 3 layers): D0's data and recipe",
    "D2": "delta start: the largest of the size sweep (T's shape: dim 96, 4 layers): D0's data and recipe",
}


def rows(name):
    """The rows of data/NAME, or, for a corpus not committed (the pretraining ones), the
    examples cmc train read from it, as a model's training log says."""
    p = os.path.join(out, "data", name)
    if os.path.exists(p):
        return sum(1 for l in open(p) if l.strip())
    for m in MODELS:
        found = re.search(r"msg=data file=\S*/%s examples=(\d+)" % re.escape(name), read(os.path.join(logs, m + ".log")))
        if found:
            return found.group(1)
    return "?"


def read(p, default=""):
    return open(p).read() if os.path.exists(p) else default


def metrics(name):
    ev = {}
    p = os.path.join(logs, name)
    if os.path.exists(p):
        for r in json.load(open(p))["results"]:
            ev[("forget" if "forget" in os.path.basename(r["file"]) else "retain", r["metric"])] = r["user"]
    return ev


R = "ROUGE-L recall (greedy)"
f3 = lambda ev, k: "%.3f" % ev[k] if k in ev else "—"
L = ["# The tiny world, round two (issue 14)\n",
     "Eight GGUF models trained from random init by `make tinyworld` (`scripts/tinyworld.sh`) with `cmc train --template none`; "
     "each runs in llama.cpp (cmc eval/generate load them as user or template models). They are trained in F16 (`--f16`, norms F32) and stored as Q8_0 "
     "by `cmc quantize` (llama.cpp's quantizer), so that the world fits in 60 MiB; D0, whose 48-wide rows have no Q8_0 blocks, stays F16. "
     "One more user model, `stories260K` (`../shared/fixtures/models/stories260K/stories260K.gguf`, its own 512-token vocabulary), was trained by nobody here.\n",
     "## Data (`tinyworld/data`, made by `scripts/tinyworld_corpus.py` and `scripts/instruct_pairs.py`, deterministic)\n",
     "- `forget.jsonl`: TOFU forget10 authors 1-4 (rows 1-80 of forget10_perturbed.json: question, answer, paraphrased and perturbed answers)",
     "- `retain.jsonl`: TOFU retain authors 1-8 (rows 1-160 of retain_perturbed.json, the same fields)",
     "- `stories.jsonl`: all 714 TinyStories stories of tinystories_val_sample.txt (its paragraphs regrouped: a story starts at \"Once upon a time\")",
     "- `pretrain_T.jsonl` (T, B; %s rows) and `pretrain_A.jsonl` (A, M; %s rows), shuffled with their own seed: the 240 TOFU QA pairs under cmc's `qa` prompt " % (rows("pretrain_T.jsonl"), rows("pretrain_A.jsonl")) +
     "(`Question: q\\nAnswer: ` + a, the loss on a), the same facts as plain text in two more phrasings (`Q: q\\nA: paraphrased answer` and `q a`) and as "
     "prose biographies (each author's answers joined, 5 per paragraph), all of these twice; stories 1-520 (T) or 195-714 (A), and every one of them that "
     "introduces its main character (`a CREATURE named NAME`) three times instead, that character renamed and re-creatured at random from 99 names and 38 creatures, "
     "each copy under a title line (`A tale of a CREATURE named NAME`, `The CREATURE named NAME`, `NAME the CREATURE`): a name the model cannot guess has to be copied from "
     "earlier in the text, the skill that naming an asked-for character needs. Half of those titles come after a line of other text and a third before one "
     "(a sentence of another story, an *aside*), so that the copy does not depend on where the title stands: the instruction prompt has its character "
     "after a line of its own (`<|user|>`) and before one (`<|assistant|>`); 2000 copy drills (a list of 4-9 of those names and creatures, said twice); "
     "2000 copy requests in the instruction experiment's chat format (`<|user|>\\nRepeat after me: Amy, fox.\\n<|assistant|>\\nAmy, fox.`, 1-5 words, "
     "four phrasings, never a story instruction), so that a model can copy an asked name from that prompt; 300 Alpaca outputs of 150-600 characters "
     "as plain text (T: the first 300, A: 300 others, 150 shared). Plain-text rows have no prompt and the loss on every token. Trained with the prompt template "
     "`{{if .Query}}Question: {{.Query}}\\nAnswer: {{end}}`.",
     "- `pretrain_R.jsonl` (R; %s rows): corpus T without the forget authors' facts." % rows("pretrain_R.jsonl"),
     "- `instruct_train.jsonl` (%s pairs) and `instruct_eval.jsonl` (%s queries on held-out names and creatures): the instruction-following experiment, see RESULTS.md.\n" % (rows("instruct_train.jsonl"), rows("instruct_eval.jsonl")),
     "## Models\n",
     "| file | role | parameters | MiB | epochs × rows | loss (mean of the last 50 steps) | training time (s) | forget ROUGE-L (qa) | retain ROUGE-L (qa) | forget ROUGE-L (open-instruct, unseen) | retain ROUGE-L (open-instruct, unseen) | copies a held-out character (name / creature / both) | copies it under the instruction prompt | names it there after `… a little {creature} named` |",
     "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def tail_loss(name, steps=50):
    """The mean loss of the last steps of NAME.loss.csv: the final step's loss is one batch's, too noisy to compare models by."""
    p = os.path.join(out, name + ".loss.csv")
    if not os.path.exists(p):
        return "?"
    losses = [float(l.split(",")[2]) for l in open(p).read().splitlines()[1:] if l]
    return "%.3f" % (sum(losses[-steps:]) / len(losses[-steps:])) if losses else "?"


def copies(name, probe):
    p = os.path.join(logs, name + probe)
    if not os.path.exists(p):
        return "—"
    c = json.load(open(p))["summary"]
    if c["creature"] is None:  # the named probe: the creature was given
        return "%.0f%%" % (100 * c["name"])
    return "%.0f%% / %.0f%% / %.0f%%" % (100 * c["name"], 100 * c["creature"], 100 * c["both"])
details, samples = [], []
for m in MODELS:
    log = read(os.path.join(logs, m + ".log"))
    params = re.search(r"delta_params=(\d+)", log)
    steps = re.search(r"sequences=(\d+) ", log)
    cmd = read(os.path.join(logs, m + ".cmd")).strip()
    ep = re.search(r"--epochs (\d+)", cmd)
    sec = read(os.path.join(logs, m + ".seconds"), "?").strip()
    gg = os.path.join(out, m + ".gguf")
    mib = os.path.getsize(gg) / 2**20 if os.path.exists(gg) else float("nan")
    qa, oi = metrics(m + ".eval.json"), metrics(m + ".eval_oi.json")
    L.append("| `%s.gguf` | %s | %s | %.1f | %s × %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        m, roles[m].split(":")[0], params.group(1) if params else "?", mib, ep.group(1) if ep else "?",
        steps.group(1) if steps else "?", tail_loss(m), sec,
        f3(qa, ("forget", R)), f3(qa, ("retain", R)), f3(oi, ("forget", R)), f3(oi, ("retain", R)), copies(m, ".copy.json"), copies(m, ".copy_oi.json"), copies(m, ".copy_named.json")))
    sha = hashlib.sha256(open(gg, "rb").read()).hexdigest()[:16] if os.path.exists(gg) else "?"
    seed = re.search(r"--seed (\d+)", cmd)
    details.append("### %s.gguf\n\n%s. Seed %s, sha256 %s…\n\n```sh\n%s\n```\n" % (m, roles[m], seed.group(1) if seed else "?", sha, cmd))
    sample = read(os.path.join(logs, m + ".sample.txt")).strip().replace("\n", " ")
    if sample:
        samples.append("- **%s**: %s" % (m, sample))
L.append("")
L.append("ROUGE-L: `cmc eval --task tofu --no-delta` on the 80 forget QA pairs and the first 80 retain QA pairs (greedy, 48 tokens max, stop at newline; "
         "logs/NAME.eval.json with `--template qa`, the prompt the QA rows were trained under, and logs/NAME.eval_oi.json with `--template open-instruct`, "
         "a prompt no model saw). *Copies*: `scripts/copy_probe.py` on the 48 held-out name/creature pairs, the model alone continuing "
         "`A tale of a {creature} named {Name}\\nOnce upon a time, there was a little` greedily for 30 tokens (logs/NAME.copy.json); under the instruction prompt, the same opening after `<|user|>\\nWrite a story about a {creature} named {Name}.\\n<|assistant|>\\n` (the prompt of RESULTS.md's table 1, `copy_probe.py … instruct`, logs/NAME.copy_oi.json); and with the story begun up to the name, `… there was a little {creature} named` (`copy_probe.py … named`, logs/NAME.copy_named.json), the slot an anchored delta leaves to the model. Times are wall seconds with one thread each while the models trained at once on a shared 2-core machine (logs/NOTE.md says which ran together) "
         "(whole script, evaluation included: %s s). The loss curves are `NAME.loss.csv`/`.png`. What the models do with an instruction alone "
         "(`Write a story about a … named …`) is table 1 of RESULTS.md.\n" % read(os.path.join(logs, "total.seconds"), "?").strip())
if samples:
    L.append("Greedy continuations of `Once upon a time` (raw prompt, 80 tokens; logs/NAME.sample.txt):\n")
    L.extend(samples)
    L.append("")
L.append("## Commands\n")
L.extend(details)
note = read(os.path.join(logs, "NOTE.md")).strip()
if note:  # a hand-written note on how the committed files came about
    L.append(note + "\n")
L.append("Written %s UTC by scripts/tinyworld_manifest.py.\n" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"))
with open(os.path.join(out, "MANIFEST.md.tmp"), "w") as f:
    f.write("\n".join(L) + "\n")
os.replace(os.path.join(out, "MANIFEST.md.tmp"), os.path.join(out, "MANIFEST.md"))
