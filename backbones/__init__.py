"""Built-in backbones, one module per family; importing this package registers them."""

from . import ablations, toto  # noqa: F401
