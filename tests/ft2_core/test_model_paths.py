import json

import pytest

from ft2_core.builtin_models import model_folder
from ft2_core.errors import InputError
from ft2_core.model_paths import MANIFEST, ModelPaths, read_manifest


@pytest.mark.hostile(item=7, ends="refused")
@pytest.mark.parametrize("text, expected", [
    ('{"name": 3, "defaults": [1, 2]', "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object, got a list"),
    ('{"audio_adapter": 5}', "audio_adapter must be a string, got 5"),
    ('{"transformer": "../../etc"}', "transformer must be a path inside the model folder, got '../../etc'"),
    ('{"wav2vec": "/usr/share"}', "wav2vec must be a path inside the model folder"),
    ('{"version": "2"}', "version must be a whole number, got '2'"),
    ('{"defaults": [1, 2]}', "defaults must be an object of settings"),
    ('{"defaults": {"stepz": 3}}', "defaults.stepz is not a setting a model recommends; those are max_side, fps"),
    ('{"defaults": {"steps": "many"}}', "defaults.steps must be a whole number, got 'many'"),
    ('{"defaults": {"steps": 2.5}}', "defaults.steps must be a whole number, got 2.5"),
    ('{"defaults": {"fps": 0}}', "defaults.fps must be between 1 and 60, got 0"),
    ('{"defaults": {"max_side": 1000000000}}', "defaults.max_side must be between 16 and 1280"),
    ('{"defaults": {"cfg": NaN}}', "defaults.cfg must be a finite number, got nan"),
    ('{"defaults": {"long_method": "zigzag"}}', "defaults.long_method must be one of sliding, continuation, single"),
])
def test_a_bad_manifest_is_one_sentence_naming_the_file_and_key(tmp_path, text, expected):
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(InputError) as caught:
        ModelPaths.from_folder(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / MANIFEST)) and expected in str(caught.value)


def test_the_shipped_manifests_pass_and_notes_are_kept():
    for name in ("miniature", "tiny"):
        manifest = read_manifest(model_folder(name))
        assert manifest["defaults"] and manifest["name"].startswith("ft2-")
    assert "produced_by" in read_manifest(model_folder("miniature"))  # the model maker's notes: not refused


def test_a_folder_without_a_manifest_reads_as_empty(tmp_path):
    assert read_manifest(tmp_path) == {}
    (tmp_path / MANIFEST).write_text(json.dumps({"defaults": {"steps": 12}}))
    assert read_manifest(tmp_path)["defaults"] == {"steps": 12}
