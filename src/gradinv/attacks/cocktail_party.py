"""Cocktail Party Attack (CPA): unmixing a batch from a linear layer's gradient with ICA.

Kariyappa, Guo, Maeng, Xiong, Suh, Qureshi, Lee, "Cocktail Party Attack: Breaking Aggregation-Based
Privacy in Federated Learning Using Independent Component Analysis", ICML 2023. Implemented from the
paper's description only (its public code is not used).

The weight gradient of a linear layer ``z = W x + b`` over a batch is ``dL/dW = sum_b delta_b x_b^T``:
every row is a linear mixture of the B inputs, with mixing matrix ``Delta^T`` ``(m, B)`` — a blind
source separation problem (the "cocktail party"), solvable when ``m >= B``. It does not matter
whether the gradient is one client's or an aggregate of several (secure aggregation sums gradients).

1. **Whitening**: the rows of the gradient (one mixture each) are centred and projected onto their
   ``B`` principal components, scaled to unit variance.
2. **Unmixing**: unmixing vectors ``w_i`` maximise the non-Gaussianity of ``w_i^T z``, first with
   FastICA (Hyvärinen and Oja, 2000; scikit-learn, with an ``sqrt(y^2 + 0.1)`` contrast), then refined
   by Adam on the paper's objective without FastICA's hard orthogonality: a non-Gaussianity term
   (the sparsity contrast ``log(eps + y^2)``), plus a soft mutual-independence penalty on the cosine
   similarity between unmixing vectors (pairs above ``max_cosine`` are penalised), which lets correlated
   sources be unmixed. For image inputs the separation runs on the images' horizontal and vertical
   finite differences (a linear map of every mixture, so the same unmixing applies to the raw
   gradient): the sparsity of those differences is the total-variation prior of the paper, and
   natural images are far more non-Gaussian and less correlated in that domain than in pixels.
3. **Sign and scale**: the bias gradient ``dL/db = sum_b delta_b`` is the same mixture of a constant
   source, so ``x_i = (u_i^T dL/dW) / (u_i^T dL/db)`` fixes each source's scale and sign (exact for an
   exact unmixing vector ``u_i``). When that scale is implausible (the image would leave ``[0, 1]``
   by far) or the layer has no bias, the source is mapped into ``[0, 1]`` by its 0.5 % and 99.5 %
   quantiles instead, with the sign of the bias projection (or, without bias, of the source's mean).
4. **Conv nets**: when the attacked layer reads features rather than the image, steps 1–3 recover
   the features (separated on the finite differences of the feature maps when the layer reads a
   flattened conv feature map, on the raw features otherwise) and the images are found by feature
   inversion: Adam on dummy images minimising ``1 - cos(f(x_i), feature_i)`` plus a TV prior, inside
   the image box (the paper's feature inversion, with our optimiser settings). Feature recovery
   needs features that are close to independent across samples; strongly correlated features (e.g.
   from a small untrained conv layer on unnormalised images) are not separable by ICA.

Deviations: the separation domain (image differences), the two-stage optimiser (FastICA, then the
soft-penalty objective), the penalty's form (a squared hinge on ``|cos|``) and the bias-based scale
are our choices where the paper leaves room. Labels are not recovered.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from gradinv.attacks._layers import layer_inputs
from gradinv.attacks.base import UPDATES_NEEDED, Attack, AttackConfig, ProgressFn, register_attack
from gradinv.attacks.regularizers import total_variation
from gradinv.attacks.spear import LayerGradient, leaf_modules
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, Normalization, Reconstruction, UpdateKind

__all__ = [
    "CocktailParty",
    "CocktailPartyConfig",
    "UnmixOutcome",
    "fastica_unmixing",
    "finite_differences",
    "invert_features",
    "refine_unmixing",
    "scale_sources",
    "unmix_gradient",
    "whiten",
]

logger = logging.getLogger(__name__)

SHAPES_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "it unmixes as many sources as there are samples (B) and reshapes them to the input shape",
)


@dataclass(frozen=True)
class CocktailPartyConfig(AttackConfig):
    """Cocktail Party settings.

    * ``layer``: the Linear layer whose gradient is unmixed (default: the first one).
    * ``domain``: ``auto`` separates image inputs on their finite differences and features as they are.
    * ``fastica_iterations``: FastICA's iteration limit (the initial unmixing).
    * ``iterations``, ``lr``, ``eps``, ``max_cosine``, ``independence``: the Adam refinement of the
      unmixing (steps, learning rate, the contrast ``log(eps + y^2)``, the cosine above which pairs of
      unmixing vectors are penalised, and that penalty's weight).
    * ``feature_iterations``, ``feature_lr``, ``feature_tv``: feature inversion for conv nets.
    """

    layer: str | None = None
    domain: Literal["auto", "differences", "raw"] = "auto"
    fastica_iterations: int = 1000
    iterations: int = 300
    lr: float = 0.003
    eps: float = 0.01
    max_cosine: float = 0.2
    independence: float = 3e4
    feature_iterations: int = 2000
    feature_lr: float = 0.05
    feature_tv: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("fastica_iterations", "feature_iterations"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"Expected `{key}` to be an int >= 1, but got {v!r}.")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ConfigError(f"Expected `iterations` to be an int >= 0, but got {self.iterations!r}.")
        for key in ("lr", "eps", "feature_lr"):
            v = getattr(self, key)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"Expected `{key}` to be a positive number, but got {v!r}.")
        if not 0 < self.max_cosine < 1:
            raise ConfigError(f"Expected `max_cosine` in (0, 1), but got {self.max_cosine!r}.")
        for key in ("independence", "feature_tv"):
            if getattr(self, key) < 0:
                raise ConfigError(f"Expected `{key}` >= 0, but got {getattr(self, key)!r}.")


# --------------------------------------------------------------------------------------------------
# Pure functions (float64)
# --------------------------------------------------------------------------------------------------


def finite_differences(rows: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Horizontal and vertical differences of every row seen as an image ``(C, H, W)``, concatenated.

    >>> finite_differences(torch.arange(4.0)[None], (1, 2, 2)).tolist()
    [[1.0, 1.0, 2.0, 2.0]]
    """
    img = rows.reshape(rows.shape[0], *shape)
    dh = (img[..., :, 1:] - img[..., :, :-1]).reshape(rows.shape[0], -1)
    dv = (img[..., 1:, :] - img[..., :-1, :]).reshape(rows.shape[0], -1)
    return torch.cat([dh, dv], dim=1)


def whiten(mixtures: Tensor, k: int, *, rank_tol: float = 1e-9) -> tuple[Tensor, Tensor]:
    """PCA whitening of ``mixtures`` ``(m, n)`` (one mixture per row, ``n`` observations) onto at most
    ``k`` components: returns ``(z, whitener)`` with ``z = whitener @ (mixtures - row means)``
    ``(k', n)`` of identity covariance; ``k' <= k`` drops components below ``rank_tol`` of the largest.

    >>> z, wh = whiten(torch.randn(5, 200, dtype=torch.float64), 3)
    >>> torch.allclose(z @ z.T / 200, torch.eye(3, dtype=torch.float64))
    True
    """
    centred = mixtures - mixtures.mean(dim=1, keepdim=True)
    cov = centred @ centred.T / centred.shape[1]
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0), evecs.flip(1)
    keep = min(k, int((evals > rank_tol * evals[0].clamp_min(1e-300)).sum()))
    whitener = (evecs[:, :keep] / evals[:keep].sqrt()).T
    return whitener @ centred, whitener


