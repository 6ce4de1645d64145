#!/usr/bin/env python3
"""Score every decoded set and write EXP/RESULTS.md in ESPnet's form (plus Kaldi %WER lines)."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from speechlm.core.wer import TABLE_HEADER, read_kaldi_text, score_texts


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


ORACLE_ROWS = (("1best", "lattice 1-best (attention rescored)"),
               ("mbr", "WCN MBR 1-best"), ("lattice", "lattice oracle"),
               ("nbest", "N-best oracle"), ("wcn", "WCN oracle"))


def lattice_results(exp: Path, sets: list[str]) -> str:
    """Markdown table method x set from each decode_lattice_<set>/oracle.jsonl."""
    cols = [s for s in sets if (exp / f"decode_lattice_{s}" / "oracle.jsonl").is_file()]
    if not cols:
        return ""
    wers: dict[str, dict[str, str]] = {}
    for s in cols:
        rows = [json.loads(line) for line in
                (exp / f"decode_lattice_{s}" / "oracle.jsonl").read_text().splitlines()]
        words = sum(r["ref_words"] for r in rows)
        for key, _ in ORACLE_ROWS:
            wers.setdefault(key, {})[s] = f"{100.0 * sum(r[key] for r in rows) / words:.1f}"
    lines = ["|method|" + "|".join(cols) + "|", "|---|" + "---|" * len(cols)]
    lines += [f"|{name}|" + "|".join(wers[key][s] for s in cols) + "|"
              for key, name in ORACLE_ROWS]
    return "\n".join(lines) + "\n"


def graph_lm(exp: Path) -> str:
    info = exp / "graph" / "graph.json"
    if not info.is_file():
        return "an n-gram"
    order = json.loads(info.read_text()).get("order")
    return f"a {order}-gram" if order else "no n-gram (free word loop)"


def cmn_text(cmn: str) -> str:
    if cmn != "speaker":
        return "global CMVN only."
    return ("per-speaker mean normalisation (each speaker's mean over all their utterances in "
            "the data dir; a speaker with under 300 frames is padded with the training mean, "
            "as Kaldi's online CMVN does; `speechlm.data.cmn`), then global CMVN. A data dir "
            "whose utt2spk makes each utterance its own speaker decodes worse (see README.md).")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--config", required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--dirs", nargs="+", required=True)
    p.add_argument("--dev-speaker", required=True)
    p.add_argument("--use-synth", default="false")
    p.add_argument("--speed-perturb", default="")
    p.add_argument("--volume-range", default="")
    p.add_argument("--elapsed", default="", help="seconds this run.sh invocation has taken")
    p.add_argument("--lattice-config", default="conf/decode_lattice.yaml")
    p.add_argument("--cmn", default="none")
    args = p.parse_args()
    if len(args.sets) != len(args.dirs):
        p.error("--sets and --dirs differ in length")

    from importlib.metadata import version

    from speechlm.asr.espnet_asr import count_parameters

    rows, kaldi_lines = [], []
    decodes = [(f"decode_{n}", d) for n, d in zip(args.sets, args.dirs, strict=True)]
    decodes += [(f"decode_whisper_{n}", d) for n, d in zip(args.sets, args.dirs, strict=True)
                if (args.exp / f"decode_whisper_{n}" / "text").is_file()]  # stage 8
    for kind, data_dir in decodes:
        decode_dir = args.exp / kind
        ref = read_kaldi_text(str(Path(data_dir) / "text"))
        hyp = read_kaldi_text(str(decode_dir / "text"))
        stats = score_texts(ref, hyp, ref_name=f"{data_dir}/text", hyp_name=f"{decode_dir}/text")
        rows.append(stats.table_row(kind))
        line = stats.kaldi_line(str(decode_dir / "wer"))
        (decode_dir / "wer").write_text(line + "\n")
        kaldi_lines.append(line)
    lattice_table = lattice_results(args.exp, args.sets)
    meta = json.loads((args.exp / "model" / "meta.json").read_text())
    decode = (args.exp / "model" / "decode.yaml")
    synth = ("espeak-ng digits (stage 2, many voices, noise/reverb) added to training"
             if args.use_synth == "true" else "none")
    text = f"""# RESULTS
