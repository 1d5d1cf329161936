import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.tlpo.curation import pairs_by_dimension
from ft2_core.tlpo.preference_data import read_pairs
from tests.conftest import REPO, run_on_a_full_disk, script_env
from tests.training.conftest import assert_stopped_cleanly_on_a_full_disk, kill_9_when, launch_two_processes, lines_in
from training import curate_pairs, generate_candidates


@pytest.fixture(scope="module")
def candidates(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("candidates")
    rng = np.random.default_rng(0)
    rows = []
    for c in range(2):
        Image.fromarray((rng.random((96, 80, 3)) * 255).astype(np.uint8)).save(root / f"face{c}.png")
        t = np.arange(8000) / 16000
        soundfile.write(root / f"speech{c}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * c) * t), 16000)
        rows.append({"id": f"c{c}", "image": f"face{c}.png", "audio": f"speech{c}.wav", "prompt": "talking"})
    (root / "conditions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--conditions", str(root / "conditions.jsonl"), "--out", str(root / "out"), "--samples", "3",
            "--model-dir", str(tiny_dir), "--steps", "2", "--max-side", "64"]
    assert generate_candidates.main(argv) == 0
    assert generate_candidates.main(argv) == 0  # resumed: nothing new
    return root / "out"


def test_candidates_are_videos_with_distinct_seeds(candidates):
    rows = [json.loads(line) for line in (candidates / "candidates.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["c0_0", "c0_1", "c0_2", "c1_0", "c1_1", "c1_2"]
    assert len({(r["condition"], r["seed"]) for r in rows}) == 6 and {r["cfg"] for r in rows} == {4.0, 5.0, 6.0}
    assert all((candidates / r["video"]).is_file() for r in rows)


def test_two_processes_make_what_one_does(candidates, tmp_path, tiny_dir):
    """Conditions split over two processes (accelerate launch, gloo): one manifest with the same lines as one process's,
    videos with the same frames (one thread per process in both, as accelerate launch gives), no process files left."""
    root = candidates.parent
    argv = ["--conditions", str(root / "conditions.jsonl"), "--samples", "3", "--model-dir", str(tiny_dir), "--steps", "2",
            "--max-side", "64"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "training.generate_candidates", *argv, "--out", str(one)], check=True, cwd=REPO,
                   capture_output=True, env={**script_env(tiny_dir), "OMP_NUM_THREADS": "1"}, timeout=600)
    launch_two_processes("training.generate_candidates", [*argv, "--out", str(two)])
    a, b = (read_jsonl(out / "candidates.jsonl") for out in (one, two))
    assert sorted(a, key=lambda r: r["id"]) == sorted(b, key=lambda r: r["id"]) and len(a) == 6
    assert [r["id"] for r in b] == ["c0_0", "c0_1", "c0_2", "c1_0", "c1_1", "c1_2"]  # rank order: c0 on rank 0
    for record in a:
        assert np.array_equal(read_video(one / record["video"])[0], read_video(two / record["video"])[0]), record["id"]
    assert not list(two.glob(".candidates.rank-*"))


def test_curation_writes_pairs_and_resumes_without_rescoring(candidates, tmp_path, tiny_dir, monkeypatch, capsys):
    rows = curate_pairs.read_candidates(candidates / "candidates.jsonl")
    calls = []

    def fake_scores(chunk):  # deterministic scores per candidate, counting what gets scored
        calls.extend(c["id"] for c in chunk)
        if len(calls) > 4:
            raise KeyboardInterrupt  # the run dies during its third batch
        return [{"motion": 0.9 if c["id"].endswith("0") else 0.1, "lipsync": 0.5, "quality": 0.2} for c in chunk]

    scores_path = tmp_path / "scores.jsonl"
    with pytest.raises(KeyboardInterrupt):
        curate_pairs.score_all(rows, scores_path, fake_scores, batch_size=2)
    assert len(scores_path.read_text().splitlines()) == 4  # two finished batches kept
    calls.clear()
    scores = curate_pairs.score_all(rows, scores_path, fake_scores, batch_size=2)
    assert calls == ["c1_1", "c1_2"] and len(scores) == 6
    pairs = pairs_by_dimension(scores, {r["id"]: r["condition"] for r in rows})
    assert [(p.winner, p.loser) for p in pairs["motion"]] == [
        ("c0_0", "c0_1"),
        ("c0_0", "c0_2"),
        ("c1_0", "c1_1"),
        ("c1_0", "c1_2"),
    ]

    from ft2_core.tiny import tiny_critic_dir

    out = tmp_path / "pairs"
    argv = [
        "--candidates",
        str(candidates / "candidates.jsonl"),
        "--out",
        str(out),
        "--critic-base",
        str(tiny_critic_dir(tiny_dir.parent)),
        "--margin",
        "0.0",
    ]
    monkeypatch.setenv("FT2_CACHE", str(tiny_dir.parent))
    assert curate_pairs.main(argv) == 0
    counts = capsys.readouterr().out.strip().splitlines()[-1]
    assert counts.startswith("motion=") and "lipsync=" in counts and "quality=" in counts
    written = {d: read_pairs(out / f"pairs_{d}.jsonl") for d in ("motion", "lipsync", "quality")}
    assert counts == " ".join(f"{d}={len(p)}" for d, p in written.items())
    first = (out / "scores.jsonl").read_text()
    assert curate_pairs.main(argv) == 0
    assert (out / "scores.jsonl").read_text() == first  # nothing rescored


def test_curation_takes_judgements_from_a_scores_file(candidates, tmp_path, capsys):
    """Ratings made elsewhere (human raters, the miniature world's oracles) curate like the critic's P(Yes)."""
    ratings = {"c0_0": 0.9, "c0_1": 0.2, "c0_2": 0.5, "c1_0": 0.1, "c1_1": 0.7, "c1_2": None}
    scores = tmp_path / "ratings.jsonl"
    scores.write_text(
        "".join(json.dumps({"id": i, "scores": {"motion": v, "lipsync": v, "quality": v}}) + "\n" for i, v in ratings.items())
    )
    out = tmp_path / "pairs"
    assert (
        curate_pairs.main(
            ["--candidates", str(candidates / "candidates.jsonl"), "--out", str(out), "--scores", str(scores), "--margin", "0.1"]
        )
        == 0
    )
    pairs = read_pairs(out / "pairs_lipsync.jsonl")
    assert sorted((p.winner, p.loser) for p in pairs) == [("c0_0", "c0_1"), ("c1_1", "c1_0")]
    assert not (out / "scores.jsonl").exists()  # nothing was scored here
    from training.train_critic import read_preferences  # the same pairs, as the critic's preference lines

    preferences = read_preferences(out / "critic_preferences.jsonl")
    assert [(p["chosen"].resolve(), p["rejected"].resolve(), p["dimension"]) for p in preferences] == [
        ((candidates / "videos" / f"{p.winner}.mp4").resolve(), (candidates / "videos" / f"{p.loser}.mp4").resolve(),
         DIMENSION_NAMES.index(p.dimension))
        for d in DIMENSION_NAMES for p in read_pairs(out / f"pairs_{d}.jsonl")]
    assert len(preferences) >= 2

    scores.write_text(json.dumps({"id": "c0_0", "scores": {"lipsync": 0.5}}) + "\n")
    assert (
        curate_pairs.main(["--candidates", str(candidates / "candidates.jsonl"), "--out", str(out), "--scores", str(scores)]) == 2
    )
    assert "no judgement for 5 candidates" in capsys.readouterr().err
    scores.write_text(json.dumps({"id": "c0_0", "scores": {"lipsync": 7}}) + "\n")
    assert (
        curate_pairs.main(["--candidates", str(candidates / "candidates.jsonl"), "--out", str(out), "--scores", str(scores)]) == 2
    )
    assert "scores['lipsync'] must be" in capsys.readouterr().err


@pytest.mark.hostile(item=8, ends="refused")
def test_pairs_within_guidance_never_pair_two_guidance_levels(candidates, tmp_path):
    """--pair-within guidance: a pair's two candidates were made at one audio cfg, so its difference is not the guidance's."""
    levels = {"c0_0": 1.0, "c0_1": 1.0, "c0_2": 5.0, "c1_0": 1.0, "c1_1": 5.0, "c1_2": 5.0}
    rows = [json.loads(line) for line in (candidates / "candidates.jsonl").read_text().splitlines()]
    manifest = tmp_path / "candidates.jsonl"
    rows = [{**r, "video": str((candidates / r["video"]).resolve()), "cfg": 1.0, "audio_cfg": levels[r["id"]]} for r in rows]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ratings = {"c0_0": 0.9, "c0_1": 0.2, "c0_2": 0.1, "c1_0": 0.1, "c1_1": 0.7, "c1_2": 0.65}
    scores = tmp_path / "ratings.jsonl"
    lines = (json.dumps({"id": i, "scores": dict.fromkeys(DIMENSION_NAMES, v)}) for i, v in ratings.items())
    scores.write_text("".join(line + "\n" for line in lines))
    pairs = {}
    for within in ("condition", "guidance"):
        out = tmp_path / within
        argv = ["--candidates", str(manifest), "--out", str(out), "--scores", str(scores), "--rule", "ranking", "--margin", "0.3",
                "--pair-within", within]
        assert curate_pairs.main(argv) == 0
        pairs[within] = sorted((p.winner, p.loser) for p in read_pairs(out / "pairs_motion.jsonl"))
    assert pairs["condition"] == [("c0_0", "c0_1"), ("c0_0", "c0_2"), ("c1_1", "c1_0"), ("c1_2", "c1_0")]
    assert pairs["guidance"] == [("c0_0", "c0_1")]


def test_a_rerun_with_other_settings_duplicate_ids_or_a_busy_folder_is_refused(candidates, tiny_dir, capsys):
    import subprocess
    import sys

    from training.common.locks import LOCK_NAME

    root = candidates.parent
    argv = ["--conditions", str(root / "conditions.jsonl"), "--out", str(candidates), "--samples", "3",
            "--model-dir", str(tiny_dir), "--max-side", "64"]
    before = (candidates / "candidates.jsonl").read_text()
    assert generate_candidates.main([*argv, "--steps", "3"]) == 2
    assert "holds c0_0, made with steps 2 (now 3): use another --out" in capsys.readouterr().err
    twice = root / "twice.jsonl"
    line = (root / "conditions.jsonl").read_text().splitlines()[0]
    twice.write_text(f"{line}\n{line}\n")
    assert generate_candidates.main(["--conditions", str(twice), *argv[2:], "--steps", "2"]) == 2
    assert "condition id 'c0' appears twice" in capsys.readouterr().err
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (candidates / LOCK_NAME).write_text(str(holder.pid))
        assert generate_candidates.main([*argv, "--steps", "2"]) == 2
        assert "is in use by another run" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
        (candidates / LOCK_NAME).unlink()
    assert (candidates / "candidates.jsonl").read_text() == before


@pytest.mark.hostile(item=3, ends="refused")
def test_a_videos_folder_that_links_elsewhere_is_refused(tmp_path, candidates, tiny_dir, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "videos").symlink_to(elsewhere)
    argv = ["--conditions", str(candidates.parent / "conditions.jsonl"), "--out", str(out), "--model-dir", str(tiny_dir)]
    assert generate_candidates.main(argv) == 2
    assert "is a symbolic link: candidates are written only inside --out" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.hostile(item=2, ends="resumes")
def test_candidates_survive_a_full_disk_and_a_kill_9(candidates, tiny_dir):
    """A video that cannot be written stops the run in one sentence, with no half video and no manifest line for it; a
    kill -9 mid-run keeps every finished video: both, rerun, end with the straight run's manifest and videos."""
    root = candidates.parent
    straight = (candidates / "candidates.jsonl").read_text()
    smallest = min(p.stat().st_size for p in (candidates / "videos").iterdir())

    def argv(out):
        return ["--conditions", str(root / "conditions.jsonl"), "--out", str(out), "--samples", "3",
                "--model-dir", str(tiny_dir), "--steps", "2", "--max-side", "64"]

    full, killed = root / "full", root / "killed"
    run = run_on_a_full_disk("training.generate_candidates", argv(full), smallest - 1, tiny_dir)
    assert_stopped_cleanly_on_a_full_disk(run, full)
    assert not (full / "candidates.jsonl").is_file() or not (full / "candidates.jsonl").read_text()
    kill_9_when("training.generate_candidates", argv(killed), lambda: lines_in(killed / "candidates.jsonl") >= 2, tiny_dir)
    for out in (full, killed):
        assert generate_candidates.main(argv(out)) == 0
        assert (out / "candidates.jsonl").read_text() == straight
        for row in map(json.loads, straight.splitlines()):
            assert (out / row["video"]).read_bytes() == (candidates / row["video"]).read_bytes()


@pytest.mark.hostile(item=2, ends="resumes")
def test_curation_survives_a_full_disk_and_a_kill_9(candidates, tmp_path, tiny_dir):
    """Scores that cannot be appended stop the run in one sentence; a kill -9 mid-scoring keeps every finished score:
    both, rerun, end with the straight run's scores and pairs."""
    from ft2_core.tiny import tiny_critic_dir

    def argv(out):
        return ["--candidates", str(candidates / "candidates.jsonl"), "--out", str(out), "--margin", "0.0",
                "--critic-base", str(tiny_critic_dir(tiny_dir.parent)), "--batch-size", "1"]

    straight, full, killed = tmp_path / "straight", tmp_path / "full", tmp_path / "killed"
    assert curate_pairs.main(argv(straight)) == 0
    line = len((straight / "scores.jsonl").read_text().splitlines()[0]) + 1
    run = run_on_a_full_disk("training.curate_pairs", argv(full), 2 * line + line // 2, tiny_dir)  # the third line fails
    assert_stopped_cleanly_on_a_full_disk(run, full)
    assert kill_9_when("training.curate_pairs", argv(killed), lambda: lines_in(killed / "scores.jsonl") >= 2, tiny_dir)
    for out in (full, killed):
        assert curate_pairs.main(argv(out)) == 0
        assert curate_pairs.read_scores(out / "scores.jsonl") == curate_pairs.read_scores(straight / "scores.jsonl")
        for dimension in ("motion", "lipsync", "quality"):
            name = f"pairs_{dimension}.jsonl"
            assert (out / name).read_text() == (straight / name).read_text()



def test_candidates_take_the_cli_s_memory_options(candidates, tiny_dir, monkeypatch):
    """The CLI's memory options reach the pipeline and the sampler (their outputs equal the plain run's: tested in
    tests/ft2_core); the dtype is recorded with the other settings, so a rerun in another dtype is refused."""
    from ft2_core.pipeline import FantasyTalkingPipeline

    seen = []
    animate = FantasyTalkingPipeline.animate

    def spy(self, *args, options=None, **kwargs):
        seen.append((self.model.block_swap is not None, options.sequential_rows, options.ffn_chunk_tokens))
        return animate(self, *args, options=options, **kwargs)

    monkeypatch.setattr(FantasyTalkingPipeline, "animate", spy)
    root = candidates.parent
    argv = ["--conditions", str(root / "conditions.jsonl"), "--out", str(root / "lean"), "--samples", "1",
            "--model-dir", str(tiny_dir), "--steps", "2", "--max-side", "64"]
    lean = ["--sequential-rows", "--blocks-to-swap", "1", "--ffn-chunk-tokens", "16", "--attention", "sdpa"]
    assert generate_candidates.main([*argv, *lean]) == 0
    assert seen == [(True, True, 16), (True, True, 16)]  # both conditions, swapped, rows one at a time, chunked FFN
    assert generate_candidates.main([*argv, "--dtype", "bf16"]) == 2


@pytest.mark.parametrize("tool, option, what", [(generate_candidates, "--conditions", "conditions file"),
                                                (curate_pairs, "--candidates", "candidates manifest")])
def test_an_empty_input_list_is_refused_not_a_finished_run(tool, option, what, tmp_path, capsys):
    """An empty list (a step before that made nothing) ended with exit 0 and "generated 0 new candidates"."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    extra = ["--model-dir", "tiny"] if tool is generate_candidates else ["--proxy"]
    assert tool.main([option, str(empty), "--out", str(tmp_path / "out"), *extra]) == 2
    assert f"{what} {empty} lists nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
