"""egs/fsdd/asr1 end to end on a tiny synthetic FSDD-like corpus (integration).

The corpus is made here with espeak-ng voices as "speakers" (FSDD file names, 8 kHz), so
the test needs no shared data and checks the recipe on recordings it has never seen.
It runs every stage with a tiny model, then checks the outputs, a re-run that must be a
no-op, an extra test set given by path, and decoding of bad input.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechlm.data.audio import write_wav
from speechlm.data.tts import EspeakSynthesizer, sample_voices

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "fsdd" / "asr1"
WORDS = "zero one two three four five six seven eight nine".split()


def make_fake_fsdd(root: Path, n_speakers: int = 3, n_takes: int = 6) -> list[str]:
    synth = EspeakSynthesizer(sample_rate=8000)
    speakers = []
    for i, voice in enumerate(sample_voices(n_speakers * n_takes, seed=7)):
        speaker = f"spk{i // n_takes}"
        speakers.append(speaker)
        for digit, word in enumerate(WORDS):
            samples, sr = synth.synthesize(word, voice)
            write_wav(root / "recordings" / f"{digit}_{speaker}_{i % n_takes}.wav", samples, sr)
    return sorted(set(speakers))


def run_recipe(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", "run.sh", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdd")
    fsdd = tmp / "fsdd"
    speakers = make_fake_fsdd(fsdd)
    work = tmp / "asr1"
    shutil.copytree(RECIPE, work, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp"))
    (work / "utils").unlink()
    (work / "utils").symlink_to(REPO / "tools" / "kaldi_utils")
    opts = ["--fsdd", str(fsdd), "--dev_speaker", speakers[0], "--synth_voices", "3",
            "--speed_perturb_factors", "0.9 1.0", "--asr_config",
            "conf/tuning/train_asr_tiny.yaml", "--fbank_config", "conf/fbank.yaml",
            "--whisper_window_s", "5", "--nj", "2"]
    r = run_recipe(work, *opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, opts, r


def test_all_stages_write_their_outputs(recipe):
    work, _, r = recipe
    exp = work / "exp" / "asr_train_asr_tiny"
    for name in ("config.yaml", "model.pth", "feats_stats.npz", "frontend.yaml", "tokens.txt"):
        assert (exp / "model" / name).is_file(), name
    results = (exp / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    for name in ("dev", "test", "test_seen"):
        assert f"|decode_{name}|" in results
        text = (exp / f"decode_{name}" / "text").read_text().splitlines()
        ref = (work / "data" / name / "text").read_text().splitlines()
        assert [line.split()[0] for line in text] == [line.split()[0] for line in ref]
        nbest = [json.loads(line) for line in
                 (exp / f"decode_{name}" / "nbest.jsonl").read_text().splitlines()]
        assert [n["utt"] for n in nbest] == [line.split()[0] for line in ref]
        scores = [h["score"] for h in nbest[0]["hyps"]]
        assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 3
    assert "%WER" in (exp / "decode_test" / "wer").read_text()
    assert "|decode_test|" in r.stdout  # the table is printed at the end


def test_whisper_second_pass(recipe):
    """Stage 8: every set rescored; the weight tuned on dev never makes dev worse than its
    first pass, stage 7's lattice N-best (w = 0, in the grid, ranks as it did)."""
    from speechlm.core.wer import read_kaldi_text, score_texts

    work, _, _ = recipe
    exp = work / "exp" / "asr_train_asr_tiny"
    chosen = json.loads((exp / "whisper_pass" / "chosen.json").read_text())
    assert chosen["tuned_on"] == "dev" and 0 <= chosen["whisper_weight"] <= 1
    assert chosen["first_pass"] == "decode_lattice" and chosen["window_s"] == 5
    assert chosen["prompt"] == "Eight, five, four, nine, one, seven, six, three, two, zero."
    assert chosen["closed_set"] == sorted(WORDS)  # the training text's ten transcripts
    results = (exp / "RESULTS.md").read_text()
    assert "### Whisper second pass (stage 8)" in results
    errors = {}
    for name in ("dev", "test", "test_seen"):
        assert f"|decode_whisper_{name}|" in results
        ref = read_kaldi_text(str(work / "data" / name / "text"))
        for kind in ("decode_lattice", "decode_whisper"):
            hyp = read_kaldi_text(str(exp / f"{kind}_{name}" / "text"))
            assert list(hyp) == list(ref)
            errors[kind, name] = score_texts(ref, hyp).errors
        scored = (exp / "whisper_pass" / name / "scores.jsonl").read_text().splitlines()
        assert len(scored) == len(ref)
    assert errors["decode_whisper", "dev"] <= errors["decode_lattice", "dev"]


