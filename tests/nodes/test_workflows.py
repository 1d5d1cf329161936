"""Every example workflow loads: node types exist, links join matching types, widget values fit."""
import json
import sys

import pytest

from tests.nodes.conftest import REPO

OBJECT_INFO = REPO / "tests" / "data" / "comfyui_object_info_v0.8.0.json"  # GET /object_info of a real ComfyUI v0.8.0
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
INPUTS = REPO / "example_workflows" / "inputs"
WIDGET_KINDS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_EXTRA_WIDGETS = {"image_upload": 1, "audio_upload": 2, "video_upload": 1}  # added by the frontend
FRONTEND_NODES = {"Note": {"input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": []}}  # not in /object_info
TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its position
VIEW = (80, 110, 1400, 800)  # left, top, right, bottom of a laptop's canvas not covered by the frontend's bars
DETAIL_SCALE = 0.65  # the frontend draws nodes as blank boxes below 8 px text (LiteGraph.Canvas.MinFontSizeForLOD): 8/14 = 0.57


@pytest.fixture()
def definitions(ft2, monkeypatch):
    """ComfyUI v0.8.0's catalogue plus ours, both as a fresh install sees them (empty model folders)."""
    monkeypatch.delitem(sys.modules, "folder_paths")
    ours = {node_id: {"input": cls.INPUT_TYPES(), "output": list(cls.RETURN_TYPES)}
            for node_id, cls in ft2.NODE_CLASS_MAPPINGS.items()}
    return {**core_definitions(), **FRONTEND_NODES, **ours}


def core_definitions():
    if not OBJECT_INFO.is_file():
        pytest.fail(f"{OBJECT_INFO} is missing: the ComfyUI v0.8.0 node catalogue is needed to check workflows")
    return json.loads(OBJECT_INFO.read_text())


def combo_options(kind, options):
    if isinstance(kind, (list, tuple)):
        return list(kind)
    if kind == "COMBO":
        return list(options.get("options", []))
    return None


def widget_inputs(definition):
    """(name, kind, options) for each widget input in the frontend's order: required then optional."""
    found = []
    for section in ("required", "optional"):
        for name, entry in definition["input"].get(section, {}).items():
            kind, options = entry[0], entry[1] if len(entry) > 1 else {}
            if combo_options(kind, options) is not None or kind in WIDGET_KINDS:
                found.append((name, kind, options))
    return found


def all_inputs(definition):
    return {
        name: entry[0] for section in ("required", "optional") for name, entry in definition["input"].get(section, {}).items()
    }


def check_widget_value(node, name, kind, options, value):
    where = f"node {node['id']} ({node['type']}).{name}={value!r}"
    choices = combo_options(kind, options)
    if choices is not None:
        # model-folder pickers: empty on a fresh install, uploads, or ComfyUI's `*_name` loader inputs
        file_picker = not choices or any(flag in options for flag in UPLOAD_EXTRA_WIDGETS) or name.endswith("_name")
        assert isinstance(value, str), where
        assert file_picker or value in choices, f"{where} not in {choices}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
        assert options.get("min", value) <= value <= options.get("max", value), where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert options.get("min", value) <= value <= options.get("max", value), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where


