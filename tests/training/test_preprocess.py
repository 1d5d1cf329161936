import json
import logging
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from ft2_core.io.audio import Audio
from ft2_core.io.video_io import write_mp4
from ft2_core.tlpo.preference_data import LatentCache
from tests.conftest import REPO, run_on_a_full_disk, script_env
from tests.training.conftest import assert_stopped_cleanly_on_a_full_disk, kill_9_when, launch_two_processes
from training.preprocess import main


def make_clip(path, face: bool, seconds=0.5, fps=23.0, with_audio=True):
    frames = int(seconds * fps) // 4 * 4 + 5
    if face:
        base = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(astronaut()).resize((128, 128)))
        pixels = np.repeat(base[None], frames, axis=0)
    else:
        pixels = (np.random.default_rng(0).random((frames, 128, 128, 3)) * 255).astype(np.uint8)
    t = np.arange(int(16000 * frames / fps)) / 16000
    audio = Audio((0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 16000) if with_audio else None
    write_mp4(path, pixels, fps, audio)
    return frames


def test_preprocess_builds_a_resumable_cache(tmp_path, tiny_dir, caplog):
    frames = make_clip(tmp_path / "face.mp4", face=True)
    make_clip(tmp_path / "noise.mp4", face=False)
    clips = [{"id": "v1", "video": "face.mp4", "condition": "c1", "prompt": "a woman talks"},
             {"id": "v2", "video": "noise.mp4", "condition": "c1"}]
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    caplog.set_level(logging.INFO)
    argv = ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(tmp_path / "cache"), "--model-dir", str(tiny_dir),
            "--max-side", "128"]
    assert main(argv) == 0
    cache = LatentCache(tmp_path / "cache")
    face, noise, cond = cache.get("video/v1"), cache.get("video/v2"), cache.get("cond/c1")
    latent_frames = (frames - 1) // 4 + 1
    assert face["latents"].shape == (16, latent_frames, 16, 16)
    assert face["lip_mask"].shape == (1, latent_frames, 16, 16) and 0 < face["lip_mask"].mean() < 0.2
    assert "lip_mask" not in noise and "noise.mp4: no face found" in caplog.text
    assert cond["condition"].shape == (20, latent_frames, 16, 16) and int(cond["num_frames"]) == frames
    assert cond["text"].shape == (512, 32) and cond["image"].shape == (257, 32) and cond["audio"].shape[1] == 32
    before = (tmp_path / "cache" / "index.json").read_text()
    assert main(argv) == 0  # nothing to redo
    assert (tmp_path / "cache" / "index.json").read_text() == before
    assert "cached 0 new clips" in caplog.text
    assert main([*argv[:-1], "64"]) == 2  # other settings into the same cache: refused, nothing changed
    assert (tmp_path / "cache" / "index.json").read_text() == before
    twice = tmp_path / "twice.jsonl"
    twice.write_text(json.dumps(clips[0]) + "\n" + json.dumps(clips[0]) + "\n")
    assert main(["--clips", str(twice), *argv[2:]]) == 2


@pytest.mark.hostile(item=8, ends="refused")
def test_a_cache_of_other_settings_is_named(tmp_path, tiny_dir, capsys):
    from ft2_core.tlpo.preference_data import CacheWriter

    writer = CacheWriter(tmp_path / "cache", settings={"model": "tiny", "max_side": 128})
    writer.add("video/v1", {"latents": torch.zeros(2)})
    writer.close()
    make_clip(tmp_path / "face.mp4", face=False)
    (tmp_path / "clips.jsonl").write_text(json.dumps({"id": "v1", "video": "face.mp4", "condition": "c1"}) + "\n")
    argv = ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(tmp_path / "cache"), "--model-dir", str(tiny_dir),
            "--max-side", "64", "--lip-mask", "none"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was made with " in err and "max_side 128 (now 64)" in err and "use another folder" in err


def test_clip_without_audio_is_named(tmp_path, tiny_dir, capsys):
    make_clip(tmp_path / "mute.mp4", face=False, with_audio=False)
    (tmp_path / "clips.jsonl").write_text(json.dumps({"id": "v", "video": "mute.mp4", "condition": "c"}) + "\n")
    code = main(["--clips", str(tmp_path / "clips.jsonl"), "--out", str(tmp_path / "cache"), "--model-dir", str(tiny_dir),
                 "--lip-mask", "none", "--max-side", "64"])
    assert code == 2 and "mute.mp4: no audio stream" in capsys.readouterr().err


