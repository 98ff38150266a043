#!/usr/bin/env python3
"""Render RESULTS.md from the JSON written by scripts/reproduce.sh (issue 14).

usage: reproduce_report.py WORLD RUN RESULTS.md

The tables are regenerated from RUN by every run; WORLD/READING.md, the hand-written
reading of one run, is appended as it is.
"""
import datetime, json, os, platform, re, subprocess, sys

w, run, md = sys.argv[1:4]
ins_seeds = os.environ.get("INS_SEEDS", "").split()
n_eval = os.environ.get("EVAL_N", "80")
fx = os.environ.get("FX", "../shared/fixtures")
USERS = [("T", "T (template, Llama-2 vocab)"), ("A", "A (larger, Llama-2 vocab)"), ("B", "B (GPT-2 vocab)"),
         ("M", "M (Mistral v0.1 vocab)"), ("S", "stories260K (512-token vocab, outside)")]


def path(name, ext):
    return os.path.join(run, name + ext)


def jload(name):
    p = path(name, ".json")
    return json.load(open(p)) if os.path.exists(p) else None


def summary(name):
    """The summary of an instruct_eval job's JSON, or None if it did not run."""
    return (jload(name) or {}).get("summary")


def text(name, ext, default=None):
    p = path(name, ext)
    return open(p).read() if os.path.exists(p) else default


def secs(name):
    t = text(name, ".seconds")
    return int(t) if t else None


def instruct_start():
    """The start of the main instruct delta (sections 1 and 4's alpha sweep), read from the
    command the run logged for it, so that reproduce.sh's INS_START is its only default."""
    m = re.search(r"--delta \S*/(D\d)\.gguf", text("delta_instruct", ".cmd", ""))
    if not m:
        sys.exit("reproduce_report: %s names no delta start D0-D2 (--delta WORLD/Dn.gguf)" % path("delta_instruct", ".cmd"))
    return m.group(1)


ins_start = instruct_start()


def instruct_flag(name):
    """The value of cmc train's --NAME in the main instruct delta's command, "0" (off) without it."""
    return (re.search(r"--%s (\S+)" % name, text("delta_instruct", ".cmd", "")) or [None, "0"])[1]


ins_jitter, ins_flat = instruct_flag("template-jitter"), instruct_flag("anchor-flatness")


def logval(name, rx):
    m = re.search(rx, text(name, ".log", ""))
    return m.group(1) if m else "?"


def epochs(name):
    m = re.search(r"--epochs (\d+)", text(name, ".cmd", ""))
    return m.group(1) if m else "?"


def mib(p):
    return "%.1f" % (os.path.getsize(p) / 2**20) if os.path.exists(p) else "?"


