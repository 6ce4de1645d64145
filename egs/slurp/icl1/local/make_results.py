#!/usr/bin/env python3
"""Stage 6: EXP/RESULTS.md and EXP/RESULTS.png from the outputs of stages 1-5.

Reads, under EXP (exp/quick, exp/full, exp/snips_*): <model>/decode_<set>_<voice>/oracle_wer (WERs),
<model>/calibration.json and decode_<set>_<voice>_cal/calibration.json (acoustic scale,
NCE, ECE), <model>/icl_<selection>/<set>_<voice>/<input>/accuracy.json (intent accuracy;
``text`` lives under the first voice of the first model: the same sentences for all).
Prints the gap-closed line of every set.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from paired import bootstrap_gap, correct, mcnemar, won_lost

from speechlm.core.machine import machine_summary

INPUTS = ["text", "1best", "nbest", "nbest_marg", "wcn", "wcn_cal", "wcn_marg", "oracle"]
GAP_KINDS = ("wcn", "wcn_cal", "wcn_marg")  # a gap-closed column each
GAP_NAMES = {"wcn": "WCN", "wcn_cal": "WCN cal", "wcn_marg": "WCN marg"}
DIFF_KINDS = ("nbest", "nbest_marg", "wcn", "wcn_cal", "wcn_marg")  # minus 1-best, averaged
CORPUS = {"slurp": "SLURP", "snips": "SNIPS"}
SOURCE = {"slurp": "SLURP annotation", "snips": "SNIPS entity chunks"}  # of the QA questions
MIN_GAP = 3.0  # points: below this the oracle - 1-best gap is a few utterances, the ratio noise


QA_INPUTS = ("text", "1best", "nbest", "nbest_marg", "wcn", "wcn_marg", "oracle")


def write_report(exp: Path, stem: str, lines: list[str], fig, caption: str) -> None:
    """Save ``fig`` as EXP/STEM.png and ``lines`` (markdown, the plot appended) as EXP/STEM.md
    (the analyses' reports: shot counts, noise levels)."""
    png = exp / f"{stem}.png"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    (exp / f"{stem}.md").write_text("\n".join([*lines, f"![{caption}]({png.name})", ""]))
    print(f"wrote {exp / f'{stem}.md'}", file=sys.stderr)


def read_wer(path: Path) -> dict[str, float]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            # %WER 10.94 [ 79 / 722, 100 utts ] 1-best
            if line.startswith("%WER") and "]" in line:
                out[line.split("]", 1)[1].strip()] = float(line.split()[1])
    return out


def analysis_parser(doc: str, *lists: str) -> argparse.ArgumentParser:
    """The options every analysis script shares: --exp, one required list option per name
    in ``lists`` (``models`` -> ``--models A B``), --selection and --cmdline; the script adds
    its own."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--exp", required=True)
    for name in lists:
        p.add_argument(f"--{name}", nargs="+", required=True)
    p.add_argument("--selection", default="embedding")
    p.add_argument("--cmdline", default="")
    return p


def swept_runs(exp: Path, subdir: str, selection: str, models: list[str]) -> dict[str, Path]:
    """First pass -> its ``<model>/<subdir>/<selection>`` dir, for every first pass of EXP that
    has one, ``models``' order first: an analysis run for one first pass must not drop
    another's earlier run from the report."""
    found = {d.parents[1].name: d for d in sorted(exp.glob(f"*/{subdir}/{selection}"))}
    return {m: found[m] for m in dict.fromkeys([*models, *sorted(found)]) if m in found}


def run_command(run_dir: Path, model: str, what: str) -> list[str]:
    """The markdown line quoting ``run_dir/command.txt`` (written by run.sh), if there is one."""
    command = run_dir / "command.txt"
    if not command.is_file():
        return []
    return [f"{model}'s {what}: `{command.read_text().strip()}`", ""]


def read_acc(path: Path) -> float | None:
    """Intent accuracy (%) of an accuracy.json, None when the run has none."""
    return 100.0 * json.loads(path.read_text())["accuracy"] if path.is_file() else None


def gap_pct(acc: float | None, one: float | None, orc: float | None) -> str:
    """(acc - 1-best) / (oracle - 1-best) as a percentage, '-' where the oracle is under
    MIN_GAP points above the 1-best or a value is missing."""
    if None in (acc, one, orc) or orc - one < MIN_GAP:
        return "-"
    return f"{100.0 * (acc - one) / (orc - one):.0f}%"


def closing_inputs(inputs: list[str]) -> list[str]:
    """The inputs whose gap closed is reported: all but the text, the 1-best and the oracle."""
    return [i for i in inputs if i not in ("text", "1best", "oracle")]


def gap_table_head(lead: list[str], inputs: list[str]) -> list[str]:
    """Header and rule of a markdown table: the ``lead`` columns, one per input, then one gap
    closed per ``closing_inputs`` (the rows' cells: ``gap_cells``)."""
    cols = [*lead, *inputs, *(f"gap closed ({i})" for i in closing_inputs(inputs))]
    return ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]


