"""ComfyUI nodes: thin adapters between ComfyUI types and ft2_core."""
from . import comfy_services, inference_nodes, tlpo_nodes

comfy_services.register_folders()

NODE_CLASS_MAPPINGS = {**inference_nodes.NODE_CLASS_MAPPINGS, **tlpo_nodes.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {**inference_nodes.NODE_DISPLAY_NAME_MAPPINGS, **tlpo_nodes.NODE_DISPLAY_NAME_MAPPINGS}
