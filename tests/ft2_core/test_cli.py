import numpy as np
import pytest
import soundfile
from PIL import Image

from ft2_core.cli import main
from ft2_core.io.video_io import probe_mp4
from tests.conftest import run_on_a_full_disk


def test_animate_with_defaults_writes_mp4_with_audio(tmp_path, caplog):
    """The README demo: the built-in miniature model animates the demo portrait with the demo speech."""
    out = tmp_path / "demo.mp4"
    caplog.set_level("WARNING")
    assert main(["animate", "--out", str(out), "--steps", "3"]) == 0
    facts = probe_mp4(out)
    # the demo speech is 3.5 s: 80 // 4 * 4 + 5 = 85 frames, all of them (in windows of the model's 33); 64x64 at 23 fps
    assert (facts["frames"], facts["width"], facts["height"]) == (85, 64, 64)
    assert facts["fps"] == 23.0 and facts["audio_codec"] == "aac" and abs(facts["audio_seconds"] - 85 / 23) < 0.03
    assert "miniature model" in caplog.text and "not a real-face model" in caplog.text


def test_animate_with_files_and_model_dir(tmp_path, tiny_dir):
    image, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    Image.fromarray((np.random.rand(100, 90, 3) * 255).astype(np.uint8)).save(image)
    t = np.arange(48000 // 2) / 48000
    soundfile.write(audio, np.stack([np.sin(2 * np.pi * 200 * t)] * 2).T * 0.3, 48000)
    out = tmp_path / "o.mp4"
    args = ["animate", "--image", str(image), "--audio", str(audio), "--out", str(out), "--model-dir", str(tiny_dir),
            "--steps", "2", "--scheduler", "unipc", "--max-side", "64", "--frames", "9"]
    assert main(args) == 0
    facts = probe_mp4(out)
    assert (facts["frames"], facts["width"], facts["height"]) == (9, 64, 64)


def test_bad_input_exits_2_with_one_line(tmp_path, tiny_dir, capsys):
    code = main(
        ["animate", "--image", str(tmp_path / "none.png"), "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: image: file not found: {tmp_path / 'none.png'}"
    assert main(["animate", "--out", str(tmp_path / "o.avi"), "--model-dir", str(tiny_dir)]) == 2


def test_experts_inspect_prints_the_facts(tmp_path, capsys, tiny_model):
    from ft2_core.tlpo.lora_formats import save_expert
    from tests.ft2_core.tlpo.test_experts import random_lora

    path = save_expert(random_lora(tiny_model, 4, 8.0, 0), tmp_path / "ls.safetensors", "lipsync", "ft2-tiny")
    assert main(["experts", "inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:6] == [
        "format: comfyui",
        "rank: 4",
        "alpha: 8",
        "layers: 2",
        "modules: cross_attn.k, cross_attn.o, cross_attn.q, cross_attn.v, ffn.0, ffn.2, self_attn.k, "
        "self_attn.o, self_attn.q, self_attn.v",
        "ft2.dimension: lipsync",
    ]


def test_animate_with_experts_and_schedule(tmp_path, tiny_dir, tiny_model):
    from ft2_core.tlpo.lora_formats import save_expert
    from tests.ft2_core.tlpo.test_experts import random_lora

    files = [
        save_expert(random_lora(tiny_model, 2, 2.0, k), tmp_path / f"{n}.safetensors", n, "ft2-tiny")
        for k, n in enumerate(("motion", "lipsync"))
    ]
    out = tmp_path / "e.mp4"
    args = [
        "animate",
        "--out",
        str(out),
        "--model-dir",
        str(tiny_dir),
        "--steps",
        "2",
        "--frames",
        "5",
        "--expert",
        f"motion={files[0]}:0.5",
        "--expert",
        f"lipsync={files[1]}",
        "--schedule",
        "0: 1, 0; 1000: 0, 1",
    ]
    assert main(args) == 0 and probe_mp4(out)["frames"] == 5
    assert main(args[:-2] + ["--schedule", "0: 1, 0, 0"]) == 2  # 3 weights for 2 experts


def test_animate_with_another_lora_at_fixed_strength(tmp_path, tiny_dir, tiny_model):
    from ft2_core.tlpo.lora_formats import save_expert
    from tests.ft2_core.tlpo.test_experts import random_lora

    style = save_expert(
        random_lora(tiny_model, 2, 2.0, 5), tmp_path / "style.safetensors", "quality", "ft2-tiny"
    )  # any LoRA file
    base = ["animate", "--model-dir", str(tiny_dir), "--steps", "2", "--frames", "5"]
    assert main(base + ["--out", str(tmp_path / "l.mp4"), "--lora", f"{style}:0.7"]) == 0
    assert probe_mp4(tmp_path / "l.mp4")["frames"] == 5
    assert main(base + ["--out", str(tmp_path / "n.mp4"), "--lora", f"{style}:nan"]) == 2


@pytest.mark.hostile(item=2, ends="write error")
def test_a_full_disk_and_a_killed_run_leave_no_video_and_no_litter(tmp_path, tiny_dir):
    """A killed run's temporaries are cleaned by the next run into the folder (only ft2's, only a dead process's);
    a write that runs out of room ends in one sentence, exit 1, and leaves nothing under the video's name."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / f".o.mp4.ft2-{gone.pid}.k3j2.tmp.mp4").write_bytes(b"half")
    (tmp_path / ".theirs.tmp.mp4").write_bytes(b"someone else's")
    args = ["animate", "--out", str(tmp_path / "o.mp4"), "--model-dir", str(tiny_dir), "--steps", "1", "--max-side", "128",
            "--frames", "41"]
    run = run_on_a_full_disk("ft2_core.cli", args, 20000)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'o.mp4'}: ") and "is the disk full? Nothing was saved" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == [".theirs.tmp.mp4"]
