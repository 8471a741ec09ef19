"""Training: losses, pre-training, adaptation, schedules, checkpoints."""
