"""Where m2rl keeps what it builds once (models, tokenizers, NLTK data): `$M2RL_CACHE`."""
from __future__ import annotations

import os
from pathlib import Path

from m2rl.runtime.atomic import directory as atomic_dir  # noqa: F401  (re-exported)


def cache_root() -> Path:
    return Path(os.environ.get("M2RL_CACHE") or "~/.cache/m2rl").expanduser()
