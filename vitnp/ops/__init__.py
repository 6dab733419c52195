"""The ViT as explicit forward/backward pairs, one module per idea."""
