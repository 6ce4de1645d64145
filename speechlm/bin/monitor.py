"""Argos anomaly rules: LLM agents write numpy rules on NAB-form data; run them on serving metrics.

    speechlm monitor train --data DIR --out EXP [--llm smollm2-135m-instruct | --llm-url URL]
    speechlm monitor eval  --data DIR --exp EXP [--classic seasonal]
    speechlm monitor run   --url http://127.0.0.1:8000 --rules RULES_DIR [--interval 5]
                           [--port 9109]

``train`` reads a NAB-form dir (``data/<group>/*.csv`` + ``labels/combined_windows.json``),
splits every series by time (``--train-frac``, default the first half trains), and per
group has the detection agent write a rule from each series' training part that holds
anomalies; broken rules go to the repair agent (``--max-repairs``); the review keeps a
rule only if the group's training F1 does not drop. Every LLM call is logged in
EXP/calls.jsonl; rules land in EXP/rules/<group>/ with their provenance and hash.
``--record FILE`` appends the real answers to a cassette; ``--replay FILE`` answers from
one (no model loaded).

``eval`` scores, on the test part, the classic detectors, the deployed rules and their
OR / AND / weighted aggregation with one classic detector: point-wise, range-based and
point-adjusted F1 (EXP/eval.json, EXP/eval.md).

``run`` scrapes ``speechlm serve``'s ``/metrics`` every ``--interval`` seconds, turns it
into series (request latency, error ratio, queue depth, LLM tokens/s; see
``speechlm.monitor.online``), runs the deployed rules on each series' recent history in
the sandbox and logs an alert when the newest point is flagged; the alerts are served on
``--port`` as ``/v1/alerts`` (JSON) and ``/metrics`` (``speechlm_monitor_alert`` gauges).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="agents write, repair and review rules")
    t.add_argument("--data", required=True, help="NAB-form data dir")
    t.add_argument("--out", required=True, help="experiment dir to write")
    t.add_argument("--llm", default="smollm2-135m-instruct",
                   help="a catalogue LLM or a checkpoint dir (local runtime)")
    t.add_argument("--llm-url", default=None, help="OpenAI-compatible server base URL")
    t.add_argument("--llm-model", default=None, help="the model name on --llm-url")
    t.add_argument("--llm-timeout", type=float, default=600.0,
                   help="seconds per --llm-url request (CPU servers write a rule slowly)")
    t.add_argument("--record", default=None, help="append real answers to this cassette")
    t.add_argument("--replay", default=None, help="answer from this cassette (no model)")
    t.add_argument("--groups", nargs="*", default=None, help="only these groups")
    t.add_argument("--max-repairs", type=int, default=2)
    t.add_argument("--max-chunks", type=int, default=0, help="chunks per group (0: all)")
    t.add_argument("--max-tokens", type=int, default=256)
    t.add_argument("--threads", type=int, default=None, help="torch threads (local LLM)")
    e = sub.add_parser("eval", help="score classic detectors, rules and aggregators")
    e.add_argument("--data", required=True, help="NAB-form data dir")
    e.add_argument("--exp", default=None, help="experiment dir from `train` (none: classic)")
    e.add_argument("--classic", default="seasonal", help="the detector to aggregate with")
    for p in (t, e):
        p.add_argument("--train-frac", type=float, default=0.5)
    r = sub.add_parser("run", help="watch a speechlm serve /metrics and raise alerts")
    r.add_argument("--url", required=True, help="speechlm serve base URL")
    r.add_argument("--rules", required=True, help="a dir with deploy.json and rule files")
    r.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    r.add_argument("--history", type=int, default=360, help="points kept per series")
    r.add_argument("--port", type=int, default=0, help="serve /v1/alerts here (0: off)")
    r.add_argument("--iterations", type=int, default=0, help="stop after N scrapes (0: never)")
    r.add_argument("--record-dir", default=None,
                   help="also append every point to NAB-form CSVs here (to label and train)")


def _client(args, out: Path):
    from speechlm.monitor.calls import LLMClient

    log = out / "calls.jsonl"
    log.unlink(missing_ok=True)
    if args.replay:
        if args.record:
            raise ValueError("give --record or --replay, not both")
        return LLMClient(model=args.llm_url and (args.llm_model or "remote") or args.llm,
                         log_path=log, replay_from=args.replay)
    from speechlm.api import load_llm

    if args.llm_url:
        llm = load_llm(args.llm_url, model=args.llm_model, timeout_s=args.llm_timeout)
        name = args.llm_model or "remote"
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        llm, name = load_llm(args.llm), args.llm
    return LLMClient(llm, model=name, log_path=log, record_to=args.record)


def run(args: argparse.Namespace) -> int:
    if args.action == "train":
        from speechlm.monitor.agents import ArgosConfig
        from speechlm.monitor.pipeline import train

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        config = ArgosConfig(max_repairs=args.max_repairs, max_chunks=args.max_chunks,
                             max_tokens=args.max_tokens)
        summary = train(args.data, out, _client(args, out), config,
                        train_frac=args.train_frac, groups=args.groups,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(summary))
        return 0
    if args.action == "eval":
        from speechlm.monitor.pipeline import evaluate, markdown_table

        results = evaluate(args.data, args.exp, train_frac=args.train_frac,
                           classic=args.classic)
        if args.exp:
            Path(args.exp, "eval.json").write_text(json.dumps(results, indent=1) + "\n")
            Path(args.exp, "eval.md").write_text(markdown_table(results))
        print(markdown_table(results))
        return 0
    from speechlm.monitor.online import Monitor, serve_alerts

    monitor = Monitor(args.url, args.rules, history=args.history, record_dir=args.record_dir,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    server = serve_alerts(monitor, args.port) if args.port else None
    try:
        monitor.loop(args.interval, iterations=args.iterations)
    finally:
        if server is not None:
            server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm monitor", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
