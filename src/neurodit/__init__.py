"""neurodit: synthetic 3D brain MD maps with a finetuned Diffusion Transformer."""

__version__ = "0.1.0"
