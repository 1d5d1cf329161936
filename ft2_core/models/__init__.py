"""The networks and their inputs: Wan2.1 DiT + FantasyTalking adapter, encoders, latents, audio windows."""