def test_lattice_stage(recipe):
    work, _, _ = recipe
    exp = work / "exp" / "asr_train_asr_tiny"
    assert (exp / "graph" / "TLG.fst").is_file()
    assert "### Lattices" in (exp / "RESULTS.md").read_text()
    for name in ("dev", "test", "test_seen"):
        out = exp / f"decode_lattice_{name}"
        for f in ("text", "nbest.jsonl", "cn.jsonl", "ctm", "text.mbr", "oracle_wer"):
            assert (out / f).is_file(), (name, f)
        assert list((out / "lat").glob("lat.*.gz"))
        rows = [json.loads(line) for line in (out / "oracle.jsonl").read_text().splitlines()]
        ref = (work / "data" / name / "text").read_text().splitlines()
        assert len(rows) == len(ref)
        for key in ("lattice", "nbest", "1best"):
            assert sum(r[key] for r in rows) >= 0
        # oracle WER(lattice) <= oracle WER(N-best) <= 1-best WER, utterance by utterance
        assert all(r["lattice"] <= r["nbest"] <= r["1best"] for r in rows)
        for line in (out / "cn.jsonl").read_text().splitlines():
            for b in json.loads(line)["bins"]:
                assert abs(sum(e["posterior"] for e in b) - 1) < 1e-4


def test_rerun_is_a_no_op(recipe):
    work, opts, _ = recipe
    model = work / "exp" / "asr_train_asr_tiny" / "model" / "model.pth"
    before = model.stat().st_mtime_ns
    r = run_recipe(work, *opts, "--stage", "1", "--stop_stage", "6")
    assert r.returncode == 0, r.stderr[-3000:]
    assert model.stat().st_mtime_ns == before
    assert "already done" in r.stderr


