"""Built-in backbones, one module per family; importing this package registers them."""

from . import ablations, baselines, controls, timm_vit, torchvision_cnn, toto, video_vit  # noqa: F401
