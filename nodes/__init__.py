"""ComfyUI nodes: thin adapters between ComfyUI types and ft2_core."""
from . import all_in_one_nodes, comfy_services, critic_nodes, native_nodes, tlpo_nodes

comfy_services.register_folders()
comfy_services.install_example_inputs()

_MODULES = (all_in_one_nodes, native_nodes, tlpo_nodes, critic_nodes)
NODE_CLASS_MAPPINGS = {k: v for m in _MODULES for k, v in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS = {k: v for m in _MODULES for k, v in m.NODE_DISPLAY_NAME_MAPPINGS.items()}