def test_extra_test_set_by_path_and_bad_input(recipe, tmp_path):
    work, opts, _ = recipe
    extra = tmp_path / "held_out"
    shutil.copytree(work / "data" / "test", extra)
    r = run_recipe(work, *opts, "--stage", "6", "--test_sets", str(extra))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "|decode_held_out|" in r.stdout

    # A hand-made dir with only wav.scp and text decodes (one speaker per utterance),
    # and the user's dir is left as it was.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("wav.scp", "text"):
        shutil.copyfile(extra / name, bare / name)
    model = str(work / "exp" / "asr_train_asr_tiny" / "model")
    d = subprocess.run([sys.executable, "-m", "speechlm.bin.decode", "--model-dir", model,
                        "--data-dir", str(bare), "--out", str(tmp_path / "bare_out")],
                       capture_output=True, text=True)
    assert d.returncode == 0, d.stderr[-2000:]
    assert "one speaker per utterance" in d.stderr
    hyps = (tmp_path / "bare_out" / "text").read_text().splitlines()
    refs = (extra / "text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == [r.split()[0] for r in refs]
    assert sorted(p.name for p in bare.iterdir()) == ["text", "wav.scp"]

    # A WAV that vanished: one clear error naming the file and utterance, before decoding.
    broken = tmp_path / "broken"
    shutil.copytree(extra, broken)
    lines = (broken / "wav.scp").read_text().splitlines()
    first = lines[0].split()
    lines[0] = f"{first[0]} {tmp_path / 'missing.wav'}"
    (broken / "wav.scp").write_text("\n".join(lines) + "\n")
    d = subprocess.run([sys.executable, "-m", "speechlm.bin.decode", "--model-dir", model,
                        "--data-dir", str(broken), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert d.returncode != 0
    assert "missing.wav" in d.stderr and first[0] in d.stderr
    assert not (tmp_path / "out" / "text").exists()


def test_speaker_cmn_travels_with_the_model(recipe, monkeypatch):
    """The recipe normalises per speaker (cmn=speaker): the model dir says so, dev used the
    training prior, and `speechlm decode` scores each utterance on features normalised by
    its speaker's mean over the whole set (not by its own mean)."""
    import kaldiio
    import numpy as np
    import yaml

    from speechlm.asr.espnet_asr import EspnetASR
    from speechlm.data.kaldi_dir import read_data_dir

    work, _, _ = recipe
    monkeypatch.chdir(work)  # feats.scp paths are relative to the recipe dir
    exp = work / "exp" / "asr_train_asr_tiny"
    frontend = yaml.safe_load((exp / "model" / "frontend.yaml").read_text())
    assert frontend["cmn"]["type"] == "speaker" and len(frontend["cmn"]["prior_mean"]) == 80
    train_dumps = [p for p in (work / "dump").iterdir() if p.name.startswith("train")]
    assert (work / "dump" / "dev" / "cmn.yaml").read_text() == \
        (train_dumps[0] / "cmn.yaml").read_text()

    opts = yaml.safe_load((work / "conf" / "decode.yaml").read_text())  # as stage 6 decoded
    asr = EspnetASR(exp / "model", beam_size=opts["beam"], ctc_weight=opts["ctc_weight"],
                    nbest=opts["nbest"])
    raw = dict(kaldiio.load_scp(str(exp / "decode_test" / "feats" / "feats.1.scp")))
    utt2spk = read_data_dir(work / "data" / "test").utt2spk
    means = asr.cmn.with_set_prior(raw.items()).speaker_means(raw.items(), utt2spk)
    decoded = {json.loads(line)["utt"]: json.loads(line)["hyps"][0] for line in
               (exp / "decode_test" / "nbest.jsonl").read_text().splitlines()}
    for utt in sorted(raw)[:5]:
        by_speaker = asr.decode_features(asr.normalize(raw[utt], means[utt2spk[utt]]))[0]
        assert abs(by_speaker.score - decoded[utt]["score"]) < 1e-3, utt
        assert by_speaker.text == decoded[utt]["text"]
    # one utterance on its own (the API's case) is normalised by its own blended mean
    utt = sorted(raw)[0]
    alone = asr.normalize(raw[utt])
    assert not np.allclose(alone, asr.normalize(raw[utt], means[utt2spk[utt]]))


def test_two_process_ddp_training_on_the_cpu(recipe, tmp_path):
    """train-asr --cpu-procs 2: ESPnet's trainer joins two processes over gloo (DDP)."""
    work, _, _ = recipe
    exp = tmp_path / "exp_ddp"
    config = tmp_path / "train_ddp.yaml"
    conf = (work / "conf" / "tuning" / "train_asr_tiny.yaml").read_text()
    config.write_text(conf.replace("max_epoch: 2", "max_epoch: 1"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "speechlm.bin.train_asr", "--train-data", "data/dev",
         "--train-feats", "dump/dev", "--valid-data", "data/dev", "--valid-feats", "dump/dev",
         "--config", str(config), "--fbank-config", "conf/fbank.yaml", "--exp", str(exp),
         "--cmvn", str(next(work.glob("dump/*/cmvn.npz"))), "--cpu-procs", "2"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900)
    log = (exp / "train.log").read_text() if (exp / "train.log").is_file() else ""
    assert r.returncode == 0, r.stderr[-2000:] + log[-3000:]
    assert "gloo" in (exp / "run.sh").read_text()
    assert ":0/2]" in log, log[-3000:]  # ESPnet logs "[host:rank/world]" from rank 0
    assert (exp / "model" / "model.pth").is_file()
