"""The bad-input sweep: each case ends with one sentence naming the input, exit code 2, and no partial file."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ft2_core.cli import main
from ft2_core.errors import InputError
from training import generate_candidates, preprocess


@pytest.fixture()
def run_cli(capsys):
    def call(argv, expected):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, err
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
        return err[0]

    return call


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.mark.hostile(item=6, ends="refused")
@pytest.mark.parametrize("flag, value, expected", [
    ("--cfg", "nan", "--cfg must be a finite number"),
    ("--cfg", "1e38", "--cfg must be between 0 and 20, got 1e+38"),
    ("--audio-cfg", "inf", "--audio-cfg must be a finite number"),
    ("--audio-cfg", "-1", "--audio-cfg must be between 0 and 20, got -1"),
    ("--fps", "0", "--fps must be between 1 and 60, got 0"),
    ("--fps", "0.001", "--fps must be between 1 and 60, got 0.001"),
    ("--fps", "1e6", "--fps must be between 1 and 60, got 1e+06"),
    ("--max-side", "8192", "--max-side must be between 16 and 1280, got 8192"),
    ("--steps", "0", "--steps must be between 1 and 200, got 0"),
    ("--shift", "0", "--shift must be between 0.1 and 20, got 0"),
    ("--frames", "400001", "--frames must be between 5 and 100001, got 400001"),
    ("--frames", "99997", "num_frames 99997 (4347.7 s at 23 fps) is far beyond the audio"),
    ("--lora", "x.safetensors:1e30", "the strength in 'x.safetensors:1e30' must be between -2 and 3"),
    ("--expert", "motion=x.safetensors:nan", "the strength in 'x.safetensors:nan' must be a finite number"),
])
def test_numbers_beyond_the_nodes_limits_are_refused_before_any_model_loads(
    tmp_path, tiny_dir, run_cli, monkeypatch, flag, value, expected
):
    from ft2_core.pipeline import FantasyTalkingPipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the command line was checked")

    monkeypatch.setattr(FantasyTalkingPipeline, "from_paths", no_loading)
    argv = ["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), flag, value]
    run_cli(argv if flag == "--frames" else [*argv, "--frames", "5"], expected)
    assert files_in(tmp_path) == []


@pytest.mark.hostile(item=10, ends="refused")
def test_output_path_that_is_a_folder_or_has_the_wrong_suffix(tmp_path, tiny_dir, run_cli):
    (tmp_path / "video.mp4").mkdir()
    run_cli(["animate", "--out", str(tmp_path / "video.mp4"), "--model-dir", str(tiny_dir)], "is a folder")
    run_cli(["animate", "--out", str(tmp_path / "o.avi"), "--model-dir", str(tiny_dir)], "must end with .mp4")
    adapter = tiny_dir / "audio_adapter.safetensors"
    run_cli(["convert-adapter", str(adapter), str(tmp_path / "x.txt")], "must end with .safetensors")
    assert files_in(tmp_path) == []


@pytest.mark.hostile(item=10, ends="refused")
def test_output_folder_that_cannot_be_written(tmp_path, tiny_dir, run_cli):
    """(Root writes into read-only folders, so the unwritable place here is a file standing where a folder should be.)"""
    from ft2_core.checks import output_file

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a writable folder"):
        output_file(blocker / "sub" / "o.mp4", (".mp4",), "--out")
    run_cli(["animate", "--out", str(blocker / "o.mp4"), "--model-dir", str(tiny_dir)], "not a writable folder")


@pytest.mark.hostile(item=10, ends="refused")
def test_cuda_on_a_machine_without_it(tmp_path, tiny_dir, run_cli):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_cli(["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), "--device", "cuda"],
            "no CUDA GPU")
    run_cli(["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), "--device", "gpu0"],
            "must be a torch device")


def poisoned(path):
    """The weight file with one NaN written in, as a damaged download or a diverged run of another tool leaves it
    (ours refuse to write one)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    state = load_file(path)
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key].view(-1)[0] = math.nan
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.mark.hostile(item=4, ends="refused")
@pytest.mark.parametrize("kind", ["expert", "gate", "adapter"])
def test_nan_in_weight_files(tmp_path, tiny_dir, tiny_model, run_cli, kind):
    from ft2_core.tlpo.gate import TimestepLayerGate, save_gate
    from ft2_core.tlpo.lora_formats import save_expert
    from tests.ft2_core.tlpo.test_experts import random_lora

    expert = save_expert(random_lora(tiny_model, 2, 2.0, 0), tmp_path / "e.safetensors", "motion", "ft2-tiny")
    args = ["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), "--frames", "5", "--steps", "1"]
    if kind == "expert":
        bad = poisoned(save_expert(random_lora(tiny_model, 2, 2.0, 0), tmp_path / "bad.safetensors", "motion", "ft2-tiny"))
        run_cli(args + ["--expert", f"motion={bad}"], "contains NaN or infinite values")
    elif kind == "gate":
        bad = poisoned(save_gate(TimestepLayerGate(2, 1, 16, ("motion",)), tmp_path / "gate.safetensors"))
        run_cli(args + ["--expert", f"motion={expert}", "--gate", str(bad)], "contains NaN or infinite values")
    else:
        bad = tmp_path / "adapter.safetensors"
        bad.write_bytes((tiny_dir / "audio_adapter.safetensors").read_bytes())
        run_cli(args + ["--adapter", str(poisoned(bad))], "contains NaN or infinite values")
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.hostile(item=5, ends="handled")
def test_huge_image_is_shrunk_while_decoding(tmp_path):
    from ft2_core.io.image import DECODE_MAX_SIDE, load_image

    path = tmp_path / "big.png"
    Image.new("RGB", (9000, 6000), (120, 80, 60)).save(path)
    image = load_image(path)
    assert max(image.shape[:2]) <= DECODE_MAX_SIDE and image.dtype == torch.float32


@pytest.mark.hostile(item=5, ends="refused")
def test_decompression_bomb_is_refused(tmp_path):
    from ft2_core.io.image import load_image

    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(path)  # 200 megapixels in a few kilobytes
    with pytest.raises(InputError, match="megapixels|exceeds limit"):
        load_image(path)


@pytest.mark.hostile(item=3, ends="refused")
def test_candidate_ids_cannot_write_outside_the_output(tmp_path, tiny_dir, capsys):
    (tmp_path / "conditions.jsonl").write_text(json.dumps({"id": "../escape", "image": "a.png", "audio": "a.wav"}) + "\n")
    argv = ["--conditions", str(tmp_path / "conditions.jsonl"), "--out", str(tmp_path / "out"), "--model-dir", str(tiny_dir)]
    assert generate_candidates.main(argv) == 2
    assert "must be a plain name" in capsys.readouterr().err
    (tmp_path / "conditions.jsonl").write_text(json.dumps({"id": "/abs/path", "image": "a.png", "audio": "a.wav"}) + "\n")
    assert generate_candidates.main(argv) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.hostile(item=6, ends="refused")
@pytest.mark.parametrize("argv, expected", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--samples", "-3"], "--samples must be at least 1"),
    (["--cfg", "nan"], "must be a finite number"),
])
def test_candidate_options(tmp_path, tiny_dir, capsys, argv, expected):
    base = ["--conditions", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "out"), "--model-dir", str(tiny_dir)]
    assert generate_candidates.main(base + argv) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.hostile(item=10, ends="refused")
