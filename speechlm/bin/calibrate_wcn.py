r"""Calibrate WCN posteriors: tune the acoustic scale on dev by NCE, rebuild confusion networks.

    speechlm calibrate-wcn --dev exp/asr/decode_dev data/dev \
        --apply exp/asr/decode_test data/test exp/asr/decode_test_cal [--apply ...] \
        [--scales "0.05 0.1 0.2 0.3 0.5 0.7 1.0 1.5 2.0"] [--report exp/asr/calibration.json]

A decode dir's WCNs (``cn.jsonl``) come from its lattices at the backend's posterior scale;
at scale 1 an N-best lattice of a neural recognizer is over-confident. Here the lattices of
the ``--dev`` decode dirs (``lat/lat.*.gz`` with ``lat/words.txt``, from ``speechlm decode
--lattice``) and their data dirs' reference ``text`` pick the scale with the best
normalised cross entropy of the MBR words' posteriors
(``speechlm.lattice.calibration.tune_am_scale``; hypothesis and reference words both pass
through ``normalize_text``). Each ``--apply DECODE DATA OUT`` then gets OUT: a decode dir
whose ``cn.jsonl``, ``text.mbr`` and ``ctm`` are rebuilt at that scale, with ``text``,
``nbest.jsonl``, ``oracle.jsonl`` and ``oracle_wer`` copied (the lattice and its oracle
path do not depend on the scale), so ``speechlm slu predict --input wcn --decode-dir OUT``
reads calibrated WCNs. OUT/calibration.json holds the scale and the NCE / ECE / MBR WER of
the original ``cn.jsonl`` ("raw") and of the rebuilt one on that set (DATA's text).

Outputs: ``--report`` (default: the first OUT's parent / calibration.json): the scale table
on dev and the chosen scale; OUT/ as above. A finished OUT with the same scale and inputs
is kept.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from speechlm.bin import command_main

SCALES = "0.05 0.1 0.2 0.3 0.5 0.7 1.0 1.5 2.0"
COPIED = ("text", "nbest.jsonl", "oracle.jsonl", "oracle_wer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dev", nargs=2, action="append", required=True,
                        metavar=("DECODE_DIR", "DATA_DIR"),
                        help="a dev decode dir (with lat/) and its data dir (text); repeatable")
    parser.add_argument("--apply", nargs=3, action="append", default=[],
                        metavar=("DECODE_DIR", "DATA_DIR", "OUT"),
                        help="rebuild this decode dir's WCNs at the tuned scale into OUT")
    parser.add_argument("--scales", default=SCALES, help=f"candidates (default: {SCALES!r})")
    parser.add_argument("--report", default=None, help="the dev table as JSON")


def _lattices(decode_dir: Path) -> dict:
    from speechlm.lattice import read_kaldi_lattices

    lat_dir = decode_dir / "lat"
    files = sorted(lat_dir.glob("lat.*.gz"))
    if not files or not (lat_dir / "words.txt").is_file():
        raise FileNotFoundError(f"{lat_dir}: no lat.*.gz with words.txt (decode with --lattice)")
    out = {}
    for f in files:
        for lat in read_kaldi_lattices(f, words=lat_dir / "words.txt"):
            out[lat.utt] = lat
    return out


def _refs(data_dir: Path) -> dict[str, list[str]]:
    from speechlm.core.normalize import normalize_text
    from speechlm.llm.serialize import read_text_file

    return {u: normalize_text(t).split() for u, t in read_text_file(data_dir / "text").items()}


def _pairs(decode_dir: Path, data_dir: Path) -> tuple[list, list, list[str]]:
    """(lattices, reference words, utterances) of the utterances with both."""
    lats, refs = _lattices(decode_dir), _refs(data_dir)
    utts = [u for u in refs if u in lats]
    if not utts:
        raise ValueError(f"{decode_dir}: no lattice of an utterance of {data_dir}/text")
    return [lats[u] for u in utts], [refs[u] for u in utts], utts


def _scores(cns, refs) -> dict[str, float]:
    from speechlm.lattice.calibration import ece, nce, scored_words
    from speechlm.lattice.oracle import edit_distance

    conf, ok, errs = [], [], 0
    for cn, ref in zip(cns, refs, strict=True):
        c, o = scored_words(cn, ref)
        conf += c
        ok += o
        errs += edit_distance(ref, cn.mbr_words())
    n_ref = max(sum(len(r) for r in refs), 1)
    return {"nce": nce(conf, ok), "ece": ece(conf, ok), "mbr_wer": 100.0 * errs / n_ref,
            "words": len(conf)}


def _normalized(cn):
    from speechlm.core.normalize import normalize_text
    from speechlm.lattice import ConfusionNetwork

    return ConfusionNetwork([[(normalize_text(e.word) or e.word, e.posterior, e.start, e.end)
                              for e in b] for b in cn.bins], utt=cn.utt)


def apply_scale(decode_dir: Path, data_dir: Path, out: Path, scale: float) -> dict:
    """Write OUT (see the module doc); returns its calibration.json."""
    from speechlm.core.normalize import normalize_text
    from speechlm.lattice import ConfusionNetwork, ctm, read_cn_jsonl, write_cn_jsonl

    lats = _lattices(decode_dir)
    raw = {cn.utt: cn for cn in read_cn_jsonl(decode_dir / "cn.jsonl")}
    h = hashlib.sha256(f"{scale}".encode())
    for name in ("cn.jsonl", *COPIED):
        if (decode_dir / name).is_file():
            h.update((decode_dir / name).read_bytes())
    stamp = h.hexdigest()
    if (out / ".done").is_file() and (out / ".done").read_text().strip() == stamp:
        print(f"speechlm calibrate-wcn: {out} already done", file=sys.stderr)
        return json.loads((out / "calibration.json").read_text())
    cns = []
    for utt, cn in raw.items():  # every utterance of the decode, the empty ones kept empty
        lat = lats.get(utt)
        cns.append(ConfusionNetwork.from_lattice(lat, am_scale=scale) if lat is not None
                   else ConfusionNetwork(cn.bins, utt=utt))
    out.mkdir(parents=True, exist_ok=True)
    (out / ".done").unlink(missing_ok=True)
    write_cn_jsonl(out / "cn.jsonl", cns)
    (out / "text.mbr").write_text("".join(f"{cn.utt} {' '.join(cn.mbr_words())}".rstrip() + "\n"
                                          for cn in cns), encoding="utf-8")
    (out / "ctm").write_text("".join(line + "\n" for line in ctm(cns)), encoding="utf-8")
    for name in COPIED:
        if (decode_dir / name).is_file():
            shutil.copyfile(decode_dir / name, out / name)
    refs = _refs(data_dir)
    scored = [u for u in refs if u in raw]
    by_utt = {cn.utt: cn for cn in cns}
    ref_words = [refs[u] for u in scored]
    report = {"am_scale": scale, "decode_dir": str(decode_dir), "utts": len(scored),
              "raw": _scores([_normalized(raw[u]) for u in scored], ref_words),
              "calibrated": _scores([_normalized(by_utt[u]) for u in scored], ref_words),
              "normalize": normalize_text.__module__}
    (out / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / ".done").write_text(stamp + "\n")
    return report


def run(args: argparse.Namespace) -> int:
    from speechlm.core.normalize import normalize_text
    from speechlm.lattice.calibration import tune_am_scale

    try:
        scales = [float(x) for x in args.scales.split()]
    except ValueError:
        raise ValueError(f"--scales: numbers separated by spaces, got {args.scales!r}") from None
    if not scales or any(x <= 0 for x in scales):
        raise ValueError(f"--scales must be positive numbers, got {args.scales!r}")
    lats, refs = [], []
    for decode_dir, data_dir in args.dev:
        lat, ref, _ = _pairs(Path(decode_dir), Path(data_dir))
        lats += lat
        refs += ref
    best, reports = tune_am_scale(lats, refs, scales, normalize=normalize_text)
    print("|am_scale|WCN MBR WER|NCE|ECE|")
    print("|---|---|---|---|")
    for r in reports:
        print(f"|{r.am_scale}|{r.mbr_wer:.1f}|{r.nce:.3f}|{r.ece:.3f}|")
    print(f"best NCE on dev ({len(lats)} utterances) at am_scale {best}")
    table = {"am_scale": best, "dev": [list(d) for d in args.dev], "utts": len(lats),
             "scales": [r.__dict__ for r in reports]}
    report = args.report or (str(Path(args.apply[0][2]).parent / "calibration.json")
                             if args.apply else None)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(table, indent=2) + "\n")
    for decode_dir, data_dir, out in args.apply:
        r = apply_scale(Path(decode_dir), Path(data_dir), Path(out), best)
        print(f"{out}: NCE {r['raw']['nce']:.3f} -> {r['calibrated']['nce']:.3f}, "
              f"ECE {r['raw']['ece']:.3f} -> {r['calibrated']['ece']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm calibrate-wcn", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