def gap_cells(acc: dict[str, float | None], inputs: list[str]) -> list[str]:
    """``gap_pct`` of every ``closing_inputs`` input of one row of accuracies."""
    return [gap_pct(acc[i], acc.get("1best"), acc.get("oracle")) for i in closing_inputs(inputs)]


def mean_of(rows: list[dict], inputs: list[str]) -> dict[str, float | None]:
    """Each input's mean over accuracy rows (None where a row lacks it)."""
    return {i: (sum(r[i] for r in rows) / len(rows)
                if all(r[i] is not None for r in rows) else None) for i in inputs}


def mean_rows(lead: list[str], groups: dict, inputs: list[str]) -> list[str]:
    """One table row per non-empty group of accuracy rows: the group's name, how many rows,
    each input's ``mean_of`` (blank where a row lacks it) and the gap closed of the means."""
    out = []
    for name, rows in groups.items():
        if not rows:
            continue
        mean = mean_of(rows, inputs)
        cells = ["" if mean[i] is None else f"{mean[i]:.1f}" for i in inputs]
        out.append(f"| {name} | {len(rows)} | "
                   + " | ".join([*cells, *gap_cells(mean, inputs)]) + " |")
    return [*gap_table_head(lead, inputs), *out]


def accuracy(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def gap_closed(acc: dict[str, float], kind: str) -> float | None:
    if kind not in acc or "1best" not in acc or "oracle" not in acc:
        return None
    gap = acc["oracle"] - acc["1best"]
    return None if gap < MIN_GAP else (acc[kind] - acc["1best"]) / gap


def fmt(x, pct=True):
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.1f}"


def collect(exp: Path, models, sets, voices, selections):
    rows = []
    for sel in selections:
        for m in models:
            for s in sets:
                text = accuracy(exp / models[0] / f"icl_{sel}" / f"{s}_{voices[0]}" / "text" /
                                "accuracy.json")
                for v in voices:
                    d = exp / m / f"icl_{sel}" / f"{s}_{v}"
                    acc, info = {}, {}
                    for kind in INPUTS:
                        a = text if kind == "text" else accuracy(d / kind / "accuracy.json")
                        if a is not None:
                            acc[kind] = 100.0 * a["accuracy"]
                            info = a
                    cal = accuracy(exp / m / f"decode_{s}_{v}_cal" / "calibration.json")
                    rows.append({"selection": sel, "model": m, "set": s, "voice": v, "acc": acc,
                                 "n": info.get("total"), "wer": read_wer(
                                     exp / m / f"decode_{s}_{v}" / "oracle_wer"),
                                 "cal": cal, "unseen": info.get("utts_with_unseen_intent", 0)})
    return rows


def averages(rows) -> list[dict]:
    """One row per selection x set: each input's accuracy averaged over every first pass and
    voice (the issue's "N-best and WCN never below the 1-best on average over first passes");
    an input missing from any of them is left out, so every mean covers the same utterances."""
    out = []
    for key in dict.fromkeys((r["selection"], r["set"]) for r in rows):
        group = [r for r in rows if (r["selection"], r["set"]) == key]
        acc = {k: sum(r["acc"][k] for r in group) / len(group) for k in INPUTS
               if all(k in r["acc"] for r in group)}
        out.append({"selection": key[0], "set": key[1], "passes": len(group), "acc": acc})
    return out


