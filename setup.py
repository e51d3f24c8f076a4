"""Package map: each root folder the user asked for becomes a subpackage of the one namespace toto_eval.

Installing `harness`, `tasks`, ... as top-level packages would put generic names into site-packages, where
they collide with other projects. So `harness/x.py` installs as `toto_eval.harness.x`; toto_eval itself is a
PEP 420 namespace (no __init__.py). The mapping is computed here so that a new subpackage needs no edit.
"""

from setuptools import find_packages, setup

ROOTS = ("common", "harness", "tasks", "backbones", "pretrain", "leaderboard")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ROOTS:
    for pkg in [root, *(f"{root}.{sub}" for sub in find_packages(root))]:
        packages.append(f"toto_eval.{pkg}")
        package_dir[f"toto_eval.{pkg}"] = pkg.replace(".", "/")

setup(packages=packages, package_dir=package_dir)
