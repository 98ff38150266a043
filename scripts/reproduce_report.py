#!/usr/bin/env python3
"""Render RESULTS.md from the JSON written by scripts/reproduce.sh (issue 7)."""
import json, os, re, sys, datetime, platform

w, run, md, sweep = sys.argv[1:5]

def load(name):
    p = os.path.join(run, name + ".json")
    if not os.path.exists(p):
        return None
    out = {}
    for r in json.load(open(p))["results"]:
        f = "forget" if "forget" in os.path.basename(r["file"]) else "retain"
        out[(f, r["metric"])] = (r["user"], r["user_delta"])
    return out

def secs(name):
    p = os.path.join(run, name + ".seconds")
    return int(open(p).read()) if os.path.exists(p) else None

def params(logname):
    p = os.path.join(run, logname + ".log")
    if not os.path.exists(p):
        return None
    m = re.search(r"delta_params=(\d+)", open(p).read())
    return int(m.group(1)) if m else None

def final_loss(logname):
    p = os.path.join(run, logname + ".log")
    m = re.search(r"final loss (-?[0-9.]+)", open(p).read()) if os.path.exists(p) else None
    return m.group(1) if m else "?"

def size(p):
    return os.path.getsize(p) / 2**20 if os.path.exists(p) else float("nan")

def cmd(name):
    p = os.path.join(run, name + ".cmd")
    return open(p).read().strip() if os.path.exists(p) else "(not run)"

P, R, TF, TR = "answer probability", "ROUGE-L recall (greedy)", "truth ratio, forget summary mean(min(R,1/R))", "truth ratio, retain summary mean(max(0,1-R))"
def g(d, f, m, i):
    if d is None or (f, m) not in d:
        return float("nan")
    return d[(f, m)][i]
fmt = lambda v: "n/a" if v != v else "%.3f" % v

L = []
L.append("# RESULTS: the tiny world (issue 7)\n")
L.append("Written by `make reproduce` (`scripts/reproduce.sh`, report by `scripts/reproduce_report.py`) on %s UTC, %s, %d CPUs. "
         "The world (T, A, B, D0) is described in [tinyworld/MANIFEST.md](tinyworld/MANIFEST.md). Metrics come from `cmc eval --task tofu`: "
         "answer probability (length-normalised likelihood of the true answer), ROUGE-L recall of the greedy answer (48 tokens max, stop at newline) "
         "and TOFU's truth-ratio summary on the forget set (mean min(R,1/R): 1 means the model cannot tell the true answer from perturbed ones). "
         "Forget = the 80 QA pairs of the 4 forget authors; retain = the first %s retain QA pairs (the first 4 of the 8 retain authors, all memorised by every model).\n"
         % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), platform.machine(), os.cpu_count(), os.environ.get("EVAL_N", "80")))

cm = {m: load("eval_cmc_" + m) for m in "TAB"}
di = {m: load("eval_direct_" + m) for m in "TAB"}
dl = {m: load("eval_directlo_" + m) for m in "TAB"}
lr_main = re.search(r"--lr (\S+)", cmd("direct_T")).group(1) if os.path.exists(os.path.join(run, "direct_T.cmd")) else "?"
lr_lo = re.search(r"--lr (\S+)", cmd("directlo_T")).group(1) if os.path.exists(os.path.join(run, "directlo_T.cmd")) else None
L.append("## 1. Unlearning: one delta trained with T, applied to T, A and B\n")
L.append("| user model | route | forget ROUGE-L ↓ | forget answer prob ↓ | forget truth ratio | retain ROUGE-L ↑ | retain answer prob ↑ |")
L.append("|---|---|---|---|---|---|---|")
for m in "TAB":
    routes = [("alone", cm[m], 0), ("+ CMC delta (α=1)", cm[m], 1), ("directly unlearned, same budget (lr %s)" % lr_main, di[m], 0)]
    if dl[m]:
        routes.append(("directly unlearned, lr %s" % lr_lo, dl[m], 0))
    for route, d, i in routes:
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (m, route, fmt(g(d, "forget", R, i)), fmt(g(d, "forget", P, i)),
                 fmt(g(d, "forget", TF, i)), fmt(g(d, "retain", R, i)), fmt(g(d, "retain", P, i))))
L.append("")
L.append("Cost of each route (one thread; wall time on a shared 2-core machine, so compare ratios, not absolute seconds):\n")
L.append("| route | parameters trained | training time (s) | disk of what was trained (MiB) | final loss (−CE forget + CE retain) | models it serves |")
L.append("|---|---|---|---|---|---|")
L.append("| CMC: one delta, trained with T | %s | %s | %.1f | %s | T, A, B (and any other) |" % (
    params("delta_unlearn"), secs("delta_unlearn"), size(os.path.join(run, "delta_unlearn.gguf")), final_loss("delta_unlearn")))
tot_s, tot_p, tot_d = 0, 0, 0.0
for m in "TAB":
    s, p, d = secs("direct_" + m), params("direct_" + m), size(os.path.join(run, "direct_%s.gguf" % m))
    tot_s += s or 0; tot_p += p or 0; tot_d += d
    L.append("| fine-tune %s itself (lr %s) | %s | %s | %.1f | %s | %s only |" % (m, lr_main, p, s, d, final_loss("direct_" + m), m))
