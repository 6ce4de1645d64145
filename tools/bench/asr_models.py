"""Benchmark: the pretrained ASR backends on real speech, one table and one plot.

For each model (a catalogue name) and data set: WER of the 1-best, N-best oracle WER,
WCN oracle WER (the confusion network of the N-best lattice, ``am_scale`` the backend's
``posterior_am_scale``), WER of the WCN's MBR words, real-time factor (wall and CPU time
over audio time), load time and resident memory. Every text is scored after
``speechlm.core.normalize.normalize_text``. Each model runs in its own process pinned to
one CPU with one thread, decoding one utterance at a time, so times and memory are its
own (RSS after loading, and the peak over the run).

Data: (a) ``english_speech_samples``: the PocketSphinx cards and LibriVox samples, the
JFK clip and "go forward" (12 files, 48 s); (b) FSDD speaker ``yweweler`` (not used by
the fsdd recipe), takes 0-9 of each digit (100 files, 8 kHz resampled to 16 kHz);
(c) SLURP sentences (the last ``--slurp`` of ``slurp/devel.jsonl``, 40 by default) spoken
by espeak-ng voices (``slurp_espeak``, the voice rotating over four en-us variants) and by
the Piper voice (``slurp_piper``), clean, synthesized once by the parent process. An ESPnet
model dir (``--espnet DIR``, e.g. ``egs/slurp/slu1/exp/<tag>/model``, with
``--espnet-graph`` for lattices) joins the table as one more model.

    python tools/bench/asr_models.py                  # table + tools/bench/asr_models.png
    python tools/bench/asr_models.py --models whisper-tiny.en --png /tmp/a.png
    python tools/bench/asr_models.py --tune           # posterior_am_scale on FSDD dev
    python tools/bench/asr_models.py --espnet egs/slurp/slu1/exp/asr_espnet/model

``--tune`` decodes takes 10-19 of every digit by the four other FSDD speakers (dev, 400
files; ``--dev-takes`` changes how many) with a Whisper model and, for each scale, builds
the WCNs and reports the MBR WER, the normalised cross entropy (NCE) and the expected
calibration error (ECE) of the MBR words' posteriors as confidences
(``speechlm.lattice.calibration``); the default scale is the best NCE.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIGITS = "zero one two three four five six seven eight nine".split()
MODELS = ["whisper-tiny.en", "whisper-base", "moonshine-tiny-en", "pocketsphinx-en-us"]
SCALES = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0]


# ---------------------------------------------------------------------------- data
def english_samples() -> list[tuple[str, np.ndarray, list[str]]]:
    from speechlm.data.audio import read_audio
    from speechlm.testing.shared_data import shared_data_dir

    root = shared_data_dir("english_speech_samples")
    out = []
    for folder, listing in (("pocketsphinx_cards", "cards.transcription"),
                            ("pocketsphinx_librivox", "transcription")):
        for line in (root / folder / listing).read_text().splitlines():
            words = line.split()
            utt = words[-1].strip("()")
            out.append((utt, read_audio(str(root / folder / f"{utt}.wav")),
                        [w for w in words[:-1] if w not in ("<s>", "</s>")]))
    out.append(("jfk", read_audio(str(root / "whisper_jfk" / "jfk.flac")),
                (root / "whisper_jfk" / "jfk.txt").read_text().split()))
    raw = np.fromfile(root / "pocketsphinx_goforward" / "goforward.raw", dtype="<i2")
    out.append(("goforward", raw.astype(np.float32) / 32768.0,
                (root / "pocketsphinx_goforward" / "goforward.txt").read_text().split()))
    return out


def fsdd(speakers: list[str], takes: range) -> list[tuple[str, np.ndarray, list[str]]]:
    from speechlm.data.audio import read_audio
    from speechlm.testing.shared_data import shared_data_dir

    root = shared_data_dir("fsdd/recordings")
    return [(f"{d}_{spk}_{i}", read_audio(str(root / f"{d}_{spk}_{i}.wav")), [DIGITS[d]])
            for spk in speakers for d in range(10) for i in takes]


SLURP_ESPEAK_VOICES = ["espeak:en-us", "espeak:en-us+m3", "espeak:en-us+f2", "espeak:en-us+m5"]


def synth_slurp(n: int, out: str) -> None:
    """Speak the last ``n`` SLURP devel sentences with espeak-ng and Piper into ``out``
    (an .npz of float32 arrays at 16 kHz, keys ``<set>/<utt>``, and their texts)."""
    from speechlm.data.tts import Synthesizer, parse_voice
    from speechlm.testing.shared_data import shared_data_dir

    lines = (shared_data_dir("slurp") / "devel.jsonl").read_text().splitlines()[-n:]
    sentences = [(str(json.loads(x)["slurp_id"]), json.loads(x)["sentence"]) for x in lines]
    synth = Synthesizer(16000)
    arrays, texts = {}, {}
    for i, (sid, text) in enumerate(sentences):
        for set_name, voice in (("slurp_espeak", SLURP_ESPEAK_VOICES[i % 4]),
                                ("slurp_piper", "piper:joe")):
            key = f"{set_name}/slurp{sid}_{i}"
            arrays[key] = synth.synthesize(text, parse_voice(voice))[0]
            texts[key] = text
    np.savez(out, texts=json.dumps(texts), **arrays)


def slurp_sets(path: str) -> dict[str, list]:
    data = np.load(path)
    texts = json.loads(str(data["texts"]))
    sets: dict[str, list] = {}
    for key, text in texts.items():
        set_name, utt = key.split("/")
        sets.setdefault(set_name, []).append((utt, data[key], text.split()))
    return sets


def datasets() -> dict[str, list]:
    sets = {"english_samples": english_samples(), "fsdd_yweweler": fsdd(["yweweler"],
                                                                        range(10))}
    if os.environ.get("SPEECHLM_BENCH_SLURP"):
        sets.update(slurp_sets(os.environ["SPEECHLM_BENCH_SLURP"]))
    return sets


# -------------------------------------------------------------------------- models
def load_backend(name: str):
    """A backend with ``__call__(samples, utt) -> (hyps, lattice)`` and
    ``posterior_am_scale``."""
    if name.startswith("whisper"):
        from speechlm.asr.whisper_asr import WhisperASR

        # English data: the multilingual model is told the language, not asked to detect it
        return WhisperASR(name, threads=1, language="en")
    if name.startswith("moonshine"):
        from speechlm.asr.moonshine_asr import MoonshineASR

        return MoonshineASR(name)
    if name == "pocketsphinx-en-us":
        from speechlm.asr.pocketsphinx_asr import PocketSphinxASR

        ps = PocketSphinxASR()

        class _Sphinx:  # same call shape as the others; PocketSphinx words are normalised
            posterior_am_scale = ps.posterior_am_scale

            def __call__(self, x, utt):
                return ps(x, 16000, utt=utt)

        return _Sphinx()
    if name.startswith("espnet:"):
        from speechlm.api import load_asr

        model_dir, _, graph = name[len("espnet:"):].partition(",")
        asr = load_asr(model_dir, graph=graph or None)
        recognizer = asr.recognizer

        class _ESPnet:  # the recipe model, through the one Recognizer
            posterior_am_scale = recognizer.am_scale

            def __call__(self, x, utt):
                result = recognizer.recognize([(utt, x)], wcn=False)[0]
                return result.hyps, result.lattice

        return _ESPnet()
    raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)}, espnet:DIR[,GRAPH]")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def decode_all(asr, data) -> tuple[list, float, float]:
    """Decode one at a time: (results, wall seconds, CPU seconds)."""
    out, wall, cpu = [], 0.0, 0.0
    for utt, x, _ in data:
        t0, c0 = time.perf_counter(), time.process_time()
        out.append(asr(x, utt))
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return out, wall, cpu


def metrics(results, data, am_scale: float) -> dict[str, float]:
    from speechlm.core.normalize import normalize_text
    from speechlm.lattice import ConfusionNetwork, cn_oracle, nbest_oracle
    from speechlm.lattice.oracle import edit_distance

    errs = {"wer": 0, "nbest_oracle": 0, "wcn_oracle": 0, "wcn_mbr": 0}
    n_ref, n_hyps = 0, 0
    for (hyps, lat), (_, _, ref) in zip(results, data, strict=True):
        ref = normalize_text(" ".join(ref)).split()
        words = [normalize_text(h.text).split() for h in hyps] or [[]]
        n_ref += len(ref)
        n_hyps += len(hyps)
        errs["wer"] += edit_distance(ref, words[0])
        errs["nbest_oracle"] += nbest_oracle(words, ref)[0]
        if lat is None:
            errs["wcn_oracle"] += edit_distance(ref, words[0])
            errs["wcn_mbr"] += edit_distance(ref, words[0])
            continue
        cn = ConfusionNetwork.from_lattice(lat, am_scale=am_scale)
        errs["wcn_oracle"] += cn_oracle(cn, ref)[0]
        errs["wcn_mbr"] += edit_distance(ref, cn.mbr_words())
    out = {k: 100.0 * v / max(n_ref, 1) for k, v in errs.items()}
    out["mean_nbest"] = n_hyps / max(len(results), 1)
    return out


def child(name: str, out_path: str) -> None:
    """Run one model in this process (pinned to one CPU) and write its numbers as JSON."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import torch

    torch.set_num_threads(1)
    data = datasets()
    base = rss_mb()
    t0 = time.perf_counter()
    asr = load_backend(name)
    row = {"model": name, "load_s": time.perf_counter() - t0, "rss_load_mb": rss_mb(),
           "rss_base_mb": base, "sets": {}}
    for set_name, items in data.items():
        results, wall, cpu = decode_all(asr, items)
        audio = sum(len(x) for _, x, _ in items) / 16000
        row["sets"][set_name] = {**metrics(results, items, asr.posterior_am_scale),
                                 "rtf_wall": wall / audio, "rtf_cpu": cpu / audio,
                                 "audio_s": audio, "utts": len(items)}
    row["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(json.dumps(row))


# --------------------------------------------------------------------------- report
def table(rows: list[dict]) -> str:
    lines = ["|model|data|utts|WER|N-best oracle|WCN oracle|WCN MBR|N-best size|RTF wall|"
             "RTF CPU|load s|RSS MB (load/peak)|",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for s, m in r["sets"].items():
            lines.append(
                f"|{r['model']}|{s}|{m['utts']}|{m['wer']:.1f}|{m['nbest_oracle']:.1f}|"
                f"{m['wcn_oracle']:.1f}|{m['wcn_mbr']:.1f}|{m['mean_nbest']:.1f}|"
                f"{m['rtf_wall']:.3f}|{m['rtf_cpu']:.3f}|{r['load_s']:.1f}|"
                f"{r['rss_load_mb'] - r['rss_base_mb']:.0f}/{r['rss_peak_mb']:.0f}|")
    return "\n".join(lines)


def plot(rows: list[dict], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(rows[0]["sets"])
    fig, axes = plt.subplots(1, len(sets) + 1, figsize=(5 * (len(sets) + 1), 4))
    keys = [("wer", "WER"), ("nbest_oracle", "N-best oracle"), ("wcn_oracle", "WCN oracle")]
    width = 0.8 / len(keys)
    for ax, s in zip(axes, sets, strict=False):
        for j, (k, label) in enumerate(keys):
            ax.bar(np.arange(len(rows)) + j * width, [r["sets"][s][k] for r in rows], width,
                   label=label)
        ax.set_xticks(np.arange(len(rows)) + width, [r["model"] for r in rows],
                      rotation=20, fontsize=8)
        ax.set_ylabel("% of reference words")
        ax.set_title(s)
        ax.legend(fontsize=8)
    ax = axes[-1]
    for r in rows:
        ax.scatter([np.mean([m["rtf_cpu"] for m in r["sets"].values()])],
                   [np.mean([m["wer"] for m in r["sets"].values()])], label=r["model"])
    ax.set_xlabel("RTF (CPU time / audio time, 1 thread)")
    ax.set_ylabel("mean WER over the data sets (%)")
    ax.set_title("speed vs accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# ----------------------------------------------------------------------------- tune
def tune(model: str, takes: int) -> None:
    from speechlm.lattice.calibration import tune_am_scale

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    data = fsdd(["george", "jackson", "lucas", "nicolas"], range(10, 10 + takes))
    asr = load_backend(model)
    results, wall, _ = decode_all(asr, data)
    print(f"{model}: {len(data)} FSDD dev files decoded in {wall:.0f} s")
    best, reports = tune_am_scale([lat for _, lat in results], [ref for _, _, ref in data],
                                  SCALES)
    print("|am_scale|WCN MBR WER|NCE|ECE|")
    print("|---|---|---|---|")
    for r in reports:
        print(f"|{r.am_scale}|{r.mbr_wer:.1f}|{r.nce:.3f}|{r.ece:.3f}|")
    print(f"best NCE at am_scale {best}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    p.add_argument("--png", default=str(Path(__file__).with_suffix(".png")))
    p.add_argument("--json", default=None, help="also write all numbers here")
    p.add_argument("--tune", action="store_true", help="tune posterior_am_scale on FSDD dev")
    p.add_argument("--tune-model", default="whisper-tiny.en")
    p.add_argument("--dev-takes", type=int, default=10)
    p.add_argument("--slurp", type=int, default=40,
                   help="SLURP sentences spoken per voice kind (0: no SLURP sets)")
    p.add_argument("--espnet", default=None, help="also a recipe ESPnet model dir")
    p.add_argument("--espnet-graph", default=None, help="its graph dir (lattices)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.child_out)
    if args.tune:
        return tune(args.tune_model, args.dev_takes)
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    models = args.models.split(",")
    if args.espnet:
        models.append(f"espnet:{args.espnet}" + (f",{args.espnet_graph}"
                                                 if args.espnet_graph else ""))
    with tempfile.TemporaryDirectory() as tmp:
        if args.slurp > 0:
            t0 = time.perf_counter()
            env["SPEECHLM_BENCH_SLURP"] = os.path.join(tmp, "slurp.npz")
            synth_slurp(args.slurp, env["SPEECHLM_BENCH_SLURP"])
            print(f"synthesized {2 * args.slurp} SLURP utterances in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        for name in models:
            out = os.path.join(tmp, f"{name}.json")
            subprocess.run([sys.executable, __file__, "--child", name, "--child-out", out],
                           check=True, env=env)
            rows.append(json.loads(Path(out).read_text()))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    plot(rows, args.png)
    print(f"plot: {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
