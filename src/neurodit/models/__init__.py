"""The model layer of the generative core: presets, diffusers DiT, pretrained weights, SD VAE latents.

Public API (see docs/ARCHITECTURE.md, "Generative core"):
- ``ModelPreset``, ``load_preset``, ``list_presets`` (``neurodit.models.presets``)
- ``build_dit``, ``disable_label_dropout``, ``share_block_embedders``, ``check_compatible``
  (``neurodit.models.dit``)
- ``load_init``, ``export_original_state_dict``, ``convert_original_state_dict``
  (``neurodit.models.pretrained``)
- ``LatentCodec``, ``load_vae``, ``make_tiny_vae`` (``neurodit.models.latent``)
"""

from neurodit.models.dit import (
    build_dit,
    check_compatible,
    disable_label_dropout,
    dit_initialize,
    label_dropout_probs,
    num_classes_of,
    share_block_embedders,
)
from neurodit.models.latent import LatentCodec, load_vae, make_tiny_vae
from neurodit.models.presets import ModelPreset, list_presets, load_preset
from neurodit.models.pretrained import convert_original_state_dict, export_original_state_dict, load_init

__all__ = [
    "LatentCodec", "ModelPreset", "build_dit", "check_compatible", "convert_original_state_dict",
    "disable_label_dropout", "dit_initialize", "export_original_state_dict", "label_dropout_probs",
    "list_presets", "load_init", "load_preset", "load_vae", "make_tiny_vae", "num_classes_of",
    "share_block_embedders",
]