## Environment
- date: `{datetime.datetime.now().isoformat(timespec='seconds')}`
- git commit: `{git_commit()}`
- python `{platform.python_version()}`, torch `{version('torch')}`, espnet `{version('espnet')}`
- machine: `{platform.machine()}`, {os.cpu_count()} CPU cores, no GPU; this run.sh invocation
  took {args.elapsed or '?'} s up to scoring

## Data
- Free Spoken Digit Dataset (real 8 kHz recordings, resampled to 16 kHz). Split by speaker:
  dev speaker `{args.dev_speaker}` is never trained on: `dev` = its takes 5-49 (model
  selection), `test` = its takes 0-4. `train` = the other speakers' takes 5-49,
  `test_seen` = their takes 0-4.
- Speed perturbation: `{args.speed_perturb}`; volume perturbation (gain range):
  `{args.volume_range or 'none'}`; SpecAugment in the config.
- Extra training speech: {synth}.
- Feature normalisation: {cmn_text(args.cmn)}

## {args.exp.name}
- config: `{args.config}`, {count_parameters(args.exp / 'model') / 1e6:.2f} M parameters,
  trained with `espnet2.bin.asr_train` (log: `{args.exp}/train.log`,
  weights: `{Path(meta['weights']).name}`)
- decoding: joint CTC/attention beam search, options from `{decode}` and the command line
- training curves (ESPnet's plots): `{args.exp}/images/acc.png`, `{args.exp}/images/loss.png`

### WER

{TABLE_HEADER}
""" + "\n".join(rows) + "\n\n### best_wer (Kaldi form)\n\n```\n"
    text += "\n".join(kaldi_lines) + "\n```\n"
    if lattice_table:
        text += f"""
### Lattices (stage 7)

CTC lattices over a TLG graph (lexicon and {graph_lm(args.exp)} from `data/train/text`) by
kaldi-decoder, N-best rescored by the attention decoder; options `{args.lattice_config}`.
WER (%) of the attention-rescored 1-best, of the MBR (consensus) 1-best of the word
confusion network, and the oracles (best path in the lattice, in the N-best, through the WCN).

""" + lattice_table
    text += whisper_pass_text(args.exp)
    text += resolved_configs(args.exp, args.sets[0])
    (args.exp / "RESULTS.md").write_text(text)
    return 0


def whisper_pass_text(exp: Path) -> str:
    """What stage 8 chose (EXP/whisper_pass/chosen.json), or nothing when it did not run."""
    path = exp / "whisper_pass" / "chosen.json"
    if not path.is_file():
        return ""
    c = json.loads(path.read_text())
    closed = (f"plus the {len(c['closed_set'])} distinct training transcripts"
              if c["closed_set"] else "only (the training text is not a closed set)")
    stage = "stage 7's lattice" if c["first_pass"] == "decode_lattice" else "stage 6's"
    prompt = f"previous-text prompt \"{c['prompt']}\"" if c["prompt"] else "no prompt"
    return f"""
### Whisper second pass (stage 8)

`decode_whisper_<set>`: {stage} N-best {closed}, each candidate scored by
`{c['model']}` teacher-forced (audio padded to {c['window_s']:g} s, {prompt};
`speechlm.asr.whisper_score`), interpolated with the first-pass score:
`(1 - w) * first + w * whisper` with w = {c['whisper_weight']}; a candidate one system did
not score gets its lowest score for the utterance minus {c['floor']:g}. Both were chosen on
`{c['tuned_on']}` (grid: `{exp}/whisper_pass/tuning.tsv`), so that row is optimistic; the
other sets are not tuned on.
"""


def resolved_configs(exp: Path, first_set: str) -> str:
    """The decode settings as `speechlm decode` resolved them (OUT/decode_config.yaml)."""
    out = ""
    for kind in ("decode", "decode_lattice"):
        path = exp / f"{kind}_{first_set}" / "decode_config.yaml"
        if path.is_file():
            out += f"\n`{path}` (every set of this stage decodes with it):\n\n```yaml\n"
            out += path.read_text().rstrip() + "\n```\n"
    return "\n### Resolved decode configs\n" + out if out else ""


if __name__ == "__main__":
    sys.exit(main())