def _sqrt_contrast(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FastICA non-linearity of ``G(y) = sqrt(y^2 + 0.1)``: ``g`` and the mean of ``g'``."""
    r = np.sqrt(u * u + 0.1)
    return u / r, (0.1 / r**3).mean(axis=-1)


def fastica_unmixing(z: Tensor, *, max_iter: int, seed: int) -> Tensor:
    """Orthogonal unmixing ``(k, k)`` of whitened data ``z`` ``(k, n)`` by FastICA (symmetric)."""
    from sklearn.decomposition import FastICA

    k = z.shape[0]
    if k == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    ica = FastICA(whiten=False, fun=_sqrt_contrast, max_iter=max_iter, tol=1e-7, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ica.fit(z.T.cpu().numpy())
    for w in caught:
        logger.info("FastICA: %s", w.message)
    return torch.from_numpy(np.ascontiguousarray(ica.components_)).to(torch.float64)


def refine_unmixing(
    w: Tensor,
    z: Tensor,
    *,
    iterations: int,
    lr: float,
    eps: float,
    max_cosine: float,
    independence: float,
    progress: ProgressFn | None = None,
) -> Tensor:
    """Adam on ``mean log(eps + y^2) + independence * mean_{i != j} relu(|cos(w_i, w_j)| - max_cosine)^2``
    over unit-norm rows ``w_i`` (``y = w z``): sparse (non-Gaussian) sources, softly independent."""
    k = w.shape[0]
    if k == 1 or iterations == 0:
        return w / w.norm(dim=1, keepdim=True)
    param = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    off = ~torch.eye(k, dtype=torch.bool)
    for step in range(iterations):
        wn = param / param.norm(dim=1, keepdim=True)
        y = wn @ z
        contrast = torch.log(eps + y * y).mean()
        cos = wn @ wn.T
        penalty = (torch.relu(cos[off].abs() - max_cosine) ** 2).mean()
        loss = contrast + independence * penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, iterations, float(loss))
    with torch.no_grad():
        return param / param.norm(dim=1, keepdim=True)


def scale_sources(
    sources: Tensor,
    bias_projection: Tensor | None,
    normalization: Normalization | None,
    shape: tuple[int, ...],
    *,
    image: bool,
) -> tuple[Tensor, list[str]]:
    """Fix the scale and sign of each unmixed source ``(k, n)``: divide by its bias projection, or map
    it into the image box when that is impossible or implausible (images only). Returns the sources
    in the layer's input space and one word per source (``bias`` / ``box``)."""
    k = sources.shape[0]
    how = ["bias"] * k
    if bias_projection is not None:
        out = sources / bias_projection[:, None]
    else:
        out = sources.clone()
        how = ["box"] * k
    if not image:
        if bias_projection is None:
            out = out * torch.sign(out.mean(dim=1, keepdim=True) + 1e-300)
        return out, how
    norm = normalization or Normalization.identity(shape[0])
    for i in range(k):
        img = norm.invert(out[i].reshape(1, *shape))
        outside = float(((img < -0.25) | (img > 1.25)).double().mean())
        if how[i] == "bias" and math.isfinite(float(img.sum())) and outside <= 0.05:
            continue
        how[i] = "box"
        s = sources[i]
        sign = (
            float(torch.sign(bias_projection[i]))
            if bias_projection is not None
            else float(torch.sign(s.mean()))
        )
        s = s * (sign or 1.0)
        # map the source's 0.5% / 99.5% quantiles of the image onto [0, 1] (one affine map per image)
        unit = norm.invert(s.reshape(1, *shape)) - norm.invert(torch.zeros(1, *shape, dtype=s.dtype))
        lo, hi = torch.quantile(unit.flatten(), torch.tensor([0.005, 0.995], dtype=s.dtype))
        a = 1.0 / float(hi - lo) if float(hi - lo) > 0 else 1.0
        target = (unit - lo) * a  # the image in [0, 1]
        out[i] = norm.apply(target.clamp(0, 1)).flatten()
    return out, how


@dataclass(frozen=True)
class UnmixOutcome:
    """Unmixed layer inputs ``(k, n)``, the unmixing vectors ``(k, m)``, how each was scaled, the
    number of components, and whether the separation ran on finite differences."""

    inputs: Tensor
    unmixing: Tensor
    scaled_by: tuple[str, ...]
    components: int
    differences: bool


def unmix_gradient(
    grad_w: Tensor,
    grad_b: Tensor | None,
    num_samples: int,
    config: CocktailPartyConfig = CocktailPartyConfig(),
    *,
    spatial_shape: tuple[int, int, int] | None = None,
    image: bool = False,
    normalization: Normalization | None = None,
    progress: ProgressFn | None = None,
) -> UnmixOutcome:
    """Steps 1–3 of the attack on a layer gradient ``(m, n)``: the ``num_samples`` inputs, unmixed.

    ``spatial_shape`` ``(C, H, W)`` says the layer's input is an image or a feature map of that shape
    (separation on its finite differences when ``domain`` is ``auto``); ``image`` marks it as the
    image itself (``[0, 1]`` box fallback for the scale, through ``normalization``).

    >>> g = torch.Generator().manual_seed(0)
    >>> sources = torch.distributions.Laplace(0.0, 1.0).sample((3, 2000)).double()
    >>> mixing = torch.randn(16, 3, generator=g, dtype=torch.float64)
    >>> out = unmix_gradient(mixing @ sources, mixing.sum(1), 3, CocktailPartyConfig(domain="raw"))
    >>> corr = torch.corrcoef(torch.cat([out.inputs, sources]))[:3, 3:].abs()
    >>> bool((corr.max(dim=1).values > 0.99).all())
    True
    """
    cfg = config
    y = grad_w.double()
    if image and spatial_shape is None:
        raise ConfigError("Expected the image shape for image inputs (`spatial_shape`), but got none.")
    use_diff = cfg.domain == "differences" or (cfg.domain == "auto" and spatial_shape is not None)
    if use_diff and spatial_shape is None:
        raise ConfigError(
            "Expected an image or feature-map input for domain = 'differences', but the layer reads a "
            "flat vector. Use domain = 'raw' or 'auto'."
        )
    observed = finite_differences(y, spatial_shape) if use_diff and spatial_shape is not None else y
    z, whitener = whiten(observed, num_samples)
    w0 = fastica_unmixing(z, max_iter=cfg.fastica_iterations, seed=cfg.seed)
    w = refine_unmixing(
        w0,
        z,
        iterations=cfg.iterations,
        lr=cfg.lr,
        eps=cfg.eps,
        max_cosine=cfg.max_cosine,
        independence=cfg.independence,
        progress=progress,
    )
    unmixing = w @ whitener  # (k, m) in gradient-row space
    sources = unmixing @ y
    bias_proj = unmixing @ grad_b.double() if grad_b is not None else None
    shape: tuple[int, ...] = spatial_shape if spatial_shape is not None else (y.shape[1],)
    inputs, how = scale_sources(sources, bias_proj, normalization, shape, image=image)
    return UnmixOutcome(inputs, unmixing, tuple(how), int(z.shape[0]), use_diff)


# --------------------------------------------------------------------------------------------------
# Model structure, feature inversion
# --------------------------------------------------------------------------------------------------


def _where(name: str) -> str:
    return f"model.{name}" if name else "model"


def _target_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in leaf_modules(model) if isinstance(m, nn.Linear)]
    if name is not None:
        for n, m in linears:
            if n == name:
                return n, m
        valid = ", ".join(n for n, _ in linears) or "none"
        raise AttackRefused(
            f"Cocktail Party needs `layer` to name a Linear layer of the model, but got {name!r}. "
            f"Linear layers: {valid}."
        )
    if not linears:
        raise AttackRefused("Cocktail Party needs a Linear layer to unmix, but the model has none.")
    return linears[0]


