"""TLPO: LoRA experts and their formats, the timestep-layer gate, Flow-DPO, preference pairs."""
