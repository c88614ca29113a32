"""Training-based reliability: the K@N IDK dataset, LoRA training and saved adapters, and the training experiments."""
