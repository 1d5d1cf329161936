"""Files: safetensors checkpoints, MP4 video, images, JSONL."""