@pytest.mark.hostile(item=2, ends="resumes")
def test_preprocessing_survives_a_full_disk_and_a_kill_9(tmp_path, tiny_dir):
    """A shard that cannot be written stops the run in one sentence with the index untouched; a kill -9 at any moment
    keeps what was flushed: both, rerun, end with the straight run's cache."""
    for c in range(3):
        make_clip(tmp_path / f"clip{c}.mp4", face=False, seconds=0.3 + 0.1 * c)
    clips = [{"id": f"v{c}", "video": f"clip{c}.mp4", "condition": f"c{c}"} for c in range(3)]
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))

    def argv(out):
        return ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(out), "--model-dir", str(tiny_dir), "--max-side", "64",
                "--lip-mask", "none"]

    straight, full, killed = tmp_path / "straight", tmp_path / "full", tmp_path / "killed"
    assert main(argv(straight)) == 0
    smallest = min(p.stat().st_size for p in straight.glob("shard-*.safetensors"))
    assert_stopped_cleanly_on_a_full_disk(run_on_a_full_disk("training.preprocess", argv(full), smallest - 1, tiny_dir), full)
    assert not (full / "index.json").exists() and not list(full.glob("shard-*"))
    started = time.monotonic()
    kill_9_when("training.preprocess", argv(killed), lambda: time.monotonic() - started > 4.0, tiny_dir)
    expected = LatentCache(straight)
    names = [f"video/v{c}" for c in range(3)] + [f"cond/c{c}" for c in range(3)]
    for out in (full, killed):
        assert main(argv(out)) == 0
        cache = LatentCache(out)
        for name in names:
            got, want = cache.get(name), expected.get(name)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name


def test_preprocessing_in_bf16_records_its_dtype(tmp_path, tiny_dir, capsys):
    """The CLI's device and memory options reach preprocessing: encoders in bf16 (the default on a GPU) with a tiled
    VAE make a cache close to fp32's (not equal: it was computed in bf16), recorded as bf16, so an fp32 rerun into it
    is refused."""
    make_clip(tmp_path / "clip.mp4", face=False)
    (tmp_path / "clips.jsonl").write_text(json.dumps({"id": "v", "video": "clip.mp4", "condition": "c"}) + "\n")

    def argv(out, *more):
        return ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(tmp_path / out), "--model-dir", str(tiny_dir),
                "--max-side", "64", "--lip-mask", "none", *more]

    assert main(argv("fp32")) == 0
    assert main(argv("bf16", "--dtype", "bf16", "--vae-tile", "128")) == 0
    wide, narrow = LatentCache(tmp_path / "fp32"), LatentCache(tmp_path / "bf16")
    differ = []
    for name in ("video/v", "cond/c"):
        for key, full in wide.get(name).items():
            half = narrow.get(name)[key].to(full.dtype)
            assert (half.double() - full.double()).abs().max() <= 0.05 * full.double().abs().max() + 1e-6, (name, key)
            differ.append(not torch.equal(half, full))
    assert any(differ)
    capsys.readouterr()
    assert main(argv("bf16")) == 2 and "dtype 'bf16' (now 'fp32')" in capsys.readouterr().err
    assert main(argv("other", "--sequential-rows", "--blocks-to-swap", "1")) == 2
    assert "--sequential-rows, --blocks-to-swap set how the DiT samples" in capsys.readouterr().err


def test_two_processes_cache_what_one_does(tmp_path, tiny_dir):
    """Split by condition over two processes (accelerate launch, gloo), each caching its share beside the cache; the main
    process adopts both: every item equals the one-process cache's, and the parts are gone. A part a killed run left
    behind is adopted by the next run."""
    for c in range(3):
        make_clip(tmp_path / f"clip{c}.mp4", face=c == 0, seconds=0.3 + 0.1 * c)
    clips = [{"id": f"v{c}", "video": f"clip{c}.mp4", "condition": f"c{c // 2}"} for c in range(3)]
    clips.append({"id": "v3", "video": "clip2.mp4", "condition": "c2"})
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))

    def argv(out):
        return ["--clips", str(tmp_path / "clips.jsonl"), "--out", str(out), "--model-dir", str(tiny_dir), "--max-side", "64",
                "--frames", "5"]

    one, two = tmp_path / "one", tmp_path / "two"
    # one thread per process, as accelerate launch gives each of its processes: then the items are equal bit for bit (at
    # the pytest process's two threads, wav2vec2's reductions round differently: 4.8e-7 apart, measured)
    subprocess.run([sys.executable, "-m", "training.preprocess", *argv(one)], check=True, capture_output=True, cwd=REPO,
                   env={**script_env(tiny_dir), "OMP_NUM_THREADS": "1"}, timeout=600)
    launch_two_processes("training.preprocess", argv(two))
    a, b = LatentCache(one), LatentCache(two)
    assert sorted(a.index) == sorted(b.index) == sorted([f"video/v{c}" for c in range(4)] + ["cond/c0", "cond/c1", "cond/c2"])
    assert len(set(b.index.values())) == 2  # one shard from each process
    for item in a.index:
        x, y = a.get(item), b.get(item)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), item
    assert not (two / ".parts").exists()
    part = two / ".parts" / "rank-00001"  # as a killed run leaves it: a part with its own index
    shutil.copytree(one, part)
    (two / "index.json").unlink()
    [p.unlink() for p in two.glob("shard-*")]
    assert main(argv(two)) == 0
    c = LatentCache(two)
    assert sorted(c.index) == sorted(a.index) and not (two / ".parts").exists()


def test_an_empty_clips_manifest_is_refused(tmp_path, capsys):
    empty = tmp_path / "clips.jsonl"
    empty.write_text("")
    assert main(["--clips", str(empty), "--out", str(tmp_path / "cache"), "--model-dir", "tiny"]) == 2
    assert f"clips manifest {empty} lists nothing" in capsys.readouterr().err