def spread_lines(exp: Path, data: Path, rows, pred_dir=None) -> list[str]:
    """Under the mean table: per selection x set and input, a paired bootstrap 95% interval
    of its mean difference to the 1-best and of the mean gap closed, and the exact McNemar
    test pooled over the rows (needs every row's ``utt2intent`` files). ``pred_dir(row,
    input)``: where a row's prediction of an input is (default: the main run's)."""
    if pred_dir is None:
        def pred_dir(r, k):
            return exp / r["model"] / f"icl_{r['selection']}" / f"{r['set']}_{r['voice']}" / k
    out = []
    for key in dict.fromkeys((r["selection"], r["set"]) for r in rows):
        # the bootstrap draws row after row from one seed: in a fixed order, so reports of
        # the same predictions (RESULTS.md, RESULTS_knn.md) agree whatever --models order
        group = sorted((r for r in rows if (r["selection"], r["set"]) == key),
                       key=lambda r: (r["model"], r["voice"]))
        if len(group) < 2:
            continue
        for kind in DIFF_KINDS:
            per_row = [correct(data / f"{r['set']}_{r['voice']}" / "utt2intent", {
                k: pred_dir(r, k) for k in ("1best", kind, "oracle")}) for r in group]
            if any(c is None for c in per_row):
                continue
            b = bootstrap_gap(per_row, kind, min_gap=MIN_GAP)
            counts = [won_lost(c["1best"], c[kind]) for c in per_row]
            won, lost = sum(w for w, _ in counts), sum(x for _, x in counts)
            line = (f"- {key[0]}, {key[1]}, `{kind}` - 1best: {b['diff'][0]:+.1f} to "
                    f"{b['diff'][1]:+.1f} points")
            if kind in GAP_KINDS:
                line += (f"; gap closed {100 * b['closed'][0]:.0f}% to "
                         f"{100 * b['closed'][1]:.0f}%, at least 50% in "
                         f"{100 * b['closed_at_least_half']:.0f}% of the resamples")
                if b["no_gap"]:
                    line += f" ({b['no_gap']} without a {MIN_GAP:.0f}-point gap left out)"
            out.append(line + f"; pooled McNemar {mcnemar(won, lost)}")
    if not out:
        return []
    return ["Spread of the means above (95% intervals of a paired bootstrap: 2,000 resamples "
            "of each row's test utterances, the same draw for every input, seed 0; exact "
            "McNemar test pooled over the rows, utterances won/lost against the 1-best, "
            "two-sided p):", "", *out, ""]


