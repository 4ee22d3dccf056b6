"""The model layer of the generative core: presets, diffusers DiT, pretrained weights, SD VAE latents.

Public API (see docs/ARCHITECTURE.md, "Generative core"):
- ``ModelPreset``, ``load_preset``, ``list_presets`` (``neurodit.models.presets``)
- ``build_dit``, ``disable_label_dropout``, ``share_block_embedders``, ``check_compatible``
  (``neurodit.models.dit``)
- ``load_init``, ``export_original_state_dict``, ``convert_original_state_dict``
  (``neurodit.models.pretrained``)
- ``LatentCodec``, ``load_vae``, ``make_tiny_vae`` (``neurodit.models.latent``)
- ``SmallCNN`` (``neurodit.models.small_cnn``: the downstream classifier, the C2ST CNN view, the judge's encoder)
  and its training routine ``fit_network`` (``neurodit.models.fit``)
"""

import importlib

# name -> submodule (relative). Loaded on first use (PEP 562): the judge and the downstream classifier import
# neurodit.models.small_cnn / neurodit.models.fit, which must not pull in diffusers (seconds per process).
_HOMES = {
    "build_dit": ".dit", "check_compatible": ".dit", "disable_label_dropout": ".dit", "dit_initialize": ".dit",
    "label_dropout_probs": ".dit", "num_classes_of": ".dit", "share_block_embedders": ".dit",
    "LatentCodec": ".latent", "load_vae": ".latent", "make_tiny_vae": ".latent",
    "ModelPreset": ".presets", "list_presets": ".presets", "load_preset": ".presets",
    "convert_original_state_dict": ".pretrained", "export_original_state_dict": ".pretrained", "load_init": ".pretrained",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module 'neurodit.models' has no attribute {name!r}")


__all__ = [
    "LatentCodec", "ModelPreset", "build_dit", "check_compatible", "convert_original_state_dict",
    "disable_label_dropout", "dit_initialize", "export_original_state_dict", "label_dropout_probs",
    "list_presets", "load_init", "load_preset", "load_vae", "make_tiny_vae", "num_classes_of",
    "share_block_embedders",
]

