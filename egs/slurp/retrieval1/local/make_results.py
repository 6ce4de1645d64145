#!/usr/bin/env python3
"""Stage 8: RESULTS.md (WER / entity error table, costs, sweeps) and the scaling plot."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = [
    ("espnet", "ESPnet conformer CTC/attention (beam search)"),
    ("whisper", "Whisper tiny.en (1-best of 5)"),
    ("whisper+lm", "+ rescoring: embedded LM"),
    ("whisper+lm+knn_text", "+ rescoring: embedded LM + kNN-LM, text keys"),
    ("whisper+speech_llm", "+ rescoring: speech-prefix LLM"),
    ("whisper+speech_llm+knn_speech", "+ rescoring: speech-prefix LLM + kNN-LM, speech keys"),
    ("speech_llm_ctc", "projector CTC best path (no LLM)"),
    ("speech_llm", "speech-prefix LLM (greedy)"),
    ("speech_llm+knn_text", "+ kNN-LM, text keys"),
    ("speech_llm+knn_speech", "+ kNN-LM, speech keys"),
    ("speech_llm+xattn_text", "+ cross-attention, text retrieval"),
    ("speech_llm+xattn_speech", "+ cross-attention, speech retrieval"),
    ("speech_llm+icl_text", "+ in-context prefix, text retrieval"),
    ("speech_llm+icl_speech", "+ in-context prefix, speech retrieval"),
    ("speech_llm+icl_tuned_text", "+ in-context prefix, LLM tuned on such prompts, text"),
    ("speech_llm+icl_tuned_speech", "+ in-context prefix, LLM tuned on such prompts, speech"),
    ("speech_llm+xattn_oracle", "oracle: cross-attention, own transcript among k"),
    ("speech_llm+icl_tuned_oracle", "oracle: in-context (tuned), own transcript among k"),
    ("speech_llm+ctc", "speech-prefix LLM, joint CTC decoding"),
    ("speech_llm+ctc+knn_text", "+ kNN-LM, text keys"),
    ("speech_llm+ctc+knn_speech", "+ kNN-LM, speech keys"),
    ("speech_llm+ctc+xattn_text", "+ cross-attention, text retrieval"),
    ("speech_llm+ctc+xattn_speech", "+ cross-attention, speech retrieval"),
    ("speech_llm+ctc+xattn_oracle", "oracle: cross-attention, own transcript among k"),
]


def plot(bench: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind in ("flat", "ivf", "ivfpq"):
        rows = [r for r in bench["rows"] if r["index"] == kind]
        if rows:
            ax.plot([r["num_keys"] for r in rows], [r["query_ms"] for r in rows], "o-",
                    label=kind)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("keys in the store")
    ax.set_ylabel(f"ms per query (one token, k={bench['k']})")
    ax.set_title(f"FAISS query time, {bench['dim']}-dim random keys\n"
                 f"({bench.get('machine', 'machine not recorded')})", fontsize=9)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def second_sets(sys_: dict) -> list[str]:
    """A table per further test set (e.g. ``test_piper``: the test sentences read by a voice
    no system trained on), with its change against ``test``."""
    out = []
    base = sys_["speech_llm"]
    for name in (n for n in base if n not in ("dev", "test")):
        voice = name.split("_", 1)[-1]
        out += [f"### Second test set: `{name}`, the test sentences read by the {voice} voice",
                "", f"The same {base[name]['words']} words and {base[name]['entities']} "
                f"entities as `test`, read by a voice that no system here trained on (the "
                "speech-prefix LLM, its CTC head and ESPnet learned from espeak-ng voices; "
                "Whisper from real speech); settings as tuned on `dev`.", "",
                f"| system | {name} WER | {name} EER | rel. WER vs speech LLM | "
                "WER change vs test |", "|---|---|---|---|---|"]
        for key, label in ROWS:
            t = sys_.get(key, {}).get(name)
            if not t:
                continue
            rel = (t["wer"] - base[name]["wer"]) / max(base[name]["wer"], 1e-9) * 100
            out.append(f"| {label} | {t['wer']:.1f} | {t['eer']:.1f} | {rel:+.0f}% | "
                       f"{t['wer'] - sys_[key]['test']['wer']:+.1f} |")
        out.append("")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", required=True)
    p.add_argument("--cmdline", default="./run.sh")
    p.add_argument("--data", default="data")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    exp = Path(a.exp)
    res = json.loads((exp / "eval" / "results.json").read_text())
    sets = json.loads((Path(a.data) / "local" / "sets.json").read_text())
    report = json.loads((exp / "speech_llm" / "train_report.json").read_text())
    slm = json.loads((exp / "speech_llm" / "speech_llm.json").read_text())["speech_llm"]
    sys_ = res["systems"]
    xattn_path = exp / "xattn" / "results.json"
    xattn = json.loads(xattn_path.read_text()) if xattn_path.is_file() else None
    if xattn:  # local/cross_attention.py: same layout; its plain row is the same model
        sys_.update({k: v for k, v in xattn["systems"].items() if k != "speech_llm"})
    base = sys_["speech_llm"]["test"]
    lines = [
        "# SLURP (synthetic speech): speech-prefix LLM and kNN-LM retrieval",
        "",
        f"Command: `{a.cmdline}`. Machine: 2 CPU cores shared with other jobs, no GPU; all "
        "timings are from that machine.",
        "",
        f"Data: SLURP devel sentences with entity annotations, split by sentence into test "
        f"({sets['test']}), dev ({sets['dev']}) and a retrieval store ({sets['store']} "
        f"sentences, never trained on); the speech-prefix LLM trains on {sets['train']} "
        "lines of SLURP's unlabelled training text. All speech is synthetic (espeak-ng, 40 "
        f"voices, noise and reverberation). Of the {sets['test_entities']} test entities, "
        f"{sets['test_entities_in_store']} occur in the store text and "
        f"{sets['test_entities_in_lm_text']} in the LM training text.",
        "",
        "Speech-prefix LLM: Whisper tiny.en encoder states (CTranslate2, unpadded) -> "
        "projector (4 states stacked, LayerNorm, MLP 1536-1024-LLM width) -> input "
        "embeddings `[BOS] [speech] ' Transcript:'` of the LLM, then the transcript. LLM: "
        f"`{slm['llm']}` "
        f"({'fine-tuned with the projector' if slm.get('train_llm') else 'frozen'}). "
        f"Trained: {report['trainable_params']:,} parameters, {report['steps']} "
        f"steps on {report['examples']} utterances in {report['train_seconds']:.0f} s, final "
        f"loss {report['final_loss']}" + (
            f" (transcript cross-entropy {report['final_ce']} + {slm['ctc_weight']} x CTC "
            f"{report['final_ctc']}). The CTC loss reads the transcript's tokens off the "
            "projected prefix, scored against the LLM's own input embedding table (plus a "
            "learned blank)" + ("; the LLM reads one embedding per CTC segment (the mean of "
                                "the frames the best path gives one token, blank frames "
                                "dropped)" if slm.get("ctc_compress") else
                                "; the LLM reads every projected frame") + "."
            if slm.get("ctc_weight") else "."),
        "",
        "kNN-LM: p = lam p_kNN + (1 - lam) p_LM, p_kNN = softmax(-d / T) over k neighbours "
        "(squared L2) of the LLM's final hidden state. Text keys: the LLM reads the store's "
        "transcripts alone. Speech keys: the same positions with the LLM reading each store "
        "utterance's speech prefix first. lam, k, T and the rescoring llm_scale are chosen "
        "on dev (WER, then entity error).",
        "",
        "| system | dev WER | dev EER | test WER | test EER | rel. test WER vs speech LLM "
        "| setting |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in ROWS:
        if key not in sys_:
            continue
        d, t = sys_[key]["dev"], sys_[key]["test"]
        setting = ", ".join(f"{k}={t[k]}" for k in ("lam", "k", "T", "llm_scale", "ctc_weight")
                            if k in t)
        rel = (t["wer"] - base["wer"]) / max(base["wer"], 1e-9) * 100
        lines.append(f"| {name} | {d['wer']:.1f} | {d['eer']:.1f} | {t['wer']:.1f} | "
                     f"{t['eer']:.1f} | {rel:+.0f}% | {setting} |")
    lines += ["", "WER and entity error rate (EER: a reference entity counts as an error when "
              "its words are not a contiguous run of the hypothesis) in %. "
              f"Test: {base['words']} words, {base['entities']} entities.", ""]
    if "espnet" in sys_:
        lines += ["ESPnet: SLURP's conformer (`../slu1/conf/train_asr.yaml`, 2.45 M parameters, "
                  "characters) trained by `speechlm train-asr` on the same synthetic training "
                  "speech as the speech-prefix LLM, decoded with ESPnet's CTC/attention beam "
                  "search (no LM).", ""]
    lines += second_sets(sys_)
    if xattn:
        ret = xattn.get("retrieval", {})
        args = xattn.get("args", {})
        recall = "; ".join(f"{k} {v['test_entity_recall']:.1f}%" for k, v in ret.items()
                           if "test_entity_recall" in v)
        lines += ["Cross-attention and in-context retrieval (`local/cross_attention.py`): the "
                  f"top-{args.get('k', 'k')} store utterances by speech (z-scored mean-pooled "
                  "Whisper states, cosine) or by text (MiniLM of the speech LLM's own "
                  "first-pass hypothesis), read through gated, zero-initialised cross-"
                  "attention blocks after every decoder layer (memory: the retrieved "
                  "transcripts as (LLM final state, next-token embedding) pairs; trained with "
                  "the speech LLM frozen, retrieving from train + store without the utterance "
                  "itself) or put before the speech prefix as text (`Similar requests: ...`), "
                  "without and with one epoch of LLM fine-tuning on such prompts; greedy, and "
                  "for cross-attention also with joint CTC decoding. Share of test entities "
                  "found in the retrieved "
                  f"transcripts: {recall}. *oracle* rows put each utterance's own transcript "
                  "among the k: an upper bound on what the reading mechanism takes from a "
                  "retrieval that found the sentence, not the paper's setting.", ""]
    if "test_in_store" in base:
        ins, ctl = base["test_in_store"], base["test_control"]
        lines += ["### Test split by entity: in the store vs control", "",
                  f"*in store*: the {ins['utts']} test utterances with an entity that occurs in "
                  f"the store's text ({ins['entities']} entities), where retrieval can bring it "
                  f"in; *control*: the other {ctl['utts']} ({ctl['entities']} entities), where "
                  "it must not hurt.", "",
                  "| system | in-store WER | in-store EER | control WER | control EER |",
                  "|---|---|---|---|---|"]
        for key, name in ROWS:
            t = sys_.get(key, {}).get("test", {})
            if "test_in_store" in t:
                i, c = t["test_in_store"], t["test_control"]
                lines.append(f"| {name} | {i['wer']:.1f} | {i['eer']:.1f} | {c['wer']:.1f} | "
                             f"{c['eer']:.1f} |")
        lines.append("")
    for base_key, label in (("speech_llm", "the speech-prefix LLM"),
                            ("speech_llm+ctc", "joint CTC decoding")):
        b = sys_.get(base_key, {}).get("test")
        tk = sys_.get(f"{base_key}+knn_text", {}).get("test")
        sk = sys_.get(f"{base_key}+knn_speech", {}).get("test")
        if not (b and tk and sk):
            continue
        holds = ("holds" if sk["wer"] < tk["wer"] else
                 "does not hold" if sk["wer"] > tk["wer"] else "is a tie")
        words = b["words"]
        lines += [f"Speech keys vs text keys on {label}, test WER: {sk['wer']:.1f} vs "
                  f"{tk['wer']:.1f} (without retrieval {b['wer']:.1f}; EER {sk['eer']:.1f} vs "
                  f"{tk['eer']:.1f}): the paper's direction (speech-key retrieval beats "
                  f"text-key retrieval) {holds} here; one point is "
                  f"{words / 100:.0f} of the {words} test words."]
        if b["wer"] > 90:
            lines[-1] += (f" But {label} does not transcribe ({b['wer']:.0f}% test WER), so "
                          "this is no test of the paper's claim.")
        lines.append("")
    # costs
    lines += ["## Cost", "", "| store | keys | dim | build s (index) | key extraction s | "
              "MB | MB per 1M keys |", "|---|---|---|---|---|---|---|"]
    for key, meta in res["stores"].items():
        lines.append(f"| {key} keys ({meta['config']['index']}) | {meta['num_keys']} | "
                     f"{meta['dim']} | {meta['build_s']} | "
                     f"{meta['info'].get('key_extraction_s', '')} | "
                     f"{meta['bytes'] / 1e6:.2f} | {meta['bytes'] / meta['num_keys']:.0f} |")
    plain = sys_["speech_llm"]["test"]
    lines += ["", "Decoding time per token (test, greedy, batches of 8): plain "
              f"{plain['ms_per_token']} ms"]
    for key in ("text", "speech"):
        k = sys_.get(f"speech_llm+knn_{key}", {}).get("test")
        if k:
            lines[-1] += (f"; + kNN {key} keys {k['ms_per_token']} ms "
                          f"({k['ms_per_token'] / plain['ms_per_token']:.2f}x)")
    lines[-1] += "."
    bench_path = exp / "bench.json"
    if bench_path.is_file():
        bench = json.loads(bench_path.read_text())
        lines += ["", f"### Scaling (random clustered {bench['dim']}-dim keys, k={bench['k']}, "
                  "one query at a time)", "",
                  "| keys | index | build s | MB per 1M keys | ms / query | recall@1 vs flat |",
                  "|---|---|---|---|---|---|"]
        for r in bench["rows"]:
            rec = "" if r["recall_at_1"] is None else f"{r['recall_at_1']:.2f}"
            lines.append(f"| {r['num_keys']:,} | {r['index']} | {r['build_s']} | "
                         f"{r['bytes_per_million'] / 1e6:.0f} | {r['query_ms']} | {rec} |")
        png = Path(a.out).with_suffix(".png")  # RESULTS.png (kept by .gitignore)
        plot(bench, png)
        lines += ["", f"![query time vs store size]({png.name})"]
    lines += ["", "## Dev sweeps", ""]
    for name, sweep in res["sweeps"].items():
        if isinstance(sweep, list) and sweep and "ctc_weight" in sweep[0]:
            cells = "; ".join(f"ctc_weight={r['ctc_weight']}: {r['wer']:.1f}/{r['eer']:.1f}"
                              for r in sweep)
        elif isinstance(sweep, list):
            cells = "; ".join(f"lam={r['lam']} k={r['k']} T={r['T']}: {r['wer']:.1f}/"
                              f"{r['eer']:.1f}" for r in sweep)
        else:
            cells = "; ".join(f"{k}: {v['wer']:.1f}/{v['eer']:.1f}" for k, v in sweep.items())
        lines.append(f"- {name} (WER/EER): {cells}")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
