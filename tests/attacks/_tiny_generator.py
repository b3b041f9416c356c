"""A tiny seeded generator file for the generative attacks' tests and contract rows.

``tiny_generator_file()`` writes (once per process) a 32x32 DCGAN with base width 4 and latent 16,
randomly initialised from seed 0, with :func:`gradinv.models.generators.save_generator`, and returns
its path; attack configs name it as ``generator = <path>``."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from gradinv.models.generators import build_generator, save_generator


@cache
def tiny_generator_file() -> str:
    folder = Path(tempfile.mkdtemp(prefix="gradinv-tiny-generator-"))
    gen = build_generator("dcgan32", seed=0, nz=16, ngf=4)
    return str(save_generator(gen, folder / "tiny_dcgan32.pt", trained_on="nothing (random init, tests)"))
