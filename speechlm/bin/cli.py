"""The ``speechlm`` console command: one subcommand per module in ``speechlm.bin``.

Subcommand modules are imported only when chosen, so ``speechlm --help`` stays fast and a
missing optional dependency of one command does not break the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from speechlm.bin import command_main

# name -> (module, one-line help). The module's docstring is the long help.
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("speechlm.bin.decode",
               "decode a Kaldi data dir with a trained model dir: text + nbest.jsonl"),
    "make-graph": ("speechlm.bin.make_graph",
                   "CTC decoding graph (TLG) from a model dir and training text, for --lattice"),
    "rescore": ("speechlm.bin.rescore",
                "N-best second pass: LLM weight sweep, or --method lm/prompt/tap/GER/MWER; train"),
    "score": ("speechlm.bin.score",
              "WER table (ESPnet/sclite form) of a hyp text against a ref text"),
    "validate-data-dir": ("speechlm.bin.validate_data_dir",
                          "check a Kaldi data dir like Kaldi's validate_data_dir.sh"),
    "compute-fbank": ("speechlm.bin.compute_fbank",
                      "80-dim fbank (Kaldi ark/scp) and global CMVN stats for a data dir"),
    "combine-data-dirs": ("speechlm.bin.combine_data_dirs",
                          "join data dirs into one (Kaldi's combine_data.sh)"),
    "speed-perturb": ("speechlm.bin.speed_perturb",
                      "speed-perturbed copies of a data dir (0.9/1.0/1.1)"),
    "synth-data-dir": ("speechlm.bin.synth_data_dir",
                       "synthesize a Kaldi data dir from text with espeak-ng voices"),
    "train-asr": ("speechlm.bin.train_asr",
                  "train an ESPnet2 ASR model on Kaldi data dirs and export a model dir"),
    "launch": ("speechlm.bin.launch",
               "run JOB=1:N copies of a command locally or on Slurm (Kaldi run.pl style)"),
    "models": ("speechlm.bin.models", "the pretrained model catalogue: list, info NAME, check"),
    "lm": ("speechlm.bin.lm",
           "train the embedded default LM (small Llama + BPE) from a text file"),
    "calibrate-wcn": ("speechlm.bin.calibrate_wcn",
                      "tune the WCN acoustic scale on dev by NCE; rebuild calibrated WCNs"),
    "spoken-qa": ("speechlm.bin.spoken_qa",
                  "extractive spoken QA (questions from slot annotations) over ASR output"),
    "slu": ("speechlm.bin.slu",
            "intent classification (LoRA or in-context) from text, 1-best, N-best, WCN, oracle"),
    "paralin": ("speechlm.bin.paralin",
                "ParalinGPT on dialogue CSVs: sentiment + response, serialized multitask"),
    "speech-llm": ("speechlm.bin.speech_llm",
                   "speech-prefix LLM: train a Whisper-encoder -> LLM-embedding projector"),
    "retrieval": ("speechlm.bin.retrieval",
                  "kNN-LM datastores (text or speech keys, FAISS): build, bench"),
    "slm": ("speechlm.bin.slm",
            "Align-SLM: speech units, unit LM, semantic feedback, DPO rounds, evaluation"),
    "monitor": ("speechlm.bin.monitor",
                "Argos: LLM-written anomaly rules (sandboxed) on NAB-form data and on /metrics"),
    "energy": ("speechlm.bin.energy",
               "Perseus GPU-frequency plan: time-energy frontier, savings"),
    "serve": ("speechlm.bin.serve",
              "HTTP API (/v1/transcribe, /v1/rescore) and Gradio demo on 127.0.0.1"),
}


def _module_doc(module_name: str) -> str:
    module = importlib.import_module(module_name)
    return module.__doc__ or ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechlm",
        description="speechlm: speech recipes, lattices and an LLM second pass.",
        epilog="Run 'speechlm <command> --help' for the options of one command. Every "
               "command takes --debug (full tracebacks); exit codes: 0 ok, 1 bad input, "
               "2 bad usage, 3 a bug.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:  # ``speechlm --debug decode ...``: the command takes it
        argv = [*argv[1:2], "--debug", *argv[2:]]
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"speechlm: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    return command_main(f"speechlm {name}", module.__doc__, module.add_arguments, module.run,
                        rest)


if __name__ == "__main__":
    sys.exit(main())
