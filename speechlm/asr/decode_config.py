"""One frozen ``DecodeConfig``: every setting of decoding, with one name each.

The dataclass is the single source of truth: its field names are the YAML keys of a recipe's
``conf/decode*.yaml`` and the flags of ``speechlm decode`` (``--ctc-weight`` and
``--ctc_weight`` both set ``ctc_weight``), its defaults and help texts are written once here.
Unknown YAML keys are errors naming the file. The resolved config is written beside every
decode's outputs (``OUT/decode_config.yaml``) and a finished job's stamp is its fingerprint.

>>> c = DecodeConfig(backend="pocketsphinx", lattice=True, nbest=3)
>>> c.to_dict()["nbest"], c.backend
(3, 'pocketsphinx')
>>> DecodeConfig.from_dict({"beam": 4, "nbest": 3}, model="exp/m").beam
4
>>> DecodeConfig.from_dict({"beem": 4})
Traceback (most recent call last):
...
ValueError: decode config: unknown key(s) beem; known: backend, model, graph, lattice, ...
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("espnet", "pocketsphinx", "whisper", "moonshine", "speech-llm")


def _opt(default: Any, help: str, *, group: str = "", aliases: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help, "group": group, "aliases": aliases})


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode: the backend, its model and every search setting.

    ``None`` means "the model's own default" (a model dir's ``decode.yaml``, then the
    backend's defaults), so that a config written by hand lists only what it changes.
    """

    backend: str = _opt("espnet", "ASR backend: " + ", ".join(BACKENDS))
    model: str | None = _opt(None, "the model: a model dir from `speechlm train-asr` "
                             "(espnet); a catalogue name (`speechlm models`) or a CTranslate2 "
                             "/ Moonshine dir (whisper, default whisper-tiny.en; moonshine, "
                             "default moonshine-tiny-en)", aliases=("--model-dir",))
    graph: str | None = _opt(None, "decoding graph dir from `speechlm make-graph` (espnet "
                             "with --lattice)", group="lattice")
    lattice: bool = _opt(False, "decode through a lattice; also write lat/, cn.jsonl, ctm, "
                         "oracle_wer")
    nbest: int = _opt(1, "hypotheses kept per utterance")
    beam: int | None = _opt(None, "beam size of the beam search (model dir default, else 10)")
    ctc_weight: float | None = _opt(None, "CTC weight in joint CTC/attention scoring")
    penalty: float | None = _opt(None, "insertion penalty")
    search_beam: float | None = _opt(None, "lattice decoder beam, natural-log units "
                                     "(default 16)", group="lattice")
    lattice_beam: float | None = _opt(None, "keep lattice arcs within this score of the best "
                                      "(default 8)", group="lattice")
    lm_scale: float | None = _opt(None, "graph (n-gram) weight against acoustics in the "
                                  "search (default 1)", group="lattice")
    lm_weight: float | None = _opt(None, "n-gram weight in the attention rescoring "
                                   "(default 0)", group="lattice")
    rescore_nbest: int | None = _opt(None, "lattice paths rescored by the attention decoder "
                                     "(default max(10, nbest))", group="lattice")
    ps_hmm: str | None = _opt(None, "acoustic model dir (default: en-us)", group="pocketsphinx")
    ps_lm: str | None = _opt(None, "ARPA or binary LM (default: en-us)", group="pocketsphinx")
    ps_dict: str | None = _opt(None, "pronunciation dictionary (default: cmudict)",
                               group="pocketsphinx")
    ps_jsgf: str | None = _opt(None, "JSGF grammar instead of an n-gram", group="pocketsphinx")
    ps_lw: float | None = _opt(None, "LM weight (default 6.5)", group="pocketsphinx")
    batch_size: int = _opt(1, "utterances decoded together (padded batches where the backend "
                           "batches; one at a time otherwise)")
    device: str = _opt("cpu", "torch device of the network")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"decode config: backend must be one of {', '.join(BACKENDS)}, "
                             f"got {self.backend!r}")
        if self.nbest < 1:
            raise ValueError(f"decode config: nbest must be >= 1, got {self.nbest}")
        if self.batch_size < 1:
            raise ValueError(f"decode config: batch_size must be >= 1, got {self.batch_size}")
        if self.beam is not None and self.beam < 1:
            raise ValueError(f"decode config: beam must be >= 1, got {self.beam}")
        ps_set = [f.name for f in dataclasses.fields(self)
                  if f.name.startswith("ps_") and getattr(self, f.name) is not None]
        if self.backend == "espnet":
            if not self.model:
                raise ValueError("decode config: the espnet backend needs a model "
                                 "(--model-dir, a model dir from speechlm train-asr)")
            if self.lattice and not self.graph:
                raise ValueError("decode config: --lattice with the espnet backend needs a "
                                 "graph (--graph, a dir from speechlm make-graph)")
            if ps_set:
                raise ValueError(f"decode config: {', '.join(ps_set)} are options of the "
                                 "pocketsphinx backend")
        elif self.backend == "pocketsphinx" and (self.model or self.graph):
            raise ValueError("decode config: model and graph are for the espnet backend; "
                             "pocketsphinx takes ps_hmm/ps_lm/ps_dict/ps_jsgf/ps_lw")
        elif self.backend == "speech-llm":
            if not self.model:
                raise ValueError("decode config: the speech-llm backend needs a model "
                                 "(--model-dir, a dir from speechlm speech-llm train)")
            if self.lattice or self.nbest > 1 or self.graph or ps_set:
                raise ValueError("decode config: the speech-llm backend gives a greedy 1-best "
                                 "(no lattice, nbest 1, no graph or ps_* options)")
        elif self.backend in ("whisper", "moonshine"):
            espnet_only = [k for k in ("graph", "ctc_weight", "penalty", "search_beam",
                                       "lattice_beam", "lm_scale", "lm_weight", "rescore_nbest")
                           if getattr(self, k) is not None]
            if espnet_only or ps_set:
                raise ValueError(f"decode config: {', '.join(espnet_only + ps_set)} are not "
                                 f"options of the {self.backend} backend (it takes model, "
                                 "nbest, beam, batch_size, device; its lattice comes from "
                                 "its N-best)")
            if self.backend == "moonshine" and self.nbest > 1:
                raise ValueError("decode config: the moonshine backend gives a 1-best only; "
                                 f"nbest must be 1, got {self.nbest}")

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "decode config", **overrides: Any
                  ) -> DecodeConfig:
        """A config from ``values`` (e.g. a YAML file's), then ``overrides`` not None."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(cls.keys())}")
        merged = {**values, **{k: v for k, v in overrides.items() if v is not None}}
        for f in dataclasses.fields(cls):  # YAML gives ints for floats and strings for paths
            if f.name in merged and merged[f.name] is not None:
                merged[f.name] = _coerce(f, merged[f.name], source)
        return cls(**merged)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, **overrides: Any) -> DecodeConfig:
        """A recipe's YAML (None: defaults only), then ``overrides`` not None."""
        values: dict = {}
        if path is not None:
            import yaml

            try:
                with open(path, encoding="utf-8") as f:
                    values = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from None
            if not isinstance(values, dict):
                raise ValueError(f"{path}: a decode config is a mapping of key: value")
        return cls.from_dict(values, source=str(path or "decode config"), **overrides)

    def replace(self, **changes: Any) -> DecodeConfig:
        return dataclasses.replace(self, **changes)

    def with_model_defaults(self) -> DecodeConfig:
        """Settings left None taken from the model dir's ``decode.yaml`` (the config the
        recipe decoded with, exported by ``speechlm train-asr --decode-config``): what the
        command line and ``--config`` set wins, the model's defaults come next."""
        if self.backend not in ("espnet", "speech-llm") or not self.model:
            return self
        path = Path(self.model) / "decode.yaml"
        if not path.is_file():
            return self
        values = model_defaults(path)
        return self.replace(**{k: v for k, v in values.items() if getattr(self, k) is None})

    # ---- output ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write_yaml(self, path: str | os.PathLike) -> None:
        """The resolved config (every key, None included), written atomically."""
        import yaml

        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text("# resolved by speechlm decode (speechlm.asr.decode_config)\n"
                       + yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)

    def fingerprint(self) -> str:
        """What makes a decode's output reusable: every setting plus the content of the
        files it names (model weights, graph, PocketSphinx models)."""
        from speechlm.core.hashing import dir_digest, file_sha256

        parts = [json.dumps(self.to_dict(), sort_keys=True)]
        for name in ("model", "graph", "ps_hmm", "ps_lm", "ps_dict", "ps_jsgf"):
            value = getattr(self, name)
            if value is None:
                continue
            p = Path(value)
            if p.is_file():
                parts.append(file_sha256(p))
            elif p.is_dir():
                weights = p / "model.pth"
                parts.append(file_sha256(weights) if name == "model" and weights.is_file()
                             else dir_digest(p))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# What a model dir's decode.yaml may set (``nbest``, kept there for the record, is the