def models_of(rows) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def plot(rows, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = rows[0]["selection"]
    rows = [r for r in rows if r["selection"] == sel and r["acc"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    width = 0.8 / max(len(rows), 1)
    for j, r in enumerate(rows):
        ax.bar([i + j * width for i in range(len(INPUTS))],
               [r["acc"].get(k, 0.0) for k in INPUTS], width,
               label=f"{r['model']} {r['set']} {r['voice']} (WER {r['wer'].get('1-best', 0):.0f}%)")
    ax.set_xticks([i + width * (len(rows) - 1) / 2 for i in range(len(INPUTS))], INPUTS,
                  rotation=25, fontsize=8)  # eight names side by side
    ax.set_ylabel("intent accuracy (%)")
    ax.set_title(f"SmolLM2-135M-Instruct ICL ({sel} shots) by input")
    ax.legend(fontsize=7)
    ax = axes[1]
    for k in INPUTS[1:]:
        pts = sorted((r["wer"].get("1-best", 0.0), r["acc"].get(k)) for r in rows
                     if k in r["acc"])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
    texts = [r["acc"]["text"] for r in rows if "text" in r["acc"]]
    if texts:
        ax.axhline(sum(texts) / len(texts), color="k", ls="--", lw=1, label="text")
    ax.set_xlabel("first-pass 1-best WER (%) of the set")
    ax.set_ylabel("intent accuracy (%)")
    ax.set_title("accuracy vs first-pass WER, per input")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def qa_sweep_section(exp: Path, models, sets, voices) -> list[str]:
    """QA F1 from WCNs pruned at several thresholds, and without posteriors (--qa_sweep)."""
    rows = []
    for m in models:
        for s in sets:
            for v in voices:
                d = exp / m / "qa_sweep" / f"{s}_{v}"
                runs = sorted(d.glob("t*/scores.json"), key=lambda f: float(f.parent.name[1:]))
                if not runs:
                    continue
                pts = [(float(f.parent.name[1:]), json.loads(f.read_text())["wcn"]) for f in runs]
                base = exp / m / "qa" / f"{s}_{v}" / "scores.json"
                ref = json.loads(base.read_text()) if base.is_file() else {}
                if "wcn" in ref and ref["wcn"]["settings"].get("wcn_posteriors", True):
                    t0 = ref["wcn"]["settings"]["wcn_threshold"]  # stage 6's own WCN run
                    pts = sorted({t: r for t, r in [(t0, ref["wcn"]), *pts]}.items())
                noprob = d / "noprob" / "scores.json"
                npr = json.loads(noprob.read_text())["wcn"] if noprob.is_file() else None
                rows.append((m, s, v, pts, ref, npr))
    if not rows:
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L = ["", "### WCN pruning threshold and posteriors (spoken QA, F1 %)", "",
         "|first pass|set|voice|" + "|".join(f"t={t:g}" for t, _ in rows[0][3]) +
         "|default t, no posteriors|1-best|", "|---|---|---|" + "---|" * (len(rows[0][3]) + 2)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m, s, v, pts, ref, npr in rows:
        np_f1 = "-" if npr is None else f"{npr['f1']:.1f}"
        b_f1 = f"{ref['1best']['f1']:.1f}" if "1best" in ref else "-"
        L.append(f"|{m}|{s}|{v}|" + "|".join(f"{r['f1']:.1f}" for _, r in pts) +
                 f"|{np_f1}|{b_f1}|")
        ax.plot([t for t, _ in pts], [r["f1"] for _, r in pts], marker="o", label=f"{v} WCN")
        if "1best" in ref:
            ax.axhline(ref["1best"]["f1"], ls="--", lw=0.8, color=ax.lines[-1].get_color(),
                       label=f"{v} 1-best")
    ax.set_xlabel("WCN pruning threshold (posterior)")
    ax.set_ylabel("QA F1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(exp / "RESULTS_qa.png", dpi=120)
    plt.close(fig)
    L += ["", "Bins keep entries at or above the threshold (the best entry always stays); "
          "'no posteriors': the same bins without their probabilities.", "",
          "![QA F1 vs WCN threshold](RESULTS_qa.png)"]
    return L


def qa_section(exp: Path, models, sets, voices, corpus: str = "slurp") -> list[str]:
    """Stage 6's spoken QA: EM / F1 per first pass x set x voice x input."""
    found = [(m, s, v, json.loads(f.read_text())) for m in models for s in sets for v in voices
             if (f := exp / m / "qa" / f"{s}_{v}" / "scores.json").is_file()]
    if not found:
        return []
    L = ["## Spoken QA: exact match / F1 (%)", "",
         "Built here, not a published set: every slot type that occurs once in a test "
         f"sentence's {SOURCE[corpus]} gives one question from a template per slot type "
         "(`speechlm.llm.spoken_qa.QUESTIONS`, e.g. time -> \"What time is mentioned?\"), "
         "answered by the span's words. SmolLM2 reads 4 demonstrations (reference text of "
         "training-pool sentences, same slot type first), then the request as each input and "
         "the question, and writes the answer greedily (`speechlm spoken-qa`). SQuAD "
         "scoring.", "",
         "|first pass|set|voice|1-best WER|questions|" + "|".join(QA_INPUTS) +
         "|gap closed (WCN, F1)|gap closed (WCN marg, F1)|",
         "|---|---|---|---|---|" + "---|" * len(QA_INPUTS) + "---|---|"]
    text_of = {}  # the reference text is asked once per set (the first voice)
    for m, s, _v, sc in found:
        text_of.setdefault((m, s), sc.get("text"))
    for m, s, v, sc in found:
        if "text" not in sc and text_of.get((m, s)):
            sc = {**sc, "text": text_of[(m, s)]}
        n = max((x.get("questions", 0) for x in sc.values()), default=0)
        wer = read_wer(exp / m / f"decode_{s}_{v}" / "oracle_wer").get("1-best")
        cells = [f"{sc[k]['exact_match']:.1f} / {sc[k]['f1']:.1f}" if k in sc else "-"
                 for k in QA_INPUTS]
        f1 = {k: sc[k]["f1"] if k in sc else None for k in ("1best", "wcn", "wcn_marg", "oracle")}
        gaps = [gap_pct(f1[k], f1["1best"], f1["oracle"]) for k in ("wcn", "wcn_marg")]
        L.append(f"|{m}|{s}|{v}|{'-' if wer is None else f'{wer:.1f}'}|{n}|" + "|".join(cells)
                 + f"|{gaps[0]}|{gaps[1]}|")
    L += ["", f"Gap closed on F1 as for intents (shown when the oracle is at least {MIN_GAP:.0f}"
          " points above the 1-best). `nbest_marg` / `wcn_marg`: the question asked about each "
          "of the first 4 N-best hypotheses / the 4 likeliest paths of the calibrated WCN, "
          "with the same demonstrations, and the answer with the largest total hypothesis "
          "weight kept (answers equal after SQuAD normalization pooled). Per-question answers: "
          "`<first pass>/qa/<set>_<voice>/<input>.jsonl`."]
    return L + qa_sweep_section(exp, models, sets, voices) + [""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--voices", nargs="+", required=True)
    p.add_argument("--selections", nargs="+", required=True)
    p.add_argument("--llm", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--cmdline", default="")
    p.add_argument("--stage_times", type=Path, default=None, help="run.sh log with stage times")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended (how it was run)")
    p.add_argument("--corpus", choices=sorted(CORPUS), default="slurp")
    p.add_argument("--qa_only", action="store_true",
                   help="write only the spoken-QA table, to EXP/RESULTS_qa.md (stage 6)")
    args = p.parse_args()
    if args.qa_only:
        qa = qa_section(args.exp, args.models, args.sets, args.voices, args.corpus)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        head = [f"# RESULTS: egs/slurp/icl1 ({args.exp.name}), spoken QA", "",
                f"- date `{datetime.now().isoformat(timespec='seconds')}`, git commit "
                f"`{commit}`, {machine_summary()}; LLM "
                f"`{args.llm}`; the speech is synthetic (Piper joe, sampled espeak-ng voices, "
                "noise and reverberation added)", f"- command: `{args.cmdline or './run.sh'}`", ""]
        (args.exp / "RESULTS_qa.md").write_text("\n".join(head + qa))
        print("\n".join(qa))
        return 0

    name = CORPUS[args.corpus]
    rows = collect(args.exp, args.models, args.sets, args.voices, args.selections)
    sets_json = args.data / "local" / "sets.json"
    summary = json.loads(sets_json.read_text()) if sets_json.is_file() else {}
    sizes = summary.get("sets", {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    L = [f"# RESULTS: egs/slurp/icl1 ({args.exp.name})", "",
         f"In-context SLU (arXiv 2401.02921) on {name} with SmolLM2-135M-Instruct: rank "
         "classification over the training pool's intents after few-shot examples, from the "
         "reference text, the first pass's 1-best, N-best, WCN (raw and calibrated posteriors) "
         "and the lattice oracle path.", "",
         f"**The speech is synthetic** ({name}'s audio is not available here): the Piper voice "
         "`joe` and 40 sampled espeak-ng voices, each with added noise and reverberation. WERs "
         f"are not comparable with published {name} numbers.", "",
         "## Environment",
         f"- date `{datetime.now().isoformat(timespec='seconds')}`, git commit `{commit}`, "
         f"python `{platform.python_version()}`, machine `{platform.machine()}`, "
         f"{machine_summary()}, one torch thread per process",
         f"- LLM `{args.llm}`, {args.shots} shots per query, selection: "
         f"{', '.join(args.selections)}; sets (sentences): `{json.dumps(sizes)}`"]
    if args.corpus == "snips":
        test = (f"test = rows of `{Path(summary['test_dir']).name}/validate_*.json` and dev "
                "drawn from the other training sentences" if summary.get("test_dir")
                else "dev and test drawn from the other sentences")
        L += ["- SNIPS: the few-shot pool is a seeded sample per intent of "
              f"`train_<Intent>_full.json`; {test}, per intent with seed `0:<Intent>` "
              "(`../slu1/local/prepare_slu.py --corpus snips`); dev and test sentences are "
              "removed from the pool; sentences with digits are left out (the synthesiser "
              f"reads them out): `{json.dumps(summary.get('left_out_with_digits', {}))}`"]
    unseen = summary.get("test_intents_not_in_train") or (
        {"test": summary["test_intents_not_in_pool"]}
        if summary.get("test_intents_not_in_pool") else {})
    if unseen:
        L += ["- intents of a test set that the few-shot pool does not have (never right; "
              f"their utterances are counted): `{json.dumps(unseen)}`"]
    L += [""]
    L += ["## First pass: WER (%) and WCN calibration", "",
          "|first pass|set|voice|1-best|WCN MBR|lattice oracle|N-best oracle|WCN oracle|"
          "am_scale (dev NCE)|NCE raw → cal|ECE raw → cal|",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        key = (r["model"], r["set"], r["voice"])
        if key in seen:
            continue
        seen.add(key)
        w, c = r["wer"], r["cal"]
        cal = ("-", "-", "-") if c is None else (
            f"{c['am_scale']}", f"{c['raw']['nce']:.2f} → {c['calibrated']['nce']:.2f}",
            f"{c['raw']['ece']:.3f} → {c['calibrated']['ece']:.3f}")
        wers = [w.get(k, float("nan")) for k in
                ("1-best", "MBR (WCN consensus)", "lattice oracle", "N-best oracle",
                 "WCN oracle")]
        L.append(f"|{r['model']}|{r['set']}|{r['voice']}|" + "|".join(f"{x:.1f}" for x in wers)
                 + f"|{cal[0]}|{cal[1]}|{cal[2]}|")
    L += ["", "The acoustic scale of the WCN posteriors is tuned on the dev sets of all voices "
          "by normalised cross entropy (NCE) of the MBR words' posteriors (`speechlm "
          "calibrate-wcn`: the acoustic scores scaled, LM scores at 1, as Kaldi's "
          "`--acoustic-scale`; scale table in `<first pass>/calibration.json`). The decoders' "
          "own scales: Whisper 0.5 over its N-best scores; PocketSphinx 1/bestpathlw = 0.105 "
          "over a lattice carrying the in-domain trigram's scores; ESPnet 1/lm_scale = 2 over "
          "its CTC lattice through the TLG graph (the same trigram, lm_scale 0.5 in "
          "`../slu1/conf/decode_lattice.yaml`).", ""]
    for m in models_of(rows):
        tab = accuracy(args.exp / m / "calibration.json")
        if tab and tab.get("scales"):
            nces = [x["nce"] for x in tab["scales"]]
            best = next(x for x in tab["scales"] if x["am_scale"] == tab["am_scale"])
            L.append(f"- {m}: scales {min(x['am_scale'] for x in tab['scales']):g}-"
                     f"{max(x['am_scale'] for x in tab['scales']):g} on {tab['utts']} dev "
                     f"utterances, best NCE {best['nce']:.2f} at {tab['am_scale']:g} "
                     f"(WCN MBR WER {best['mbr_wer']:.1f}%); NCE range "
                     f"{min(nces):.2f} to {max(nces):.2f}" +
                     (": negative at every scale, wrong words get high posteriors"
                      if max(nces) < 0 else ""))
    L += [""]
    L += ["## Intent accuracy (%)", "",
          "|shots|first pass|set|voice|utts|" + "|".join(INPUTS) + "|" +
          "".join(f"gap closed ({GAP_NAMES[k]})|" for k in GAP_KINDS),
          "|---|---|---|---|---|" + "---|" * (len(INPUTS) + len(GAP_KINDS))]
    for r in rows:
        a = r["acc"]
        L.append(f"|{r['selection']}|{r['model']}|{r['set']}|{r['voice']}|{r['n'] or '-'}|" +
                 "|".join(fmt(a.get(k), pct=False) for k in INPUTS) + "|" +
                 "".join(f"{fmt(gap_closed(a, k))}|" for k in GAP_KINDS))
    L += ["", "Gap closed = (acc(WCN) − acc(1-best)) / (acc(oracle) − acc(1-best)), shown when "
          f"the oracle is at least {MIN_GAP:.0f} points above the 1-best. `text` is the "
          "reference transcript (the ceiling), `oracle` the lattice path closest to it. "
          "Shots are reference-text examples of the training pool in every column; only the "
          "query line changes. `nbest_marg` / `wcn_marg`: the label posteriors of each of the "
          "first 4 N-best hypotheses (weights: softmax of the decoder's scores) / of the 4 most "
          "likely paths of the calibrated WCN (weights: their posteriors), each classified "
          "alone, averaged with those weights (`speechlm slu predict --input nbest_marg "
          "wcn_marg`; 4 rankings per utterance instead of one).", ""]
    if len(models_of(rows)) > 1:
        L += ["Averaged over every first pass and voice (unweighted mean of the rows above):", "",
              "|shots|set|first passes x voices|" + "|".join(INPUTS) + "|" +
              "".join(f"{k} - 1best|" for k in DIFF_KINDS) +
              "".join(f"gap closed ({GAP_NAMES[k]})|" for k in GAP_KINDS),
              "|---|---|---|" + "---|" * (len(INPUTS) + len(DIFF_KINDS) + len(GAP_KINDS))]
        for r in averages(rows):
            a = r["acc"]
            diff = ["-" if k not in a or "1best" not in a else f"{a[k] - a['1best']:+.1f}"
                    for k in DIFF_KINDS]
            L.append(f"|{r['selection']}|{r['set']}|{r['passes']}|" +
                     "|".join(fmt(a.get(k), pct=False) for k in INPUTS) + "|" +
                     "".join(f"{d}|" for d in diff) +
                     "".join(f"{fmt(gap_closed(a, k))}|" for k in GAP_KINDS))
        L += [""]
        L += spread_lines(args.exp, args.data, rows)
    L += ["![accuracy per input and vs WER](RESULTS.png)", ""]
    L += qa_section(args.exp, args.models, args.sets, args.voices, args.corpus)
    unseen = max((r["unseen"] for r in rows), default=0)
    if unseen:
        L += [f"Reference intents absent from the training pool: up to {unseen} utterances per "
              "set (never classifiable, counted as errors).", ""]
    if args.stage_times and args.stage_times.is_file():
        times = [x.split(" ", 2)[2] for x in args.stage_times.read_text().splitlines()
                 if " took " in x and x.split(" ", 2)[2].startswith("Stage")]
        if times:
            L += ["## Wall time (this machine)", "", *[f"- {t}" for t in times], ""]
    L += ["## Command", "", "```", args.cmdline or "./run.sh", "```", ""]
    if args.notes and args.notes.is_file():
        L += [args.notes.read_text().rstrip(), ""]
    (args.exp / "RESULTS.md").write_text("\n".join(L))
    if rows and any(r["acc"] for r in rows):
        plot(rows, args.exp / "RESULTS.png")
    for r in rows:
        print(f"gap closed {r['model']} {r['set']} {r['voice']} ({r['selection']}): " +
              ", ".join(f"{GAP_NAMES[k]} {fmt(gap_closed(r['acc'], k))}" for k in GAP_KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