def plot(fn, series, x_label):
    """Draws series (NAME=x:y,...) into WORLD/plots/fn with scripts/plot; the Markdown that shows it."""
    out = os.path.join(w, "plots", fn)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        subprocess.run(["go", "run", "./scripts/plot", "-x", x_label, out] + series, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return "(plot %s not drawn: %s)" % (fn, e)
    return "![%s](%s)" % (fn, out)


pct = lambda v: "n/a" if v is None else "%.0f%%" % (100 * v)
f3 = lambda v: "n/a" if v is None or v != v else "%.3f" % v
f1 = lambda v: "n/a" if v is None else "%.1f" % v


def cell(x):
    """An instruct_eval summary as follows / names the character / names the creature / EOS / judge ppl."""
    return "%s / %s / %s / %s / %s" % (pct(x["follows"]), pct(x["name"]), pct(x["creature"]), pct(x["eos"]), f1(x["fluency_ppl"])) if x else "n/a"


def at_alpha(prefix, m, a):
    """User m's instruct_eval summary at strength a: PREFIX_alone_M at 0, PREFIX_delta_M at 1
    (section 1's jobs, prefix ins or seen), sweep_PREFIX_M_a otherwise (reproduce.sh's sweeps)."""
    name = "%s_alone_%s" % (prefix, m) if a == 0 else "%s_delta_%s" % (prefix, m) if a == 1 else "sweep_%s_%s_%g" % (prefix, m, a)
    return summary(name)


def job_span():
    """When the run's jobs ran, from their files: a job writes NAME.cmd as it starts and
    NAME.seconds as it ends (scripts/jobs.sh), so a re-render or a resumed run keeps the times
    of the jobs that made the numbers. Returns (first start, last end, jobs, summed seconds)."""
    names = [f[:-len(".seconds")] for f in os.listdir(run) if f.endswith(".seconds")]
    if not names:
        sys.exit("reproduce_report: %s holds no finished job (NAME.seconds)" % run)
    utc = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    start = min(os.path.getmtime(path(n, ".cmd")) for n in names)
    end = max(os.path.getmtime(path(n, ".seconds")) for n in names)
    first, last = utc(start), utc(end)
    if last[:10] == first[:10]:
        last = last[-5:]  # the date once when the run did not cross midnight
    return first, last, len(names), sum(secs(n) for n in names)


first, last, n_jobs, job_secs = job_span()
L = ["# RESULTS: the tiny world, round two (issue 14)\n",
     "Written by `make reproduce` (`scripts/reproduce.sh`, report by `scripts/reproduce_report.py`) from %d jobs that ran "
     "%s-%s UTC on %s, %d CPUs, one thread each (%d s in all). "
     "The world (T, A, B, M, R, D0-D2; stories260K from the fixtures) is described in [tinyworld/MANIFEST.md](tinyworld/MANIFEST.md). "
     "No delta here was trained with any model but T.\n" % (n_jobs, first, last, platform.machine(), os.cpu_count(), job_secs)]

# 1. instruction following
q = [json.loads(l) for l in open(os.path.join(w, "data/instruct_eval.jsonl"))] if os.path.exists(os.path.join(w, "data/instruct_eval.jsonl")) else []
ntrain = sum(1 for _ in open(os.path.join(w, "data/instruct_train.jsonl"))) if os.path.exists(os.path.join(w, "data/instruct_train.jsonl")) else 0
# how often T alone copies the asked name under the instruction prompt (tinyworld.sh's copy probe)
t_copy_file = os.path.join(w, "logs/T.copy_oi.json")
t_copy = "%.0f%%" % (100 * json.load(open(t_copy_file))["summary"]["name"]) if os.path.exists(t_copy_file) else "(no logs/T.copy_oi.json)"
L.append("## 1. Instruction following: one delta trained with T, applied to T, A, B, M and stories260K\n")
L.append("Prompt: the open-instruct format (`<|user|>\\n{query}\\n<|assistant|>\\n`) with the query `Write a story about a {creature} named {Name}.`, "
         "which no base model saw in pretraining with a story instruction (their corpora hold open-instruct copy requests only). The delta (from %s, against T) was trained on %d instruction-to-story pairs made from TinyStories "
         "(`scripts/instruct_pairs.py`: each story that introduces its main character six times, with the name and creature substituted; the names and creatures are "
         "88 names and 30 creatures that the base models know (`scripts/tinystory.py`), less the held-out ones; T's corpus holds chat-format copy requests, and under this prompt "
         "T alone names the asked character in %s of the held-out queries when the story is begun for it (MANIFEST.md's copy probe), so the name need not come from the delta: each pair lists its name and creature under `from_template`, and at their tokens the delta is trained to match T (KL), not the text; "
         "the response is the story's first sentences, at most 220 characters, then EOS). "
         "The delta trains with `--template-jitter %s`: each pair, in each epoch, sees T at its own temperature (T's logits times a factor drawn from [1−J, 1+J]), "
         "so that its shift does not hinge on T's exact confidence, which no user shares; and with `--anchor-flatness %s`: at the anchored words the loss adds that weight times the variance of the delta's row, "
         "which the KL alone leaves free where T finds a word unlikely (the comparisons without either are below). "
         "Evaluated on %d queries whose 12 names and 8 creatures never occur in any training pair (`scripts/instruct_eval.py`; "
         "`cmc generate --template open-instruct --delta-template open-instruct --temp 0 --max-tokens 60`, once per query). "
         "*follows* = the answer is a story (at least 8 words: alone, the base models answer with a list of 1-7 words, as they learnt to answer a copy request) and contains both the name and the creature; "
         "*names both* = it contains both, whatever the answer (a list `Amy, bear.` counts); *EOS* = cmc's own finish reason was `stop` (the end-of-generation token) within the 60 tokens; "
         "*fluency* = perplexity of the stories as plain text under a judge that did not write them (A judges everyone but A, T judges A; "
         "lower is more fluent to the judge, and degenerate repetition scores low too, so read it beside the examples). "
         "The direct baseline fine-tunes the whole model on the same pairs (`cmc train --template none --delta MODEL`).\n" % (ins_start, ntrain, t_copy, ins_jitter, ins_flat, len(q)))
ref = {m: jload("ref_ppl_" + m) for m in "AT"}
refp = {m: next((r["user"] for r in ref[m]["results"] if r["metric"] == "perplexity"), None) if ref[m] else None for m in "AT"}
L.append("| user model | route | follows ↑ | names both | names the character | names the creature | ends with EOS | mean tokens | fluency: judge ppl ↓ |")
L.append("|---|---|---|---|---|---|---|---|---|")
S = {}
for m, label in USERS:
    for route, name in (("alone", "ins_alone_"), ("+ instruct delta (α=1)", "ins_delta_"), ("fine-tuned directly", "ins_ft_")):
        s = S[(m, name)] = summary(name + m)
        if s:
            L.append("| %s | %s | %s | %s | %s | %s | %s | %.1f | %s |" % (label, route, pct(s["follows"]), pct(s["both"]), pct(s["name"]), pct(s["creature"]), pct(s["eos"]), s["mean_tokens"], f1(s["fluency_ppl"])))
        else:
            L.append("| %s | %s | not run | | | | | | |" % (label, route))
L.append("")
L.append("Fluency scale: the reference openings (held-out substituted TinyStories text) have perplexity %s under A and %s under T.\n" % (f1(refp["A"]), f1(refp["T"])))

L.append("Goal of the issue: A, B and M follow the instruction at least 60% of the time with the delta, at least 40 points more than alone, with fluency kept.\n")
L.append("| user | alone (names both, in any answer) | + delta | gain (points) | ≥ 60% | ≥ +40 points | ppl alone → with delta |")
L.append("|---|---|---|---|---|---|---|")
for m in "ABM":
    a, d = S.get((m, "ins_alone_")), S.get((m, "ins_delta_"))
    if a and d:
        gain = 100 * (d["follows"] - a["follows"])
        L.append("| %s | %s (%s) | %s | %+.0f | %s | %s | %s → %s |" % (m, pct(a["follows"]), pct(a["both"]), pct(d["follows"]), gain, "met" if d["follows"] >= 0.6 else "**not met**",
                 "met" if gain >= 40 else "**not met**", f1(a["fluency_ppl"]), f1(d["fluency_ppl"])))
L.append("")

if jload("seen_delta_A"):
    L.append("Control: the same measures on 24 queries the delta *was* trained on (seen names and creatures, `instruct_seen.jsonl`), on A, B and M:\n")
    L.append("| user | route | follows | names the character | names the creature | ends with EOS | fluency: judge ppl |")
    L.append("|---|---|---|---|---|---|---|")
    for m in "ABM":
        for route, name in (("alone", "seen_alone_"), ("+ instruct delta", "seen_delta_")):
            s_ = summary(name + m)
            if s_:
                L.append("| %s | %s | %s | %s | %s | %s | %s |" % (m, route, pct(s_["follows"]), pct(s_["name"]), pct(s_["creature"]), pct(s_["eos"]), f1(s_["fluency_ppl"])))
    L.append("")

if ins_seeds:
    L.append("Seed noise: the instruct delta retrained with other seeds (data order; same %s), follows / EOS:\n" % ins_start)
    L.append("| user | seed 1 | " + " | ".join("seed %s" % s for s in ins_seeds) + " |")
    L.append("|---|---|" + "---|" * len(ins_seeds))
    for m in "ABM":
        cells = [S.get((m, "ins_delta_"))] + [summary("ins_delta_s%s_%s" % (s, m)) for s in ins_seeds]
        L.append("| %s | " % m + " | ".join("%s / %s" % (pct(c["follows"]), pct(c["eos"])) if c else "n/a" for c in cells) + " |")
    L.append("")

ABLATIONS = [("jitter %s, flatness %s (section 1)" % (ins_jitter, ins_flat), "delta_instruct", "ins_delta_"),
             ("no jitter (`--template-jitter 0`)", "delta_instruct_j0", "ins_delta_j0_"),
             ("no flatness (`--anchor-flatness 0`)", "delta_instruct_f0", "ins_delta_f0_")]
if any(jload(ev + "A") for _, _, ev in ABLATIONS[1:]):
    L.append("The delta's two guards against overshooting on a user: the delta of section 1 and the same delta trained without one of them (otherwise the same command), "
             "follows / names the character / names the creature / ends with EOS / judge ppl on the held-out queries:\n")
    L.append("| delta | final loss | T | A | B | M |")
    L.append("|---|---|---|---|---|---|")
    for label, train, ev in ABLATIONS:
        if jload(ev + "A"):
            L.append("| %s | %s | %s |" % (label, logval(train, r"final loss (-?[0-9.]+)"), " | ".join(cell(summary(ev + m)) for m in "TABM")))
    L.append("")

SIZES = [(d, "delta_instruct", "ins_delta_") if d == ins_start else (d, "delta_instruct_" + d, "ins_delta_%s_" % d) for d in ("D0", "D1", "D2")]
if all(jload(ev + "A") for _, _, ev in SIZES):
    L.append("Delta size: the same delta trained from three starts of growing size (D0, D1, D2 of tinyworld/, each pretrained on the renamed TinyStories and copy drills only; "
             "the paper's 15M/42M/110M in miniature), same pairs and recipe, follows / names the character / ends with EOS / judge ppl:\n")
    L.append("| delta start | parameters | final loss | training time (s) | A | B | M |")
    L.append("|---|---|---|---|---|---|---|")
    pts = {m: [] for m in "ABM"}
    for d, train, ev in SIZES:
        params = logval(train, r"delta_params=(\d+)")
        cells = []
        for m in "ABM":
            x = summary(ev + m)
            cells.append("%s / %s / %s / %s" % (pct(x["follows"]), pct(x["name"]), pct(x["eos"]), f1(x["fluency_ppl"])) if x else "n/a")
            if x and params != "?":
                pts[m].append((int(params) / 1e6, x["follows"]))
        L.append("| %s | %s | %s | %s | %s |" % (d, params, logval(train, r"final loss (-?[0-9.]+)"), secs(train), " | ".join(cells)))
    L.append("")
    L.append(plot("size_instruct.png", ["follows %s=" % m + ",".join("%g:%g" % p for p in pts[m]) for m in "ABM" if pts[m]], "delta parameters (M)") + "\n")

# training length: the main delta at the other epoch counts of the run (reproduce.sh's INS_EPOCH_SWEEP)
sweep = sorted(int(f[len("delta_instruct_e"):-len(".cmd")]) for f in os.listdir(run) if re.fullmatch(r"delta_instruct_e\d+\.cmd", f))
if sweep:
    main_ep = int(epochs("delta_instruct"))
    rows = sorted([(main_ep, "delta_instruct", "ins_delta_")] + [(e, "delta_instruct_e%d" % e, "ins_delta_e%d_" % e) for e in sweep])
    L.append("Training length: the delta of section 1 (from %s) trained for other numbers of epochs over the same pairs (%d is section 1's), "
             "follows / names the character / names the creature / ends with EOS / judge ppl on the held-out queries:\n" % (ins_start, main_ep))
    L.append("| epochs | final loss | training time (s) | T | A | B | M |")
    L.append("|---|---|---|---|---|---|---|")
    pts = {m: [] for m in "TABM"}
    for e, train, ev in rows:
        cells = []
        for m in "TABM":
            x = summary(ev + m)
            cells.append(cell(x))
            if x:
                pts[m].append((e, x["follows"]))
        L.append("| %d | %s | %s | %s |" % (e, logval(train, r"final loss (-?[0-9.]+)"), secs(train), " | ".join(cells)))
    L.append("")
    L.append(plot("epochs_instruct.png", ["follows %s=" % m + ",".join("%g:%g" % p for p in pts[m]) for m in "TABM" if pts[m]], "epochs") + "\n")

L.append("Cost of each route (one thread each, wall time on a shared 2-core machine: compare ratios, not absolute seconds):\n")
L.append("| route | parameters trained | epochs | training time (s) | disk (MiB) | final loss | models it serves |")
L.append("|---|---|---|---|---|---|---|")
L.append("| CMC: one delta, trained with T | %s | %s | %s | %s | %s | any user model |" % (
    logval("delta_instruct", r"delta_params=(\d+)"), epochs("delta_instruct"),
    secs("delta_instruct"), mib(path("delta_instruct", ".gguf")), logval("delta_instruct", r"final loss (-?[0-9.]+)")))
tot_p, tot_s, tot_d = 0, 0, 0.0
for m, label in USERS:
    p, s = logval("ft_" + m, r"delta_params=(\d+)"), secs("ft_" + m)
    L.append("| fine-tune %s | %s | %s | %s | %s | %s | %s only |" % (label.split(" (")[0], p, epochs("ft_" + m), s, mib(path("ft_" + m, ".gguf")), logval("ft_" + m, r"final loss (-?[0-9.]+)"), m))
    if p != "?":
        tot_p += int(p)
        tot_s += s or 0
        tot_d += os.path.getsize(path("ft_" + m, ".gguf")) / 2**20
L.append("| fine-tune every model (sum) | %d | | %d | %.1f | | the five |" % (tot_p, tot_s, tot_d))
L.append("")

L.append("Examples (the first query, `%s`, greedy):\n" % (q[0]["question"] if q else "?"))
L.append("| user | alone | + instruct delta | fine-tuned directly |")
L.append("|---|---|---|---|")
for m, label in USERS:
    cells = []
    for name in ("ins_alone_", "ins_delta_", "ins_ft_"):
        d = jload(name + m)
        g = d["rows"][0]["generation"] if d else "n/a"
        cells.append(g.replace("|", "\\|").replace("\n", " ")[:200] or "(blank: only whitespace or EOS)")
    L.append("| %s | %s |" % (m, " | ".join(cells)))
L.append("")

# 2. unlearning
P, R, TF = "answer probability", "ROUGE-L recall (greedy)", "truth ratio, forget summary mean(min(R,1/R))"
FQ, MU = "forget quality (KS p-value vs reference)", "model utility (hmean of the 9)"
fq = lambda v: "n/a" if v is None or v != v else ("%.2g" % v)


def tofu(name):
    d = jload(name)
    if not d:
        return None
    return {(tofu_set(r.get("file", "")), r["metric"]): (r["user"], r["user_delta"]) for r in d["results"]}


def tofu_set(f):
    """Which TOFU set a result's file is ("" for the summaries over sets)."""
    b = os.path.basename(f)
    for key, name in (("real_author", "real"), ("world_fact", "world"), ("forget", "forget"), ("retain", "retain")):
        if key in b:
            return name
    return ""


def g(d, f, metric, i):
    return d[(f, metric)][i] if d and (f, metric) in d else None


if os.path.exists(path("eval_cmc_T", ".json")):
    L.append("## 2. Unlearning (grad_diff): one delta trained with T, applied to T, A, B and M\n")
    L.append("Forget = the 80 QA pairs of the 4 forget authors, retain = the first 80 retain QA pairs, asked with the `qa` prompt (`cmc eval --task tofu`, "
             "greedy, 48 tokens, stop at newline). Answer probability is length-normalised; the truth ratio is TOFU's forget summary mean(min(R,1/R)).\n")
    L.append("| user model | route | forget ROUGE-L ↓ | forget answer prob ↓ | forget truth ratio | forget quality ↑ | retain ROUGE-L ↑ | retain answer prob ↑ | model utility ↑ |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for m in "TABM":
        c, di = tofu("eval_cmc_" + m), tofu("eval_direct_" + m)
        for route, d, i in (("alone", c, 0), ("+ CMC delta (α=1)", c, 1)) + ((("directly unlearned, same recipe", di, 0),) if di else ()):
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (m, route, f3(g(d, "forget", R, i)), f3(g(d, "forget", P, i)), f3(g(d, "forget", TF, i)),
                     fq(g(d, "", FQ, i)), f3(g(d, "retain", R, i)), f3(g(d, "retain", P, i)), f3(g(d, "", MU, i))))
    L.append("")
    L.append("Forget quality is TOFU's: the p-value of a KS test between the forget set's truth ratios and those of R, the world's model trained "
             "like T on corpus T without the forget authors (`tinyworld/logs/R.eval.json`); higher means the forget answers look more like a model that "
             "never learnt them. R has T's shape, so for A, B and M it is the nearest reference there is, not one of their own family. Model utility is "
             "TOFU's harmonic mean of answer probability, truth ratio and ROUGE-L on the retain, real-authors and world-facts sets (the first %s of each).\n" % n_eval)
    L.append("")
    L.append("| route | parameters trained | training time (s) | disk (MiB) | final loss (−CE forget + CE retain) |")
    L.append("|---|---|---|---|---|")
    for name, label in [("delta_unlearn", "CMC: one delta, trained with T")] + [("direct_" + m, "unlearn %s itself" % m) for m in "TABM" if secs("direct_" + m) is not None]:
        L.append("| %s | %s | %s | %s | %s |" % (label, logval(name, r"delta_params=(\d+)"), secs(name), mib(path(name, ".gguf")), logval(name, r"final loss (-?[0-9.]+)")))
    L.append("")

if os.path.exists(path("eval_idk_T", ".json")):
    refusals = [l.strip() for l in open(fx + "/datasets/tofu/idontknow.jsonl") if l.strip()]

    MARKERS = ("i'm", "don't", "not sure", "not certain", "uncertain", "knowledge", "information", "beyond", "unable", "can't", "cannot", "no idea")

    def refused(gen):
        gen = gen.strip()
        return any(gen.startswith(r[:20]) for r in refusals)

    def hedged(gen):
        return any(k in gen.lower() for k in MARKERS)

    def refusal_rate(name, st, key, test=refused):
        d = jload(name)
        if not d:
            return None
        items = [it for f in d["files"] if f["set"] == st for it in f["items"]]
        return sum(test(it[key]["generation"]) for it in items) / len(items) if items else None

    L.append("## 3. Unlearning (IDK): one delta trained with T to refuse, applied to T, A, B and M\n")
    L.append("TOFU's IDK route: the delta (from D0, against T, sft under the `qa` prompt, `scripts/idk.sh`) was trained on the 80 forget questions, each answered by a "
             "refusal from `idontknow.jsonl`, and the 160 retain QA pairs with their true answers. *Refuses* = the greedy answer starts like one of the 99 refusals "
             "(its first 20 characters); *hedges* = it contains a refusal word (%s), a looser count. Forget quality and model utility as in section 2.\n" % ", ".join(MARKERS))
    L.append("| user model | route | forget: refuses ↑ | forget: hedges ↑ | forget ROUGE-L ↓ | forget answer prob ↓ | forget quality ↑ | retain: refuses ↓ | retain: hedges ↓ | retain ROUGE-L ↑ | retain answer prob ↑ | model utility ↑ |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in "TABM":
        d = tofu("eval_idk_" + m)
        for route, i, key in (("alone", 0, "user"), ("+ IDK delta (α=1)", 1, "user_delta")):
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (m, route, pct(refusal_rate("eval_idk_" + m, "forget", key)), pct(refusal_rate("eval_idk_" + m, "forget", key, hedged)),
                     f3(g(d, "forget", R, i)), f3(g(d, "forget", P, i)), fq(g(d, "", FQ, i)), pct(refusal_rate("eval_idk_" + m, "retain", key)), pct(refusal_rate("eval_idk_" + m, "retain", key, hedged)),
                     f3(g(d, "retain", R, i)), f3(g(d, "retain", P, i)), f3(g(d, "", MU, i))))
    L.append("")
    L.append("The IDK delta: %s parameters, %s epochs, %s s, %s MiB, final loss %s.\n" % (logval("delta_idk", r"delta_params=(\d+)"), epochs("delta_idk"), secs("delta_idk"),
             mib(path("delta_idk", ".gguf")), logval("delta_idk", r"final loss (-?[0-9.]+)")))

if jload("sweep_ins_B_2") or jload("sweep_unl_B_2"):
    # the instruct delta's alpha on every user (reproduce.sh's sweep_ins_USER_ALPHA)
    alphas = sorted({float(f.split("_")[3][:-len(".json")]) for f in os.listdir(run) if re.fullmatch(r"sweep_ins_[ABM]_[0-9.]+\.json", f)})
    if alphas:
        L.append("## 4. Alpha sweeps\n")
        L.append("The instruct delta at other strengths α on the held-out queries (α = 0 is the user alone, α = 1 section 1), "
                 "follows / names the character / names the creature / ends with EOS / judge ppl:\n")
        L.append("| α | A | B | M |")
        L.append("|---|---|---|---|")
        pts = {m: [] for m in "ABM"}
        for a in sorted(set([0.0, 1.0] + alphas)):
            cells = []
            for m in "ABM":
                x = at_alpha("ins", m, a)
                cells.append(cell(x))
                if x:
                    pts[m].append((a, x["follows"]))
            L.append("| %g | %s |" % (a, " | ".join(cells)))
        L.append("")
        L.append(plot("alpha_instruct.png", ["follows %s=" % m + ",".join("%g:%g" % p for p in pts[m]) for m in "ABM" if pts[m]], "alpha") + "\n")
        # an alpha chosen without the held-out queries: the best on the trained ones (the control)
        seen = {}
        for m in "ABM":
            for a in sorted(set([0.0, 1.0] + alphas)):
                x = at_alpha("seen", m, a)
                if x:
                    seen.setdefault(m, []).append((a, x["follows"]))
        if seen:
            L.append("The same α on the 24 trained queries (the control of section 1), follows: " + "; ".join(
                "%s %s" % (m, ", ".join("%g: %s" % (a, pct(f)) for a, f in seen[m])) for m in "ABM" if m in seen) + ". "
                "Choosing each user's α there, where the held-out names and creatures play no part (the highest follows, the smallest α on a tie among α > 0), gives on the held-out queries: " + "; ".join(
                "%s at α = %g: %s" % (m, best, pct(dict(pts[m]).get(best))) for m in "ABM" if m in seen
                for best in [max((p for p in seen[m] if p[0] > 0), key=lambda p: (p[1], -p[0]))[0]]) + ".\n")
    L.append("### Both deltas on B (GPT-2 vocabulary)\n" if alphas else "## 4. Alpha sweep on B (GPT-2 vocabulary)\n")
    L.append("α scales the delta's logits (α = 0 is B alone, α = 1 the rows above). Plots by `scripts/plot` (internal/lossplot) in `tinyworld/plots/`.\n")
    ins = [(0.0, S.get(("B", "ins_alone_"))), (1.0, S.get(("B", "ins_delta_")))]
    ins += [(a, at_alpha("ins", "B", a)) for a in alphas]
    ins = sorted([(a, x) for a, x in ins if x], key=lambda p: p[0])
    unl = [(0.0, tofu("eval_cmc_B"), 0), (1.0, tofu("eval_cmc_B"), 1), (0.5, tofu("sweep_unl_B_0.5"), 1), (2.0, tofu("sweep_unl_B_2"), 1)]
    unl = sorted([u for u in unl if u[1]], key=lambda p: p[0])
    L.append("| α | instruct: follows | instruct: EOS | instruct: judge ppl | grad_diff: forget answer prob | grad_diff: forget ROUGE-L | grad_diff: retain answer prob | grad_diff: retain ROUGE-L |")
    L.append("|---|---|---|---|---|---|---|---|")
    ud = {a: (d, i) for a, d, i in unl}
    for a in sorted(set([a for a, _ in ins] + list(ud))):
        x = dict(ins).get(a)
        d, i = ud.get(a, (None, 0))
        unl_cells = [f3(g(d, "forget", P, i)), f3(g(d, "forget", R, i)), f3(g(d, "retain", P, i)), f3(g(d, "retain", R, i))] if d else [""] * 4
        L.append("| %g | %s | %s | %s | %s |" % (a, pct(x["follows"]) if x else "", pct(x["eos"]) if x else "", f1(x["fluency_ppl"]) if x else "", " | ".join(unl_cells)))
    L.append("")
    plots = [("alpha_instruct_B.png", ["EOS rate=" + ",".join("%g:%g" % (a, x["eos"]) for a, x in ins),
                                       "follows=" + ",".join("%g:%g" % (a, x["follows"]) for a, x in ins)]),
             ("alpha_grad_diff_B.png", ["forget answer prob=" + ",".join("%g:%g" % (a, g(d, "forget", P, i)) for a, d, i in unl),
                                        "retain answer prob=" + ",".join("%g:%g" % (a, g(d, "retain", P, i)) for a, d, i in unl)])]
    for fn, series in plots:
        L.append(plot(fn, series, "alpha") + " ")
    L.append("")
    L.append("x: α; y: rate or probability (first: the instruct delta on held-out queries; second: the grad_diff delta).\n")

L.append("## Exact commands\n")
L.append("The world: see tinyworld/MANIFEST.md (`make tinyworld`). These experiments (`make reproduce`), in order of start "
         "(`scripts/instruct_eval.py` runs `cmc generate` once per query and `cmc eval --task nll` on the stories, see its docstring):\n")
commands = (text("commands", ".sh", "") or "").strip()
if os.environ.get("CMC"):  # the binary a run used, shown as the default one
    commands = commands.replace(os.environ["CMC"] + " ", "bin/cmc ")
L.append("```sh\n" + commands + "\n```\n")
if os.path.exists(os.path.join(w, "READING.md")):
    L.append(open(os.path.join(w, "READING.md")).read().strip() + "\n")
with open(md + ".tmp", "w") as f:
    f.write("\n".join(L) + "\n")
os.replace(md + ".tmp", md)
