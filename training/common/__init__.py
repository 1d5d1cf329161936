"""What the training tools share: config checking, checkpoints and exact resume, clean stops, data order,
the Flow-DPO loop, accelerate set-up and the frozen base model."""
