"""Built-in tasks, one subpackage per task; importing this package registers them."""

from . import cater, davis, ego4d_sta, imagenet_probe, k400, robot  # noqa: F401
