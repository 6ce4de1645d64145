"""What ``speechlm decode`` writes per job and how job outputs are merged.

Per job (OUT/splitN/J/): ``text``, ``nbest.jsonl`` and, with lattices, ``lat.gz`` (Kaldi
text lattices, words as strings), ``cn.jsonl``, ``text.mbr``, ``ctm`` and ``oracle.jsonl``
(per-utterance error counts of the 1-best, MBR, lattice, N-best and WCN oracles). Files are
written under ``.tmp`` names and renamed when the job finishes, so a killed job leaves
nothing that looks finished.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from speechlm.core.nbest_jsonl import nbest_line
from speechlm.core.wer import ErrorStats
from speechlm.data.kaldi_dir import c_sorted

LINE_FILES = ("text", "nbest.jsonl")
LATTICE_LINE_FILES = ("cn.jsonl", "text.mbr", "oracle.jsonl")
ORACLE_KINDS = ("1best", "mbr", "lattice", "nbest", "wcn")


def _edit_errors(ref: list[str], hyp: list[str]) -> int:
    stats = ErrorStats()
    stats.add(ref, hyp)
    return stats.errors


class JobWriter:
    """Writes one job's outputs, utterance by utterance.

    Args:
        job_dir: OUT/splitN/J.
        lattice: also write lattices, confusion networks, CTM and oracle counts.
        refs: utterance -> reference text, for oracle counts (may be empty).

    Results come from ``speechlm.asr.Recognizer`` with their confusion networks built.
    """

    def __init__(self, job_dir: Path, *, lattice: bool, refs: dict[str, str]) -> None:
        self.job_dir = Path(job_dir)
        self.lattice = lattice
        self.refs = refs
        names = LINE_FILES + (LATTICE_LINE_FILES + ("ctm",) if lattice else ())
        self._paths = {n: self.job_dir / n for n in names}
        self._files: dict = {}
        self._lattices: list = []

    def __enter__(self) -> JobWriter:
        for name, path in self._paths.items():
            self._files[name] = open(path.with_name(path.name + ".tmp"), "w", encoding="utf-8")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for f in self._files.values():
            f.close()
        if exc_type is not None:
            return
        if self.lattice:
            from speechlm.lattice import write_kaldi_lattices

            tmp = self.job_dir / "lat.tmp.gz"  # the .gz suffix makes the writer compress
            write_kaldi_lattices(tmp, self._lattices)
            os.replace(tmp, self.job_dir / "lat.gz")
        for path in self._paths.values():
            os.replace(path.with_name(path.name + ".tmp"), path)

    def add(self, result) -> None:
        """Write one ``speechlm.asr.recognizer.Result``."""
        utt, hyps, lattice, cn = result.utt, result.hyps, result.lattice, result.cn
        best = result.text
        self._files["text"].write(f"{utt} {best}".rstrip() + "\n")
        self._files["nbest.jsonl"].write(nbest_line(utt, hyps) + "\n")
        if not self.lattice:
            return
        from speechlm.lattice.confusion_network import ConfusionNetwork
        from speechlm.lattice.oracle import cn_oracle, lattice_oracle

        if lattice is not None:
            self._lattices.append(lattice)
            if cn is None:
                raise ValueError(f"utterance {utt!r}: a lattice without its confusion network")
            mbr = list(cn.mbr_words())
            self._files["ctm"].writelines(line + "\n" for line in cn.ctm_lines())
        else:  # no features, or no path: an empty network
            mbr = []
        written = ConfusionNetwork(cn.bins if cn is not None else [], utt=utt)
        self._files["cn.jsonl"].write(written.to_json_line() + "\n")
        self._files["text.mbr"].write(f"{utt} {' '.join(mbr)}".rstrip() + "\n")
        if utt in self.refs:
            ref = self.refs[utt].split()
            counts = {"1best": _edit_errors(ref, best.split()),
                      "mbr": _edit_errors(ref, mbr),
                      "nbest": min([_edit_errors(ref, h.text.split()) for h in hyps]
                                   or [len(ref)])}
            oracle_words = best.split()
            if lattice is not None:
                counts["lattice"], _, oracle_words = lattice_oracle(lattice, ref)
                counts["wcn"] = cn_oracle(cn, ref)[0]
            else:
                counts["lattice"] = counts["wcn"] = len(ref)
            # the lattice path closest to the reference: the "oracle hypothesis" input of SLU
            self._files["oracle.jsonl"].write(json.dumps(
                {"utt": utt, "ref_words": len(ref), **counts,
                 "oracle_text": " ".join(oracle_words)}, ensure_ascii=False) + "\n")


def _merge_lines(out: Path, job_dirs: list[Path], name: str) -> None:
    rows: dict[str, str] = {}
    for job_dir in job_dirs:
        with open(job_dir / name, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                key = json.loads(line)["utt"] if name.endswith(".jsonl") else line.split()[0]
                rows[key] = line
    tmp = out / f"{name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(rows[u] for u in c_sorted(rows))
    os.replace(tmp, out / name)


def merge_job_outputs(out: Path, job_dirs: list[Path], *, lattice: bool) -> None:
    """Join job outputs into OUT/ (sorted by utterance); with lattices also OUT/lat/,
    OUT/ctm and the OUT/oracle_wer summary."""
    for name in LINE_FILES:
        _merge_lines(out, job_dirs, name)
    if not lattice:
        return
    if not all((d / "lat.gz").is_file() for d in job_dirs):
        raise RuntimeError(f"{out}: decode jobs finished without lattices; rerun with "
                           "--lattice (job outputs are reused only for the same options)")
    for name in LATTICE_LINE_FILES:
        _merge_lines(out, job_dirs, name)
    write_lattice_dir(out / "lat", [job_dir / "lat.gz" for job_dir in job_dirs])
    ctm: list[tuple[str, float, str]] = []
    for job_dir in job_dirs:
        with open(job_dir / "ctm", encoding="utf-8") as f:
            ctm += [(line.split()[0], float(line.split()[2]), line) for line in f if line.strip()]
    order = {u: i for i, u in enumerate(c_sorted({u for u, _, _ in ctm}))}
    ctm.sort(key=lambda r: (order[r[0]], r[1]))
    (out / "ctm.tmp").write_text("".join(line for _, _, line in ctm), encoding="utf-8")
    os.replace(out / "ctm.tmp", out / "ctm")
    write_oracle_summary(out)


def write_lattice_dir(lat_dir: Path, job_lattices: list[Path]) -> None:
    """OUT/lat/ as Kaldi keeps it: ``lat.N.gz`` (text CompactLattice, integer word ids)
    plus ``words.txt`` (``<eps>`` = 0, then the words of every job, sorted), so Kaldi's
    binaries and ``read_kaldi_lattices(path, words=lat/words.txt)`` read them."""
    from speechlm.core.hypothesis import EPS
    from speechlm.lattice import read_kaldi_lattices, write_kaldi_lattices

    per_job = [list(read_kaldi_lattices(p)) for p in job_lattices]
    vocab = sorted({a.word for lats in per_job for lat in lats for a in lat.arcs} - {EPS})
    table = {EPS: 0, **{w: i for i, w in enumerate(vocab, start=1)}}
    lat_dir.mkdir(exist_ok=True)
    tmp = lat_dir / f"words.txt.tmp{os.getpid()}"
    tmp.write_text("".join(f"{w} {i}\n" for w, i in table.items()), encoding="utf-8")
    os.replace(tmp, lat_dir / "words.txt")
    for n, lats in enumerate(per_job, start=1):
        tmp = lat_dir / f"lat.{n}.tmp{os.getpid()}.gz"  # .gz: the writer compresses
        write_kaldi_lattices(tmp, lats, words=table)
        os.replace(tmp, lat_dir / f"lat.{n}.gz")


def write_oracle_summary(out: Path) -> dict[str, float] | None:
    """OUT/oracle_wer from OUT/oracle.jsonl: one ``%WER`` line per kind; None without refs."""
    totals = dict.fromkeys(ORACLE_KINDS, 0)
    words = utts = 0
    with open(out / "oracle.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            utts += 1
            words += row["ref_words"]
            for kind in ORACLE_KINDS:
                totals[kind] += row[kind]
    if utts == 0:
        (out / "oracle_wer").write_text("no reference text: no oracle WER\n")
        return None
    wers = {k: 100.0 * v / max(words, 1) for k, v in totals.items()}
    names = {"1best": "1-best", "mbr": "MBR (WCN consensus)", "lattice": "lattice oracle",
             "nbest": "N-best oracle", "wcn": "WCN oracle"}
    (out / "oracle_wer").write_text("".join(
        f"%WER {wers[k]:.2f} [ {totals[k]} / {words}, {utts} utts ] {names[k]}\n"
        for k in ORACLE_KINDS))
    return wers

