"""What the generative-prior attacks share: the generator options, the surrogate-knowledge
requirement, loading the generator, and the gradient-matching objective of a latent.

A pretrained generator (or a trained inversion network) encodes the client's data distribution, so
these attacks need **surrogate data** (threat model D or stronger, Carletti et al. 2025); under A–C
they are refused with that reason. Latent attacks reuse the optimisation attacks' machinery
(:class:`~gradinv.attacks.optimization.OptimizationAttack`: target gradient, labels, gradient
distance, batched candidates, best-so-far tracking); the variable optimised is the generator's
latent (or an intermediate feature, or its parameters) instead of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from gradinv.attacks.base import BASIC_NEEDED, UPDATES_NEEDED
from gradinv.attacks.gradients import Objective, Probe
from gradinv.attacks.objectives import GradientMatcher
from gradinv.attacks.optimization import LabelledConfig, OptimizationAttack, Setup
from gradinv.errors import ConfigError, ModelError
from gradinv.models.generators import GENERATORS, Generator, load_generator, to_model_input
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView

__all__ = [
    "GENERATOR_NEEDED",
    "GenerativeAttack",
    "GenerativeConfig",
    "latent_objective",
]

GENERATOR_NEEDED = Requirement(
    Knowledge.SURROGATE_DATA,
    "its image prior is a generator trained on data from the client's distribution (surrogate knowledge)",
)


@dataclass(frozen=True)
class GenerativeConfig(LabelledConfig):
    """Options of the attacks with a generator prior: ``generator`` (a registered name of
    :data:`gradinv.models.generators.GENERATORS` or the path of a file written by ``gradinv
    train-generator``) and ``generator_weights`` (the registered generator's weight file; empty:
    searched in ``$GRADINV_WEIGHTS`` and the torch hub cache)."""

    generator: str = "began32-celeba"
    generator_weights: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.generator.strip()
        if not name:
            raise ConfigError(
                "Expected `generator` to name a generator "
                f"({', '.join(GENERATORS.names())}) or a generator file, but got an empty string."
            )
        if not name.endswith((".pt", ".pth")) and "/" not in name and "\\" not in name:
            GENERATORS.get(name)  # an unknown name is a ConfigError listing the valid ones


class GenerativeAttack(OptimizationAttack):
    """Base class of the attacks with a generator prior (:class:`GenerativeConfig`)."""

    family = "generative"
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED, BASIC_NEEDED, GENERATOR_NEEDED)
    config: GenerativeConfig

    def __init__(self, config: GenerativeConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._generators: dict[str, Generator] = {}

    def _generator(self, device: torch.device) -> Generator:
        """The config's generator on ``device``, loaded once per device (the checks and the run
        share it; it is frozen, so no run changes it)."""
        key = str(device)
        if key not in self._generators:
            cfg = self.config
            self._generators[key] = load_generator(
                cfg.generator, weights=cfg.generator_weights or None, device=device
            )
        return self._generators[key]

    def check_view(self, view: AttackerView) -> list[str]:
        """The optimisation attacks' checks, and that the generator loads (a missing or mismatched
        weight file is reported before the attack, by ``--dry-run`` and the audit, not mid-run)."""
        problems = super().check_view(view)
        try:
            self._generator(torch.device("cpu"))
        except (ModelError, ConfigError) as err:
            problems.append(f"{self.title} cannot load its generator: {err}")
        return problems


def latent_objective(
    generator: Generator, setup: Setup, matcher: GradientMatcher, labels: Tensor, *, stage: int = 0
) -> Objective:
    """``objective(probe, h_k) = matcher(grad(to_model_input(G_from_stage(h_k)), labels))`` for one
    candidate ``h_k`` (``stage = 0``: a latent ``(N, latent_dim)``; otherwise the output of stage
    ``stage - 1``, the feature GIFD searches)."""

    def objective(probe: Probe, hk: Tensor) -> Tensor:
        x = to_model_input(generator.run_from(stage, hk), setup.input_shape, setup.normalization)
        return matcher(probe(x, labels))

    return objective
