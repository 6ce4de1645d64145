import kaldiio
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as tkaldi

from speechlm.data import features
from speechlm.data.features import (
    FbankConfig,
    GlobalCMVN,
    compute_fbank,
    compute_feats_for_data_dir,
    merge_feats_jobs,
    split_utterances,
)
from speechlm.data.kaldi_dir import read_data_dir
from speechlm.testing import make_data_dir, tone


def test_config_validation_and_dict_round_trip():
    c = FbankConfig(num_mel_bins=40, dither=1.0)
    assert FbankConfig.from_dict(c.to_dict()) == c
    for bad in ({"num_mel_bins": 0}, {"frame_shift_ms": 30.0}, {"window_type": "kaiser"},
                {"high_freq": 9000.0}, {"dither": -1.0}, {"sample_rate": 0}):
        with pytest.raises(ValueError, match="FbankConfig"):
            FbankConfig(**bad)
    with pytest.raises(ValueError, match="unknown option"):
        FbankConfig.from_dict({"num_mel_bin": 80})


def test_fbank_shape_and_short_input():
    x = tone(1.0, 16000, 440.0)
    f = compute_fbank(x, FbankConfig())
    assert f.shape == (1 + (16000 - 400) // 160, 80) and f.dtype == np.float32
    assert compute_fbank(x[:300], FbankConfig()).shape == (0, 80)
    # A 440 Hz tone puts its energy in a low mel bin.
    assert 5 < int(np.argmax(f.mean(axis=0))) < 25


@pytest.mark.parametrize("config", [FbankConfig(), FbankConfig(sample_rate=8000, num_mel_bins=40,
                                    window_type="hamming", snip_edges=False)],
                         ids=["default", "8k_hamming_nosnip"])
def test_kaldi_native_fbank_matches_torchaudio(config):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(config.sample_rate // 2)).astype(np.float32)
    ours = compute_fbank(x, config)
    ref = tkaldi.fbank(torch.from_numpy(x * 32768)[None], num_mel_bins=config.num_mel_bins,
                       sample_frequency=config.sample_rate, dither=0.0, energy_floor=0.0,
                       window_type=config.window_type, snip_edges=config.snip_edges).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=5e-3)


def test_cmvn_normalises_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    mats = [rng.normal(5.0, 3.0, size=(n, 4)) for n in (50, 70, 30)]
    cmvn = GlobalCMVN()
    for m in mats:
        cmvn.accumulate(m)
    out = cmvn.apply(np.concatenate(mats))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)
    cmvn.save(tmp_path / "feats_stats.npz")
    with np.load(tmp_path / "feats_stats.npz") as z:
        assert sorted(z.files) == ["count", "sum", "sum_square"] and int(z["count"]) == 150
    back = GlobalCMVN.load(tmp_path / "feats_stats.npz")
    np.testing.assert_allclose(back.apply(mats[0]), cmvn.apply(mats[0]))
    # A constant dimension does not blow up: variance is floored.
    const = GlobalCMVN()
    const.accumulate(np.ones((10, 2)))
    assert np.isfinite(const.apply(np.ones((3, 2)))).all()


def test_cmvn_readable_by_espnet(tmp_path):
    global_mvn = pytest.importorskip("espnet2.layers.global_mvn")
    rng = np.random.default_rng(2)
    m = rng.normal(2.0, 4.0, size=(40, 6)).astype(np.float32)
    cmvn = GlobalCMVN()
    cmvn.accumulate(m)
    cmvn.save(tmp_path / "feats_stats.npz")
    mvn = global_mvn.GlobalMVN(stats_file=str(tmp_path / "feats_stats.npz"))
    theirs, _ = mvn(torch.from_numpy(m.copy())[None])
    np.testing.assert_allclose(theirs[0].numpy(), cmvn.apply(m), atol=1e-5)


def test_split_utterances_like_split_scp():
    utts = [f"u{i}" for i in range(10)]
    parts = [split_utterances(utts, 3, j) for j in (1, 2, 3)]
    assert parts == [utts[:4], utts[4:7], utts[7:]]
    assert split_utterances(utts[:1], 2, 2) == []
    with pytest.raises(ValueError):
        split_utterances(utts, 3, 0)


def run_jobs(data_dir, out, nj, **kw):
    for job in range(1, nj + 1):
        compute_feats_for_data_dir(data_dir, out, nj=nj, job=job, progress=False, **kw)
    merge_feats_jobs(out, nj)


def test_jobs_and_merge_match_direct_computation(tmp_path):
    src = make_data_dir(tmp_path / "data", 5, segments=True)
    run_jobs(src, tmp_path / "fbank", 2)
    d = read_data_dir(src)
    feats = dict(kaldiio.load_scp(str(tmp_path / "fbank" / "feats.scp")))
    assert list(feats) == d.utterances
    n_frames = dict(line.split() for line in (tmp_path / "fbank" / "utt2num_frames").open())
    for utt, (_, start, end) in d.segments.items():
        expected = compute_fbank(tone(end - start, 16000, None), FbankConfig())
        assert feats[utt].shape == expected.shape and int(n_frames[utt]) == len(expected)
    assert sorted(p.name for p in (tmp_path / "fbank").glob("*.tmp")) == []


def test_merge_refuses_unfinished_jobs(tmp_path):
    src = make_data_dir(tmp_path / "data", 4)
    compute_feats_for_data_dir(src, tmp_path / "fbank", nj=2, job=1, progress=False)
    with pytest.raises(FileNotFoundError, match=r"job\(s\) \[2\] of 2"):
        merge_feats_jobs(tmp_path / "fbank", 2)


def test_finished_job_is_skipped(tmp_path, monkeypatch):
    src = make_data_dir(tmp_path / "data", 3)
    run_jobs(src, tmp_path / "fbank", 1)
    monkeypatch.setattr(features, "compute_fbank", lambda *a, **k: pytest.fail("recomputed"))
    run_jobs(src, tmp_path / "fbank", 1)
    # A changed config invalidates the marker.
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        run_jobs(src, tmp_path / "fbank", 1, config=FbankConfig(num_mel_bins=40))


def test_resume_after_killed_job(tmp_path, monkeypatch):
    src = make_data_dir(tmp_path / "data", 4)
    out = tmp_path / "fbank"
    calls = []

    def dies_on_third(samples, config):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is killed mid-way
        return compute_fbank(samples, config)

    monkeypatch.setattr(features, "compute_fbank", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        compute_feats_for_data_dir(src, out, progress=False)
    assert (out / "feats.1.ark.tmp").exists() and not (out / "feats.1.done").exists()
    assert not (out / "feats.1.scp").exists()
    (out / "utt2num_frames.1.tmp").write_text("garbage from the dead job\n")
    monkeypatch.undo()

    run_jobs(src, out, 1)
    feats = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert len(feats) == 4 and not list(out.glob("*.tmp"))
    assert all(len(line.split()) == 2 for line in (out / "utt2num_frames").open())
