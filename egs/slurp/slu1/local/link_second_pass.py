"""Put a second-pass method's output where stage 7 reads the rescoring result.

    python local/link_second_pass.py OUT SYSTEM SET...

OUT is the ``speechlm rescore --method M`` dir (``result.json``, ``hyp-decode_<set>.txt``);
each ``SYSTEM/decode_<set>/rescore_llm/`` gets ``text`` (the method's tuned hypotheses) and
``best.json`` (``setting``: the method and its dev-tuned weight; ``wer``), the files the
default sweep writes there.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(out: str, system: str, sets: list[str]) -> None:
    res = json.loads((Path(out) / "result.json").read_text())
    tuned = (f"llm_scale_{res['llm_scale']:g}" if "llm_scale" in res
             else f"threshold_{res['threshold']:g}")
    for s in sets:
        name = f"decode_{s}"
        row = res["sets"].get(name)
        if row is None:
            raise SystemExit(f"{out}/result.json: no set {name} (sets: {', '.join(res['sets'])})")
        dest = Path(system) / name / "rescore_llm"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(out) / f"hyp-{name}.txt", dest / "text")
        (dest / "best.json").write_text(json.dumps(
            {"setting": f"{res['method']}_{tuned}", "wer": row["wer"], "errors": row["errors"],
             "words": row["words"], "first_pass_wer": row["one_best"],
             "method_dir": str(out)}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
