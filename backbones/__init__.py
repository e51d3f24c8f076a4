"""Built-in backbones, one module per family; importing this package registers them."""

from . import toto  # noqa: F401