@pytest.mark.parametrize("frames", ["-5", "3", "8"])
def test_preprocess_frame_counts(tmp_path, capsys, frames):
    argv = ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(tmp_path / "cache"), "--frames", frames]
    assert preprocess.main(argv) == 2
    assert "--frames must be 4k+1 and at least 5" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.mark.hostile(item=4, ends="refused")
def test_sampler_options_refuse_non_finite_values():
    from ft2_core.sampling.options import SamplerOptions

    for field in ("cfg", "audio_cfg", "shift", "audio_scale"):
        with pytest.raises(InputError, match=field):
            SamplerOptions(**{field: float("nan")}).validate()
    assert np.isfinite(SamplerOptions().cfg)


@pytest.mark.hostile(item=5, ends="refused")
def test_a_huge_prompt_is_refused_before_tokenizing(tmp_path, tiny_dir, tiny_pipeline, run_cli):
    from ft2_core.demo_inputs import demo_portrait, demo_speech

    run_cli(["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), "--prompt", "talk " * 5000],
            "--prompt is 25,000 characters; give at most 10,000")
    with pytest.raises(InputError, match="negative prompt is 20,000 characters"):
        tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), negative_prompt="x" * 20_000, num_frames=5)


@pytest.mark.hostile(item=5, ends="refused")
def test_audio_too_long_or_too_wide_is_refused_from_its_header(tmp_path, monkeypatch):
    import soundfile

    from ft2_core.io import audio as audio_io

    monkeypatch.setattr(audio_io, "MAX_INPUT_SECONDS", 2)
    path = tmp_path / "long.flac"
    soundfile.write(path, np.zeros((3 * 8000, 1), np.float32), 8000)
    decoded = []
    monkeypatch.setattr(audio_io, "decode_in_chunks", lambda *a, **k: decoded.append(1))  # must not be reached
    with pytest.raises(InputError, match=r"long.flac is 3 s long; give at most 2 s"):
        audio_io.load_audio(path)
    wide = tmp_path / "wide.wav"
    soundfile.write(wide, np.zeros((800, 17), np.float32), 8000)
    with pytest.raises(InputError, match="has 17 channels; give at most 16"):
        audio_io.load_audio(wide)
    monkeypatch.setattr(audio_io, "MAX_INPUT_SAMPLES", 1000)  # duration x channels (x rate) as the header states it
    dense = tmp_path / "dense.wav"
    soundfile.write(dense, np.zeros((600, 2), np.float32), 8000)
    with pytest.raises(InputError, match="dense.wav holds 1,200 samples .2 channels at 8000 Hz.; give at most 1,000"):
        audio_io.load_audio(dense)
    slow = tmp_path / "slow.wav"
    soundfile.write(slow, np.zeros((100, 1), np.float32), 500)
    with pytest.raises(InputError, match="slow.wav: sample rate must be an integer between 1000 and 384000 Hz, got 500"):
        audio_io.load_audio(slow)
    assert decoded == []
