"""Built-in tasks, one subpackage per task; importing this package registers them."""

from . import davis, imagenet_probe  # noqa: F401
