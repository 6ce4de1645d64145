"""Per-speaker CMN (speechlm.data.cmn) and compute-fbank --cmn speaker."""
import kaldiio
import numpy as np
import pytest
import yaml

from speechlm.bin import compute_fbank
from speechlm.data.cmn import SpeakerCMN, normalize_feats_dir, split_by_speaker
from speechlm.data.features import GlobalCMVN
from speechlm.data.kaldi_dir import read_data_dir
from speechlm.testing import make_data_dir


def test_short_speakers_are_padded_with_the_prior():
    cmn = SpeakerCMN(prior_mean=np.array([10.0, 0.0]), prior_frames=6.0)
    feats = [("a1", np.full((2, 2), 1.0)), ("a2", np.full((2, 2), 3.0)),
             ("b1", np.full((12, 2), -2.0))]
    means = cmn.speaker_means(feats, {"a1": "a", "a2": "a", "b1": "b"})
    # a: 4 frames summing to 8 per dim, padded with 2 prior frames of (10, 0)
    np.testing.assert_allclose(means["a"], [(8 + 20) / 6, 8 / 6])
    np.testing.assert_allclose(means["b"], [-2.0, -2.0])  # 12 >= 6 frames: its own mean
    plain = SpeakerCMN(prior_mean=np.zeros(2), prior_frames=0.0)
    np.testing.assert_allclose(plain.speaker_means(feats[:2], {"a1": "a", "a2": "a"})["a"],
                               [2.0, 2.0])


def test_apply_defaults_to_the_utterance_as_its_own_speaker():
    cmn = SpeakerCMN(prior_mean=np.zeros(3), prior_frames=4.0)
    f = np.ones((2, 3)) * 4.0
    out = cmn.apply(f)  # 2 frames padded with 2 of the prior: mean = (8 + 0) / (2 + 2) = 2
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.full((2, 3), 2.0))


def test_errors_name_the_utterance():
    cmn = SpeakerCMN(prior_mean=np.zeros(2))
    with pytest.raises(KeyError, match="'u9'"):
        cmn.speaker_means([("u9", np.zeros((3, 2)))], {})
    with pytest.raises(ValueError, match="'u1'.*dimension 2"):
        cmn.speaker_means([("u1", np.zeros((3, 5)))], {"u1": "s"})
    with pytest.raises(ValueError, match="finite"):
        SpeakerCMN(prior_mean=np.array([np.nan]))
    with pytest.raises(ValueError, match="unknown type"):
        SpeakerCMN.from_dict({"type": "utterance"})


def test_dict_round_trip():
    cmn = SpeakerCMN(prior_mean=np.array([1.5, -2.25]), prior_frames=50.0)
    back = SpeakerCMN.from_dict(yaml.safe_load(yaml.safe_dump(cmn.to_dict())))
    np.testing.assert_allclose(back.prior_mean, cmn.prior_mean)
    assert back.prior_frames == 50.0
    assert SpeakerCMN.from_dict(None) is None and SpeakerCMN.from_dict({"type": "none"}) is None


@pytest.mark.parametrize("nj", [1, 2, 3, 4, 7])
def test_split_by_speaker_keeps_speakers_whole(nj):
    sizes = {"a": 5, "b": 1, "c": 4, "d": 4, "e": 2}
    utts = [f"{s}-{i}" for s, n in sizes.items() for i in range(n)]
    utt2spk = {u: u.split("-")[0] for u in utts}
    jobs = [split_by_speaker(utts, utt2spk, nj, j) for j in range(1, nj + 1)]
    assert sorted(u for job in jobs for u in job) == sorted(utts)  # each utterance once
    owners = {}
    for j, job in enumerate(jobs):
        assert job == [u for u in utts if u in set(job)]  # order kept
        for u in job:
            assert owners.setdefault(utt2spk[u], j) == j  # a speaker in one job only
    if nj == 2:  # 16 utterances: a+b+c (10) | d+e (6) is the cut nearest 8 by midpoints
        assert [len(j) for j in jobs] == [10, 6]
    if nj == 7:
        assert sum(1 for j in jobs if not j) == 2  # 5 speakers, 7 jobs
    with pytest.raises(ValueError):
        split_by_speaker(utts, utt2spk, nj, nj + 1)


