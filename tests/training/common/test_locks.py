"""One run per output folder."""
import os
import subprocess
import sys

import pytest

from ft2_core.errors import InputError
from training.common.locks import LOCK_NAME, folder_lock


@pytest.mark.hostile(item=8, ends="refused")
def test_a_second_run_into_the_folder_is_refused_and_the_lock_goes_with_the_run(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(str(holder.pid))  # a live run holds it
        with pytest.raises(InputError, match=rf"train.output {tmp_path} is in use by another run \(process {holder.pid}\)"):
            with folder_lock(tmp_path, "train.output"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, "train.output"):  # the holder is gone: its lock is taken over
        assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # released, and no helper file left


@pytest.mark.hostile(item=8, ends="refused")
def test_a_training_into_a_folder_in_use_or_into_no_folder_exits_2(tmp_path, capsys):
    from training import train_expert

    config = ["--config", "training/configs/tiny_expert.toml"]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(str(holder.pid))
        assert train_expert.main([*config, "--set", f'train.output="{tmp_path}"']) == 2
        assert "is in use by another run" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert train_expert.main([*config, "--set", 'train.output=""']) == 2
    assert "train.output is empty" in capsys.readouterr().err


@pytest.mark.hostile(item=8, ends="refused")
def test_a_folder_that_cannot_be_made_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(InputError, match=f"train.output {blocker / 'out'}: cannot write there"):
        with folder_lock(blocker / "out", "train.output"):
            pass
