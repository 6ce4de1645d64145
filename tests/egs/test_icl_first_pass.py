"""egs/slurp/icl1's shell functions, run in bash as run.sh sources them: the first-pass
options (local/first_pass.sh), the ESPnet system's guard for a user's model dir
(local/espnet_system.sh), the voice kinds' seeds and names (local/voices.sh) and the
prediction calls of one set (local/predict_icl.sh)."""
import subprocess
from pathlib import Path

RECIPE = Path(__file__).parents[2] / "egs" / "slurp" / "icl1"


def _bash(script: str) -> subprocess.CompletedProcess:
    prelude = ("set -euo pipefail; . utils/log.sh; . local/voices.sh; . local/first_pass.sh; "
               ". local/espnet_system.sh; . local/predict_icl.sh; nbest=5; ps_nbest=10; "
               "espnet_model=; ")
    return subprocess.run(["bash", "-c", prelude + script], cwd=RECIPE, capture_output=True,
                          text=True)


def test_first_pass_opts_per_model_kind():
    res = _bash('first_pass_opts whisper-base lm.arpa exp/x; first_pass_opts pocketsphinx '
                'lm.arpa exp/x; first_pass_opts espnet lm.arpa exp/x; '
                'espnet_model=/m; first_pass_opts espnet lm.arpa exp/x')
    assert res.returncode == 0, res.stderr
    whisper, ps, espnet, user = res.stdout.splitlines()
    assert whisper == "--backend whisper --model whisper-base --nbest 5 --beam 5"
    assert ps == "--backend pocketsphinx --ps-lm lm.arpa --nbest 10"
    assert espnet == ("--backend espnet --model-dir exp/x/espnet/asr/model --graph "
                      "exp/x/espnet/graph --config ../slu1/conf/decode_lattice.yaml")
    # a user's model dir is decoded with the graph built for it, nothing trained
    assert user.startswith("--backend espnet --model-dir /m --graph exp/x/espnet/graph")


def test_espnet_system_names_a_model_dir_without_config(tmp_path):
    (tmp_path / "model").mkdir()
    res = _bash(f"espnet_model={tmp_path}/model; espnet_system {tmp_path}/data "
                f"{tmp_path}/exp piper")
    assert res.returncode == 1
    assert f"--espnet_model {tmp_path}/model: no config.yaml" in res.stdout
    assert not (tmp_path / "data").exists()  # nothing synthesised for a user's model


def _seeds(voices: str) -> dict[str, int]:
    # the loop of run.sh's stage 1 over its sets "dev test"
    res = _bash(f"i=0; for s in dev test; do for v in {voices}; do "
                'echo "${s}_${v} $(voice_seed $((2 * i)) "${v}")"; done; i=$((i + 1)); done')
    assert res.returncode == 0, res.stderr
    return {k: int(v) for k, v in (line.split() for line in res.stdout.splitlines())}


def test_a_set_keeps_its_seed_whatever_voices_are_asked_for():
    default = _seeds("piper espeak")
    assert default == {"dev_piper": 1, "dev_espeak": 2, "test_piper": 3, "test_espeak": 4}
    # before: --voices piper numbered test_piper 2, and synth-data-dir (whose .done digest
    # holds the seed) would have spoken the main test set anew
    assert _seeds("piper") == {"dev_piper": 1, "test_piper": 3}
    assert _seeds("espeak piper") == default


def test_an_unknown_voice_kind_is_named():
    res = _bash("check_voices piper espeak && check_voices piper festival")
    assert res.returncode == 1
    assert "--voices: unknown voice kind 'festival' (piper, espeak)" in res.stdout + res.stderr


def _predict_calls(inputs: str, opts: str = "", shots: str | None = None
                   ) -> list[tuple[str, str, str]]:
    """(--input, --decode-dir, --out) of each ``slu predict`` predict_icl would run."""
    fake = 'python() { shift 3; echo "$*"; }; exp=E; data=D; slu_dir=S; nj=3; '
    res = _bash(fake + f"predict_icl {opts} embedding m test piper {inputs}")
    assert res.returncode == 0, res.stderr
    calls = []
    for line in res.stdout.splitlines():
        words = line.split()
        opt = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
        kinds = line.split("--input ")[1].split(" --")[0]
        assert opt["--nj"] == "3"  # run.sh's nj: slu predict's worker processes
        assert opt.get("--shots") == shots
        calls.append((kinds, opt["--decode-dir"], opt["--out"]))
    return calls


def test_predict_icl_writes_every_input_under_its_own_name():
    out = "E/m/icl_embedding/test_piper"
    assert _predict_calls("1best wcn wcn_cal wcn_marg") == [
        ("1best wcn", "E/m/decode_test_piper", out),  # several inputs: OUT/<input>/ each
        ("wcn", "E/m/decode_test_piper_cal", f"{out}/wcn_cal"),
        ("wcn_marg", "E/m/decode_test_piper_cal", f"{out}/wcn_marg")]
    # one input alone: predict would write OUT itself, so OUT/<input> is given
    assert _predict_calls("nbest_marg wcn_marg") == [
        ("nbest_marg", "E/m/decode_test_piper", f"{out}/nbest_marg"),
        ("wcn_marg", "E/m/decode_test_piper_cal", f"{out}/wcn_marg")]
    assert _predict_calls("wcn_cal") == [
        ("wcn", "E/m/decode_test_piper_cal", f"{out}/wcn_cal")]
    # the shot sweep: another output root and shot count, the same split by input
    assert _predict_calls("1best wcn_marg oracle", "--shots 0 --out O/0", shots="0") == [
        ("1best oracle", "E/m/decode_test_piper", "O/0"),
        ("wcn_marg", "E/m/decode_test_piper_cal", "O/0/wcn_marg")]


def test_predict_icl_passes_prompt_options_on_as_they_are():
    # the prompt ablation: an empty instruction must reach slu predict as an empty argument
    fake = "python() { shift 3; printf '[%s]' \"$@\"; echo; }; exp=E; data=D; slu_dir=S; nj=1; "
    res = _bash(fake + 'predict_icl --opt --instruction --opt "" --opt --no-verbalize '
                "--out O embedding m test piper 1best wcn_marg")
    assert res.returncode == 0, res.stderr
    calls = res.stdout.splitlines()
    assert len(calls) == 2  # 1best, then wcn_marg from the calibrated decode dir
    for call in calls:
        assert "[--instruction][][--no-verbalize]" in call