def validate(workflow, definitions):
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in nodes.values():
        assert node["type"] in definitions, f"node {node['id']}: unknown type {node['type']}"
        definition = definitions[node["type"]]
        inputs = all_inputs(definition)
        for slot in node.get("inputs", []):
            assert slot["name"] in inputs, f"node {node['id']} ({node['type']}) has no input {slot['name']}"
        linked = {slot["name"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        for name, entry in definition["input"]["required"].items():
            kind = entry[0]
            if isinstance(kind, str) and kind not in WIDGET_KINDS:
                assert name in linked, f"node {node['id']} ({node['type']}): required input {name} is not linked"
        expected, values = [], list(node.get("widgets_values", []))
        for name, kind, options in widget_inputs(definition):
            expected.append((name, kind, options))
            if options.get("control_after_generate"):
                expected.append((name + " control", "COMBO", {"options": ["fixed", "increment", "decrement", "randomize"]}))
            expected.extend([(name + " upload", None, {})] * sum(n for f, n in UPLOAD_EXTRA_WIDGETS.items() if f in options))
        assert len(values) == len(expected), (
            f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {len(expected)}"
        )
        for (name, kind, options), value in zip(expected, values):
            if kind is not None:
                check_widget_value(node, name, kind, options, value)
    for link_id, src, src_slot, dst, dst_slot, link_type in workflow["links"]:
        source, target = nodes[src], nodes[dst]
        out_type = definitions[source["type"]]["output"][src_slot]
        in_name = target["inputs"][dst_slot]["name"]
        in_type = all_inputs(definitions[target["type"]])[in_name]
        assert out_type == link_type == in_type or (in_type == "*" and out_type == link_type), (
            f"link {link_id}: {source['type']} output {src_slot} ({out_type}) -> {target['type']}.{in_name} ({in_type})"
        )
        assert target["inputs"][dst_slot]["link"] == link_id and link_id in source["outputs"][src_slot]["links"]


def test_templates_are_titled_ordered_and_have_thumbnails():
    """ComfyUI 0.8.0 lists a custom node's templates from example_workflows/ by file name (the title; the description is
    the name with - and _ as spaces) with `<name>.jpg` as the thumbnail: readable names, numbered, the quick start first."""
    from PIL import Image

    names = [p.stem for p in WORKFLOWS]
    assert names[0] == "1 Quick start - animate a portrait" and len(names) == 5
    assert [int(name.split(" ", 1)[0]) for name in names] == list(range(1, len(names) + 1))
    assert not (REPO / "workflows").exists()  # one folder, so the template browser lists each graph once
    for path in WORKFLOWS:
        with Image.open(path.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and min(thumbnail.size) >= 128, path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(definitions, path):
    validate(json.loads(path.read_text()), definitions)


def boxes(workflow):
    return {
        n["id"]: (n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        for n in workflow["nodes"]
    }


def widget_rows(node):
    """A lower bound of the height the frontend needs: slots, one row per widget, previews and multiline text."""
    slots = max(len(node.get("inputs", [])), len(node.get("outputs", [])))
    extra = {"LoadImage": 256, "SaveVideo": 240, "PreviewImage": 240}.get(node["type"], 0)
    return slots * 20 + 24 * len(node.get("widgets_values") or []) + extra


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_layout_no_overlap_and_opens_in_view(path):
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        assert node["size"][1] >= widget_rows(node), f"node {node['id']} ({node['type']}) is too short for its widgets"
    placed = boxes(workflow)
    ids = sorted(placed)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            ax0, ay0, ax1, ay1 = placed[a]
            bx0, by0, bx1, by1 = placed[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"nodes {a} and {b} overlap"
    ds = workflow["extra"]["ds"]
    assert ds["scale"] >= DETAIL_SCALE, f"saved at zoom {ds['scale']}: the frontend draws its nodes as blank boxes"
    left, top = min(b[0] for b in placed.values()), min(b[1] for b in placed.values())
    right, bottom = max(b[2] for b in placed.values()), max(b[3] for b in placed.values())
    screen = (
        [(x + ds["offset"][0]) * ds["scale"] for x in (left, right)],
        [(y + ds["offset"][1]) * ds["scale"] for y in (top, bottom)],
    )
    assert screen[0][0] >= VIEW[0] - 1 and screen[1][0] >= VIEW[1] - 1, "the graph starts under the side or top bar"
    assert screen[0][1] <= VIEW[2] and screen[1][1] <= VIEW[3], f"the graph does not fit the {VIEW} view at its saved zoom"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_note_names_model_files_and_inputs_ship(path):
    workflow = json.loads(path.read_text())
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    assert notes and "models/" in notes[0]
    for node in workflow["nodes"]:
        if node["type"] in ("LoadImage", "LoadAudio"):
            assert (INPUTS / node["widgets_values"][0]).is_file()


def test_example_inputs_reach_comfyuis_input_folder(ft2, tmp_path, monkeypatch):
    comfy_services = ft2.nodes.comfy_services

    class FolderPaths:
        @staticmethod
        def get_input_directory():
            return str(tmp_path)

    monkeypatch.setattr(comfy_services, "folder_paths", lambda: FolderPaths)
    (tmp_path / "ft2_speech.wav").write_bytes(b"the user's own file")
    copied = comfy_services.install_example_inputs()
    assert (tmp_path / "ft2_portrait.png").read_bytes() == (INPUTS / "ft2_portrait.png").read_bytes()
    assert (tmp_path / "ft2_speech.wav").read_bytes() == b"the user's own file"  # never overwritten
    assert [p.name for p in copied] == ["ft2_portrait.png", "ft2_speech_long.wav"]


def test_native_workflow_uses_recommended_settings():
    workflow = json.loads((REPO / "example_workflows" / "5 Wan2.1 native loaders.json").read_text())
    by_type = {n["type"]: n for n in workflow["nodes"]}
    steps, cfg, audio_cfg, _, _, shift = by_type["FT2Sampler"]["widgets_values"][:6]
    assert (steps, cfg, audio_cfg, shift) == (30, 5.0, 5.0, 5.0)
    assert by_type["FT2AudioEmbeds"]["widgets_values"][0] == 23.0 == by_type["CreateVideo"]["widgets_values"][0]


def test_validator_catches_mistakes(definitions):
    good = json.loads((REPO / "example_workflows" / "1 Quick start - animate a portrait.json").read_text())
    mistakes = {
        "unknown type": lambda w: w["nodes"][0].update(type="FT2Nope"),
        "widget values": lambda w: w["nodes"][3]["widgets_values"].pop(),
        "not in": lambda w: w["nodes"][3]["widgets_values"].__setitem__(11, "ddim"),
        "link": lambda w: w["links"][0].__setitem__(5, "IMAGE"),
    }
    for expected, mutate in mistakes.items():
        broken = json.loads(json.dumps(good))
        mutate(broken)
        with pytest.raises(AssertionError, match=expected):
            validate(broken, definitions)