L.append("| fine-tune every model (sum) | %d | %d | %.1f | | T, A, B |" % (tot_p, tot_s, tot_d))
if lr_lo:
    for m in "TAB":
        L.append("| fine-tune %s itself (lr %s) | %s | %s | %.1f | %s | %s only |" % (m, lr_lo, params("directlo_" + m), secs("directlo_" + m),
                 size(os.path.join(run, "directlo_%s.gguf" % m)), final_loss("directlo_" + m), m))
L.append("")

L.append("Reading, computed from the table (a drop is relative to the model alone):\n")
for m in "TAB":
    fa, fc, fd = g(cm[m], "forget", R, 0), g(cm[m], "forget", R, 1), g(di[m], "forget", R, 0)
    ra, rc, rd = g(cm[m], "retain", R, 0), g(cm[m], "retain", R, 1), g(di[m], "retain", R, 0)
    L.append("- **%s**: forget ROUGE-L %s → %s with the delta (%s directly unlearned); retain ROUGE-L %s → %s (%s directly unlearned)." % (
        m, fmt(fa), fmt(fc), fmt(fd), fmt(ra), fmt(rc), fmt(rd)))
L.append("")

seeds = os.environ.get("NOISE_SEEDS", "").split()
if seeds:
    L.append("Seed noise: the CMC delta retrained with other seeds (`--seed` sets the data order; D0 is the same start), applied to A and B:\n")
    L.append("| user model | seed | forget ROUGE-L | forget answer prob | retain ROUGE-L | retain answer prob |")
    L.append("|---|---|---|---|---|---|")
    for m in "AB":
        for sd, d in [(os.environ.get("SEED", "1"), cm[m])] + [(x, load("eval_cmc_s%s_%s" % (x, m))) for x in seeds]:
            L.append("| %s | %s | %s | %s | %s | %s |" % (m, sd, fmt(g(d, "forget", R, 1)), fmt(g(d, "forget", P, 1)), fmt(g(d, "retain", R, 1)), fmt(g(d, "retain", P, 1))))
    L.append("")

fm = {m: load("eval_format_" + m) for m in "TAB"}
if any(fm.values()):
    L.append("## 2. Format transfer: open-instruct answers from a delta trained with T\n")
    L.append("The delta was trained with T (sft, `--prompt-template open-instruct`) on the 160 retain QA pairs only; "
             "no base model ever saw the `<|user|>\\n…\\n<|assistant|>\\n` format. Measured on the 80 forget-author questions "
             "(which the delta never saw, but every base model memorised in the `Question: …\\nAnswer: ` format) and on the first 80 retain questions "
             "(the delta's own training set), all asked in the open-instruct format (`--template open-instruct --delta-template open-instruct`). The last column is the same model asked in its own training format, as a ceiling.\n")
    L.append("| user model | questions | ROUGE-L alone | ROUGE-L + delta | answer prob alone | answer prob + delta | ROUGE-L in its own qa format |")
    L.append("|---|---|---|---|---|---|---|")
    for m in "TAB":
        d = fm[m]
        for f, what in (("forget", "forget authors (held out from the delta)"), ("retain", "retain authors (the delta's training set)")):
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (m, what, fmt(g(d, f, R, 0)), fmt(g(d, f, R, 1)),
                     fmt(g(d, f, P, 0)), fmt(g(d, f, P, 1)), fmt(g(cm[m], f, R, 0))))
    L.append("\nTraining: %s s, %s parameters, final loss %s.\n" % (secs("delta_format"), params("delta_format"), final_loss("delta_format")))

sw = {"0": (cm.get(sweep), 0), "1": (cm.get(sweep), 1)}
for a in ("0.5", "2"):
    d = load("eval_sweep_%s_%s" % (sweep, a))
    if d:
        sw[a] = (d, 1)
if len(sw) > 2:
    L.append("## 3. Alpha sweep: the unlearning delta on %s\n" % sweep)
    L.append("| α | forget ROUGE-L ↓ | forget answer prob ↓ | forget truth ratio | retain ROUGE-L ↑ | retain answer prob ↑ |")
    L.append("|---|---|---|---|---|---|")
    for a in ("0", "0.5", "1", "2"):
        if a in sw:
            d, i = sw[a]
            L.append("| %s | %s | %s | %s | %s | %s |" % (a, fmt(g(d, "forget", R, i)), fmt(g(d, "forget", P, i)), fmt(g(d, "forget", TF, i)),
                     fmt(g(d, "retain", R, i)), fmt(g(d, "retain", P, i))))
    L.append("\nα = 0 is the model alone, α = 1 the row of table 1.\n")

L.append("## Exact commands\n")
L.append("The world: see tinyworld/MANIFEST.md (`make tinyworld`). These experiments (`make reproduce`), in order:\n")
L.append("```sh")
L.append(open(os.path.join(run, "commands.sh")).read().strip())
L.append("```\n")
if os.path.exists(os.path.join(w, "READING.md")):
    L.append(open(os.path.join(w, "READING.md")).read().strip() + "\n")
open(md, "w").write("\n".join(L) + "\n")