# caller's choice); ``beam_size`` is the older name of ``beam``.
MODEL_DEFAULT_KEYS = ("beam", "ctc_weight", "penalty", "search_beam", "lattice_beam",
                      "lm_scale", "lm_weight", "rescore_nbest")


def model_defaults(path: str | os.PathLike) -> dict:
    """The settings of a model dir's ``decode.yaml``, checked (errors name the file)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a decode config is a mapping of key: value")
    if "beam_size" in values:
        values["beam"] = values.pop("beam_size")
    unknown = sorted(set(values) - {*MODEL_DEFAULT_KEYS, "nbest"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; a model dir's "
                         f"decode.yaml may set {', '.join(MODEL_DEFAULT_KEYS)}, nbest")
    fields = {f.name: f for f in dataclasses.fields(DecodeConfig)}
    return {k: _coerce(fields[k], v, str(path)) for k, v in values.items()
            if k in MODEL_DEFAULT_KEYS and v is not None}


def _coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind.startswith("int"):
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {f.name} must be {kind.split(' ')[0]}, got "
                         f"{value!r}") from None
    return value


# ---- command line -------------------------------------------------------------------
def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field (``--search-beam``, also ``--search_beam``), default None, so
    that :func:`config_from_args` can tell what the command line set."""
    groups: dict[str, Any] = {"": parser}
    for f in dataclasses.fields(DecodeConfig):
        group = f.metadata["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(f"{group} options")
        flags = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name:
            flags.append(f"--{f.name}")
        flags += list(f.metadata["aliases"])
        kind = f.type if isinstance(f.type, str) else str(f.type)
        kwargs: dict[str, Any] = {"dest": f.name, "default": None,
                                  "help": f"{f.metadata['help']} [config key {f.name}]"}
        if kind.startswith("bool"):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = (int if kind.startswith("int") else
                              float if kind.startswith("float") else str)
            if f.name == "backend":
                kwargs["choices"] = BACKENDS
        groups[group].add_argument(*flags, **kwargs)
    parser.add_argument("--config", default=None,
                        help="YAML of decode settings (keys as the flags, with _); flags "
                             "given on the command line win")


def config_from_args(args: argparse.Namespace) -> DecodeConfig:
    """``--config`` YAML, then every flag the command line set."""
    return DecodeConfig.from_yaml(args.config, **{k: getattr(args, k, None)
                                                  for k in DecodeConfig.keys()}
                                  ).with_model_defaults()
