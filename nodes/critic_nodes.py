"""Talking-Critic nodes: load the critic (or weight-free proxies) and score a generated video."""
from __future__ import annotations

from ..ft2_core.dimensions import DIMENSION_NAMES, LABELS
from . import comfy_services as comfy
from .node_helpers import CATEGORY, audio_input, says_what_to_install
from .sampling_widgets import fps_input

TINY_CRITIC = "(built-in tiny critic: random, for trying the graph)"
MINIATURE_CRITIC = "(built-in miniature critic: has learned to watch the miniature world)"
PROXIES = "(proxy metrics: no weights)"
NO_LORA = "none"


class FT2CriticLoader:
    DESCRIPTION = ("Loads Talking-Critic: a Qwen2.5-Omni thinker folder from models/ft2_critics plus our critic LoRA, "
                   "or weight-free proxy metrics (sharpness/flicker, motion smoothness, mouth-audio correlation; "
                   "lip-sync needs models/mediapipe/face_landmarker.task).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_CRITIC",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "critic_base": ([PROXIES, MINIATURE_CRITIC, TINY_CRITIC] + comfy.list_model_dirs("ft2_critics", "config.json"),
                            {"tooltip": "A Qwen2.5-Omni thinker folder, the built-in critics (miniature world only), or proxy "
                                        "metrics."}),
            "critic_lora": ([NO_LORA] + comfy.list_files("ft2_critics", (".safetensors",), comfy.containing("lora_")),
                            {"tooltip": "The critic LoRA from python -m training.train_critic (ignored for proxies)."}),
        }}

    @says_what_to_install
    def load(self, critic_base, critic_lora):
        if critic_base == PROXIES:
            return (self.proxies(),)
        from ..ft2_core.miniature.model import miniature_critic_dir
        from ..ft2_core.scoring.critic import TalkingCritic
        from ..ft2_core.tiny import tiny_critic_dir

        if critic_base == TINY_CRITIC:
            folder = tiny_critic_dir()
        elif critic_base == MINIATURE_CRITIC:
            folder = miniature_critic_dir()
        else:
            folder = comfy.resolve_dir("ft2_critics", critic_base, "critic base")
        lora = None if critic_lora == NO_LORA else comfy.resolve_file("ft2_critics", critic_lora, "critic LoRA")
        return (TalkingCritic.from_folder(folder, lora),)

    @staticmethod
    def proxies():
        from ..ft2_core.scoring.lip_mask import LipMasker
        from ..ft2_core.scoring.proxy_metrics import ProxyScorer

        task = comfy.list_files("mediapipe", (".task",))
        if "face_landmarker.task" not in task:
            return ProxyScorer(None)
        return ProxyScorer(LipMasker(comfy.resolve_file("mediapipe", "face_landmarker.task", "face landmarker")))


class FT2CriticScore:
    DESCRIPTION = (f"Scores a video (frames + its audio) on {', '.join(LABELS.values())}: each is "
                   "P(Yes) from the critic (or a proxy in 0..1). The summary string can go to a Preview Any node.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = (*DIMENSION_NAMES, "summary")
    FUNCTION = "score"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "critic": ("FT2_CRITIC", {"tooltip": "From FT2 Load Critic."}),
            "frames": ("IMAGE", {"tooltip": "The video's frames (e.g. FT2 Animate Portrait's frames)."}),
            "audio": ("AUDIO", {"tooltip": "The video's soundtrack."}),
            "fps": fps_input("Frame rate of the frames.", maximum=120.0),
        }}

    @says_what_to_install
    def score(self, critic, frames, audio, fps):
        from ..ft2_core.scoring.proxy_metrics import ProxyScorer

        scores = critic.score_clip(frames.cpu(), fps, audio_input(audio), "video")
        no_landmarker = isinstance(critic, ProxyScorer) and critic.masker is None
        unknown = ("unknown: needs models/mediapipe/face_landmarker.task (see the README's install section)" if no_landmarker
                   else "unknown: no face found in every frame")
        text = "  ".join(f"{name}: {unknown if value is None else f'{value:.3f}'}" for name, value in scores.items())
        values = tuple(float("nan") if scores[d] is None else float(scores[d]) for d in DIMENSION_NAMES)
        return {"ui": {"text": [text]}, "result": (*values, text)}


NODE_CLASS_MAPPINGS = {"FT2CriticLoader": FT2CriticLoader, "FT2CriticScore": FT2CriticScore}
NODE_DISPLAY_NAME_MAPPINGS = {"FT2CriticLoader": "FT2 Load Critic", "FT2CriticScore": "FT2 Critic Score"}
