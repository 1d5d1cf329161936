"""The package imports as ComfyUI imports it: by file path, made-up module name, repo not on sys.path."""
import subprocess
import sys
import textwrap

from tests.nodes.conftest import REPO

LOADER = textwrap.dedent(f"""
    import importlib.util, sys
    assert {str(REPO)!r} not in sys.path and '' not in sys.path
    spec = importlib.util.spec_from_file_location("comfy_custom_node_1234", {str(REPO / "__init__.py")!r},
                                                  submodule_search_locations=[{str(REPO)!r}])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
""")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", LOADER + textwrap.dedent(code)], capture_output=True, text=True, cwd="/")


def test_imports_by_file_path_with_synthetic_name():
    result = run("""
        print(sorted(module.NODE_CLASS_MAPPINGS))
        assert "ft2_core" not in sys.modules  # nothing leaked as a top-level module
        assert not any(m.startswith(("diffusers", "transformers")) for m in sys.modules)  # heavy imports stay lazy
    """)
    assert result.returncode == 0, result.stderr
    assert "FT2Animate" in result.stdout and "FT2Sampler" in result.stdout


def test_missing_optional_dependency_breaks_only_the_node_that_needs_it():
    result = run("""
        import importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "diffusers":
                    raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")
        sys.meta_path.insert(0, Block())
        nodes = module.nodes.native_nodes
        try:
            nodes.FT2ModelLoader().load("x.safetensors", "y.ckpt", "auto")
        except RuntimeError as err:
            print("MESSAGE:", err)
    """)
    assert result.returncode == 0, result.stderr
    assert "MESSAGE: FantasyTalking2 needs the Python package 'diffusers'" in result.stdout
    assert "pip install -r requirements.txt" in result.stdout
