"""Every node follows ComfyUI's V1 API and this project's conventions."""
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
