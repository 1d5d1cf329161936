"""Every node follows ComfyUI's V1 API and this project's conventions."""
import math

import pytest

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def all_nodes(ft2):
    return list(ft2.NODE_CLASS_MAPPINGS.items())


def test_ids_categories_descriptions(ft2):
    assert set(ft2.NODE_CLASS_MAPPINGS) == set(ft2.NODE_DISPLAY_NAME_MAPPINGS)
    for node_id, cls in all_nodes(ft2):
        assert node_id.startswith("FT2"), node_id
        assert cls.CATEGORY == "FantasyTalking2"
        assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20, node_id
        assert isinstance(cls.RETURN_TYPES, tuple) and cls.RETURN_TYPES
        assert callable(getattr(cls, cls.FUNCTION))
        if hasattr(cls, "RETURN_NAMES"):
            assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)


def test_input_types_are_well_formed_with_tooltips(ft2):
    for node_id, cls in all_nodes(ft2):
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                kind, options = entry
                assert isinstance(options, dict) and options.get("tooltip"), f"{node_id}.{name} lacks a tooltip"
                if isinstance(kind, (list, tuple)):
                    assert all(isinstance(o, str) for o in kind)
                    if "default" in options:
                        assert options["default"] in kind
                elif kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{name}"
                else:
                    assert isinstance(kind, str) and kind.isupper()
        params = set(spec["required"]) | set(spec.get("optional", {}))
        import inspect

        signature = inspect.signature(getattr(cls, cls.FUNCTION))
        accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
        named = {n for n, p in signature.parameters.items() if p.kind != p.VAR_KEYWORD} - {"self"}
        assert named <= params and (accepts_kwargs or params <= named), node_id


@pytest.mark.parametrize(
    "node_id,input_name,expected",
    [
        ("FT2ModelLoader", "dit_name", ["tiny_wan_i2v.safetensors"]),
        ("FT2ModelLoader", "adapter_name", ["tiny_fantasytalking.safetensors"]),
        ("FT2Wav2VecLoader", "wav2vec_folder", ["tiny-wav2vec2"]),
        (
            "FT2PipelineLoader",
            "model_folder",
            ["(built-in miniature model: cartoon faces)", "(built-in tiny demo model)", "tiny-folder"],
        ),
    ],
)
def test_file_pickers_list_only_what_fits(ft2, node_id, input_name, expected):
    assert ft2.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"][input_name][0] == expected


def test_model_folders_are_registered_with_extensions(ft2):
    import folder_paths

    paths, extensions = folder_paths.folder_names_and_paths["ft2_models"]
    assert paths[0].endswith("ft2_models") and ".json" in extensions


def frontend_int(options: dict, value: float) -> int:
    """The value ComfyUI's frontend (1.35.9) stores in an INT widget, typed or stepped with the arrows: NumberWidget
    clamps to [min, max], then useIntWidget's onValueChange rounds to min % step + k * step (JavaScript's % and
    Math.round)."""
    step, low, high = options.get("step", 1), options.get("min", 0), options.get("max", 2048)
    value = min(max(value, low), high)
    if step == 1:
        return round(value)
    offset = math.fmod(low, step)
    return int(math.floor((value - offset) / step + 0.5) * step + offset)


def int_widgets(ft2):
    for node_id, cls in all_nodes(ft2):
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, (kind, options) in spec.get(section, {}).items():
                if kind == "INT":
                    yield node_id, name, options


def test_the_frontend_keeps_every_int_default_and_bound(ft2):
    for node_id, name, options in int_widgets(ft2):
        for kept in (options["default"], options["min"], options["max"]):
            assert frontend_int(options, kept) == kept, f"{node_id}.{name}: the frontend turns {kept} into another value"


def test_frame_widgets_hold_exactly_the_valid_frame_counts(ft2):
    """Typed or stepped, a frame widget holds 4k+1 counts (or 1, "automatic"); overlaps hold what windows accept."""
    from ft2_core.models.audio_windows import check_frame_count
    from ft2_core.sampling.options import WindowOptions

    automatic = ft2.nodes.sampling_widgets.AUTOMATIC
    seen = set()
    for node_id, name, options in int_widgets(ft2):
        if not name.endswith("frames"):
            continue
        seen.add(name)
        typed = [*range(-5, 400), options["max"] - 3, options["max"] + 7]
        stepped, value = [], options["default"]
        for direction in (1, -1):
            for _ in range(60):
                value = frontend_int(options, value + direction * options["step"])
                stepped.append(value)
        stored = {frontend_int(options, v) for v in typed} | set(stepped)
        for value in stored:
            if name == "overlap_frames":
                WindowOptions("sliding", 1001, value).validate()  # below window_frames - 1: checked when both are known
            elif value != automatic or options["min"] != automatic:
                check_frame_count(value, f"{node_id}.{name}")
        if name != "overlap_frames":
            assert {frontend_int(options, v) for v in (5, 33, 81, 121)} == {5, 33, 81, 121}, f"{node_id}.{name}"
            assert frontend_int(options, 80) == 81 and frontend_int(options, 34) == 33, f"{node_id}.{name}"
    assert seen == {"num_frames", "window_frames", "overlap_frames"}