def test_normalize_feats_dir_is_resumable(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    mats = {f"s{i % 2}-u{i}": rng.normal(i % 2 * 5, 1, size=(10 + i, 3)).astype(np.float32)
            for i in range(4)}
    with kaldiio.WriteHelper(f"ark,scp:{raw}/feats.ark,{raw}/feats.scp") as w:
        for k in sorted(mats):
            w(k, mats[k])
    utt2spk = {u: u.split("-")[0] for u in mats}
    cmn = SpeakerCMN(prior_mean=np.zeros(3), prior_frames=0.0)
    out = tmp_path / "norm"
    out.mkdir()
    normalize_feats_dir(raw / "feats.scp", utt2spk, cmn, out)
    got = dict(kaldiio.load_scp(str(out / "feats.scp")))
    for spk in ("s0", "s1"):  # without a prior every speaker ends at mean zero
        stacked = np.concatenate([got[u] for u in sorted(got) if utt2spk[u] == spk])
        np.testing.assert_allclose(stacked.mean(0), 0, atol=1e-5)
    assert (out / "utt2num_frames").read_text().split("\n")[0] == "s0-u0 10"
    mtime = (out / "feats.ark").stat().st_mtime_ns
    normalize_feats_dir(raw / "feats.scp", utt2spk, cmn, out)  # same inputs: kept
    assert (out / "feats.ark").stat().st_mtime_ns == mtime
    utt2spk["s1-u3"] = "s9"  # other speakers: redone
    normalize_feats_dir(raw / "feats.scp", utt2spk, cmn, out)
    np.testing.assert_allclose(dict(kaldiio.load_scp(str(out / "feats.scp")))["s1-u3"].mean(0),
                               0, atol=1e-5)


def test_compute_fbank_cli_speaker_cmn(tmp_path):
    train = make_data_dir(tmp_path / "train", 6, n_speakers=2)
    dev = make_data_dir(tmp_path / "dev", 2, n_speakers=1)
    (tmp_path / "fbank.yaml").write_text("num_mel_bins: 20\n")
    common = ["--config", str(tmp_path / "fbank.yaml"), "--no-progress", "--cmn", "speaker"]
    out = tmp_path / "dump_train"
    assert compute_fbank.main(["--data-dir", str(train), "--out-dir", str(out), "--nj", "2",
                               "--cmvn-out", str(out / "cmvn.npz"), *common]) == 0
    raw = dict(kaldiio.load_scp(str(out / "raw" / "feats.scp")))
    norm = dict(kaldiio.load_scp(str(out / "feats.scp")))
    cmn = SpeakerCMN.from_dict(yaml.safe_load((out / "cmn.yaml").read_text()))
    np.testing.assert_allclose(cmn.prior_mean, GlobalCMVN.from_feats_scp(
        out / "raw" / "feats.scp").mean, rtol=1e-5)
    utt2spk = read_data_dir(train).utt2spk
    means = cmn.speaker_means(raw.items(), utt2spk)
    for utt in raw:
        np.testing.assert_allclose(norm[utt], raw[utt] - means[utt2spk[utt]], atol=1e-4)
    assert GlobalCMVN.load(out / "cmvn.npz").count == sum(len(m) for m in norm.values())
    # a dev set takes the training prior
    out_dev = tmp_path / "dump_dev"
    assert compute_fbank.main(["--data-dir", str(dev), "--out-dir", str(out_dev),
                               "--cmn-from", str(out / "cmn.yaml"), *common]) == 0
    assert (out_dev / "cmn.yaml").read_text() == (out / "cmn.yaml").read_text()
    with pytest.raises(SystemExit, match="--cmn-from needs --cmn speaker"):
        compute_fbank.main(["--data-dir", str(dev), "--out-dir", str(tmp_path / "x"),
                            "--cmn-from", str(out / "cmn.yaml")])


def test_set_prior_pads_short_speakers_with_the_set_mean():
    cmn = SpeakerCMN(prior_mean=np.zeros(2), prior_frames=4.0)
    feats = [(f"u{i}", np.full((2, 2), 6.0)) for i in range(3)]  # one recording set, mean 6
    utt2spk = {u: u for u, _ in feats}  # no speaker ids: each utterance its own
    assert cmn.speaker_means(feats, utt2spk)["u0"].tolist() == [3.0, 3.0]  # training prior
    adapted = cmn.with_set_prior(feats)
    np.testing.assert_allclose(adapted.prior_mean, [6.0, 6.0])  # 6 frames >= 4: its own
    assert adapted.speaker_means(feats, utt2spk)["u0"].tolist() == [6.0, 6.0]
    assert cmn.speaker_means(feats, utt2spk, set_prior=True)["u0"].tolist() == [6.0, 6.0]
    tiny = cmn.with_set_prior(feats[:1])  # 2 frames: the set mean is padded too
    np.testing.assert_allclose(tiny.prior_mean, [3.0, 3.0])
