"""Benchmark: confusion-network (WCN) construction time per utterance vs lattice size.

Lattices are real kaldi-decoder lattices: random CTC log-probs decoded on the toy CTC
graph of ``speechlm.testing.lattice`` with growing utterance length and lattice beam.
For each lattice we time every stage an utterance goes through: reading the Kaldi text
(I/O), epsilon removal, arc posteriors (OpenFst forward-backward), and the WCN by lattice
MBR, split into its parts (graph arrays, initial best path, forward-backward MBR passes),
then writing the WCN as JSON; ``numpy_passes_ms`` times the numpy MBR pass
(``mbr._acc_stats_numpy``, the reference) on the same hypotheses next to the pass in use
(compiled when numba is installed). The WCN runs on the raw (epsilon) lattice and on the
epsilon-free one (``remove_epsilons(beam=lattice_beam)``).

    OMP_NUM_THREADS=1 python tools/bench/wcn.py    # table + tools/bench/wcn.png
    python tools/bench/wcn.py --frames 25 50 --png /tmp/wcn.png
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from speechlm.lattice import ConfusionNetwork, Lattice
from speechlm.lattice import mbr as mbr_mod
from speechlm.testing.lattice import toy_ctc_decode


def timed(fn, *args, **kw):
    # CPU time of this process: the shared 2-core machine makes wall time noisy, and
    # everything here runs on one thread (OMP_NUM_THREADS=1).
    t = time.process_time()
    out = fn(*args, **kw)
    return out, time.process_time() - t


def mbr_parts(lat: Lattice) -> dict[str, float]:
    """Time the parts of ``mbr_decode``: arrays, best path, each forward-backward pass."""
    g, t_graph = timed(mbr_mod._Graph, lat, 1.0, 1.0)
    wid = {w: i for i, w in enumerate(g.vocab)}
    best, t_best = timed(lat.best_path)
    hyp = [wid[w] for w in best.words]
    t_passes, t_numpy, it = 0.0, 0.0, 0
    while True:
        it += 1
        r = mbr_mod._normalize_eps(hyp)
        (gamma, *_), t = timed(mbr_mod._acc_stats, g, r)
        t_passes += t
        _, t = timed(mbr_mod._acc_stats_numpy, g, r)  # the numpy reference, same r
        t_numpy += t
        top = gamma[1:].argmax(axis=1)
        cur = gamma[1:][np.arange(len(r)), r]
        new = np.where(cur >= gamma[1:][np.arange(len(r)), top], r, top)
        if np.array_equal(new, r) or it >= 100:
            break
        hyp = new.tolist()
    return {"graph": t_graph, "best": t_best, "passes": t_passes, "numpy": t_numpy,
            "iters": it, "Q": len(r)}  # fmt: skip


def run(frames: list[int], beams: list[float], seed: int) -> list[dict]:
    rows = []
    for n_frames in frames:
        for beam in beams:
            d = toy_ctc_decode(n_frames, seed=seed, lattice_beam=beam)
            lat, t_read = timed(
                Lattice.from_kaldi_text, d.raw_text, utt="u", words=d.words, frame_shift=0.04
            )
            lat = lat.connect()
            # Epsilon removal pruned to the decoder's lattice beam: without a beam the
            # time-preserving removal can multiply the arcs (see Lattice.remove_epsilons).
            noeps, t_eps = timed(lat.remove_epsilons, beam=beam)
            for name, L in (("raw", lat), ("noeps", noeps)):
                _, t_post = timed(L.arc_posteriors)
                cn, t_cn = timed(ConfusionNetwork.from_lattice, L)
                _, t_write = timed(lambda c=cn: json.dumps(c.to_json()))
                parts = mbr_parts(L)
                rows.append(
                    {
                        "frames": n_frames,
                        "beam": beam,
                        "lattice": name,
                        "arcs": L.num_arcs,
                        "states": L.num_states,
                        "read": t_read if name == "raw" else 0.0,
                        "rmeps": t_eps if name == "noeps" else 0.0,
                        "post": t_post,
                        "wcn": t_cn,
                        "write": t_write,
                        "bins": len(cn),
                        **parts,
                    }
                )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    p.add_argument("--beams", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", default="tools/bench/wcn.png")
    args = p.parse_args()
    if mbr_mod._mbr_compiled.HAS_NUMBA:  # one-time cost, reported apart
        t = time.perf_counter()
        d = toy_ctc_decode(12, seed=args.seed)
        lat = Lattice.from_kaldi_text(d.raw_text, utt="w", words=d.words, frame_shift=0.04)
        g = mbr_mod._Graph(lat, 1.0, 1.0)
        mbr_mod._mbr_compiled.acc_stats(g, mbr_mod._normalize_eps([1]), mbr_mod.DELTA)
        print(f"one-time: numba import + compile (or disk-cache load) of the MBR pass "
              f"{time.perf_counter() - t:.2f} s wall")  # fmt: skip
    rows = run(args.frames, args.beams, args.seed)
    head = (
        "frames beam lattice   arcs states | read_ms rmeps_ms post_ms | wcn_ms = graph_ms"
        " best_ms passes_ms (iters x Q) | write_ms | numpy_passes_ms"
    )
    print(f"CPU ms per utterance (process time, one thread); compiled MBR pass: "
          f"{mbr_mod._mbr_compiled.HAS_NUMBA}; load average {os.getloadavg()}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['frames']:6d} {r['beam']:4.0f} {r['lattice']:7s} {r['arcs']:6d} "
            f"{r['states']:6d} | {1e3 * r['read']:7.1f} {1e3 * r['rmeps']:8.1f} "
            f"{1e3 * r['post']:7.1f} | {1e3 * r['wcn']:6.1f} = {1e3 * r['graph']:8.1f} "
            f"{1e3 * r['best']:7.1f} {1e3 * r['passes']:9.1f} ({r['iters']} x {r['Q']:3d}) "
            f"| {1e3 * r['write']:8.2f} | {1e3 * r['numpy']:9.1f}"
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, marker in (("raw", "o"), ("noeps", "s")):
        sel = [r for r in rows if r["lattice"] == name]
        ax.loglog(
            [r["arcs"] for r in sel],
            [1e3 * r["wcn"] for r in sel],
            marker,
            label=f"WCN ({name} lattice)",
        )
        ax.loglog(
            [r["arcs"] for r in sel],
            [1e3 * r["post"] for r in sel],
            marker,
            mfc="none",
            label=f"posteriors ({name})",
        )
    ax.set_xlabel("lattice arcs")
    ax.set_ylabel("CPU ms per utterance")
    ax.set_title("WCN (lattice MBR) construction time, 1 CPU thread")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