def _layer_input(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    seen = layer_inputs(model, layer, x)
    if len(seen) != 1:
        raise AttackRefused(
            f"Cocktail Party expects the attacked layer to run once per forward pass, not {len(seen)}."
        )
    return seen[0].flatten(1)


def _input_structure(
    model: nn.Module, layer: nn.Linear, input_shape: tuple[int, int, int]
) -> tuple[bool, tuple[int, int, int] | None]:
    """Whether ``layer`` reads the flattened image, and the ``(C, H, W)`` shape of the image or of the
    last feature map flattened into it (``None`` when its input is not a flattened map)."""
    x = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(layer.weight)
    maps: list[tuple[int, ...]] = []

    def record(_m: nn.Module, _args: object, out: object) -> None:
        if isinstance(out, Tensor) and out.ndim == 4 and () not in maps:
            maps.append(tuple(out.shape[1:]))

    def mark(_m: nn.Module, _args: object) -> None:
        maps.append(())

    hooks = [m.register_forward_hook(record) for _, m in leaf_modules(model) if m is not layer]
    hooks.append(layer.register_forward_pre_hook(mark))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            inp = _layer_input(model, layer, x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    if inp.shape == x.flatten(1).shape and torch.equal(inp, x.flatten(1)):
        return True, input_shape
    before = maps[: maps.index(())] if () in maps else []
    fitting = [s for s in before if math.prod(s) == inp.shape[1]]
    return False, ((fitting[-1][0], fitting[-1][1], fitting[-1][2]) if fitting else None)


def invert_features(
    model: nn.Module,
    layer: nn.Module,
    features: Tensor,
    input_shape: tuple[int, int, int],
    normalization: Normalization,
    *,
    iterations: int,
    lr: float,
    tv: float,
    seed: int,
    mode: str = "eval",
    progress: ProgressFn | None = None,
) -> Tensor:
    """Images ``(k, C, H, W)`` in ``[0, 1]`` whose features at ``layer``'s input match ``features``
    ``(k, d)`` in cosine similarity, with a TV prior (Adam, box-constrained in image space)."""
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    target = features.to(dev, dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(features.shape[0], *input_shape, generator=gen).to(dev, dtype).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    was = model.training
    model.train(mode == "train")
    try:
        for step in range(iterations):
            f = _layer_input(model, layer, normalization.apply(x))
            cos = torch.nn.functional.cosine_similarity(f, target, dim=1)
            loss = (1 - cos).mean() + tv * total_variation(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            if progress is not None:
                progress(step + 1, iterations, float(loss))
    finally:
        model.train(was)
    return x.detach().cpu().float()


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@register_attack
class CocktailParty(Attack):
    """Cocktail Party Attack: ICA on a linear layer's gradient (passive, analytic)."""

    name = "cocktail-party"
    title = "Cocktail Party"
    family = "analytic"
    paper = (
        "Kariyappa, Guo, Maeng, Xiong, Suh, Qureshi, Lee. Cocktail Party Attack: Breaking "
        "Aggregation-Based Privacy in Federated Learning Using Independent Component Analysis. ICML 2023"
    )
    config_cls = CocktailPartyConfig
    config: CocktailPartyConfig
    base_requirements = (UPDATES_NEEDED, SHAPES_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        assert view.num_samples is not None and view.input_shape is not None
        try:
            name, layer = _target_layer(view.model, self.config.layer)
        except AttackRefused as e:
            return [str(e)]
        n = view.num_samples
        if layer.out_features < n or layer.in_features < n:
            return [
                f"Cocktail Party unmixes B = {n} sources from the gradient of {_where(name)}, which needs "
                f"at least B output units and B input features, but the layer is {layer.in_features} -> "
                f"{layer.out_features}. Use a wider layer (e.g. model 'mlp' with hidden = [256]) or fewer "
                "samples."
            ]
        if view.update.kind is UpdateKind.DELTA and view.training is not None:
            per_client = max(1, round(n / max(1, view.aggregated_over)))
            steps = view.training.local_steps(per_client)
            if steps > 1:
                return [
                    "Cocktail Party unmixes one gradient, but the client's update is a FedAvg delta of "
                    f"{steps} local steps. Use protocol = 'fedsgd' or FedAvg with one local step."
                ]
        return []

    def _gradient(self, view: AttackerView, name: str) -> LayerGradient:
        upd = view.update
        sign = -1.0 if upd.kind is UpdateKind.DELTA else 1.0
        w = upd.params[f"{name}.weight" if name else "weight"].detach().double().cpu() * sign
        b = upd.params.get(f"{name}.bias" if name else "bias")
        notes = [
            "target: shared gradient (FedSGD)"
            if sign > 0
            else "target: -delta (one FedAvg step; scale cancels)"
        ]
        return LayerGradient(w, b.detach().double().cpu() * sign if b is not None else None, tuple(notes))

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        assert view.num_samples is not None and view.input_shape is not None
        cfg = self.config
        start = time.perf_counter()
        name, layer = _target_layer(view.model, cfg.layer)
        grad = self._gradient(view, name)
        norm = view.normalization or Normalization.identity(view.input_shape[0])
        reads_image, spatial = _input_structure(view.model, layer, view.input_shape)
        out = unmix_gradient(
            grad.weight,
            grad.bias,
            view.num_samples,
            cfg,
            spatial_shape=spatial,
            image=reads_image,
            normalization=norm,
            progress=progress,
        )
        notes = [*grad.notes, f"unmixed {out.components} sources from the gradient of {_where(name)}"]
        if out.components < view.num_samples:
            notes.append(f"the gradient has rank {out.components} < B = {view.num_samples}")
        if view.aggregated_over > 1:
            notes.append(f"aggregate of {view.aggregated_over} clients: all their samples are mixed together")
        n_box = sum(h == "box" for h in out.scaled_by)
        notes.append(
            f"scale and sign from the bias gradient for {len(out.scaled_by) - n_box} sources, "
            f"box-fitted for {n_box}"
        )
        iterations = cfg.fastica_iterations + cfg.iterations
        if reads_image:
            x_model = out.inputs.float().reshape(-1, *view.input_shape)
            images = norm.invert(x_model).clamp(0, 1)
            notes.append(
                "separation on the images' finite differences" if out.differences else "separation on pixels"
            )
        else:
            mode = view.training.model_mode if view.training is not None else "eval"
            images = invert_features(
                view.model,
                layer,
                out.inputs,
                view.input_shape,
                norm,
                iterations=cfg.feature_iterations,
                lr=cfg.feature_lr,
                tv=cfg.feature_tv,
                seed=cfg.seed,
                mode=mode,
                progress=progress,
            )
            iterations += cfg.feature_iterations
            domain = "the feature maps' finite differences" if out.differences else "the raw features"
            notes.append(
                f"{_where(name)} reads features: separation on {domain}, images from feature inversion "
                f"({cfg.feature_iterations} Adam steps)"
            )
        logger.info("Cocktail Party: %s", "; ".join(notes))
        return AttackResult(
            attack=self.name,
            reconstruction=Reconstruction(images=images),
            parameters=cfg.to_dict(),
            iterations=iterations,
            seconds=time.perf_counter() - start,
            notes=tuple(notes),
        )
