"""R-GAP: recursive closed-form inversion of one sample's gradient through a conv/linear network.

Zhu and Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021.

The network must be a chain ``affine_1 -> act_1 -> ... -> affine_d`` of ``Conv2d`` / ``Linear``
layers with invertible activations (leaky ReLU, sigmoid, tanh; ReLU with a loss of equations) and
no pooling, normalisation or skip connections. For one sample (B = 1), going from the classifier
down:

* **classifier** ``z_d = W_d x_d (+ b_d)``: ``dL/dW_d = g_d x_d^T`` has rank one. With a bias,
  ``g_d = dL/db_d`` and ``x_d = dL/dW_d^T g_d / |g_d|^2`` exactly. Without one, ``x_d = tau v`` and
  ``g_d = s u / tau`` from the rank-one SVD ``s u v^T``, and the scalar ``tau`` solves the softmax
  cross-entropy equation ``softmax(tau W_d v) - e_y = s u / tau`` (the paper solves the same scalar
  equation for its logistic loss); the label ``y`` is the negative entry of ``g_d``.
* **layer i** ``x_{i+1} = act(A_i x_i + b_i)``, with ``x_{i+1}`` and ``dL/dx_{i+1}`` known from the
  layer above: the pre-activation ``z_i = act^{-1}(x_{i+1})`` and ``g_i = act'(z_i) * dL/dx_{i+1}``
  give two linear systems in ``x_i`` — the forward constraints ``A_i x_i = z_i - b_i`` and the
  gradient constraints ``dL/dK_i = G(g_i) x_i`` — solved together by least squares; then
  ``dL/dx_i = A_i^T g_i``.

Each convolution (any stride and zero padding) is written as a matrix ``A_i`` by applying it to the
basis images. For the gradient constraints, ``dL/dK[o, c, :, :]`` depends only on input channel
``c``, through one matrix ``M`` ``(O k k, H W)`` shared by every channel (built from ``g_i`` and the
unfolded basis), so the block is ``I_C (x) M``; it is compressed to ``I_C (x) R`` with ``M = Q R``
before stacking. Both blocks are scaled to unit RMS column norm. The least-squares solver returns the
rank of the stacked system, and the rank deficiency of every layer (unknowns minus rank, the paper's
rank analysis) is reported in the notes; a deficient layer is solved in the minimum-norm sense.

Deviations: softmax cross-entropy over ``num_classes`` outputs instead of the paper's single logit
with logistic loss; ReLU is accepted (units with zero output give no forward equation, a deviation
the paper avoids by using invertible activations); biases are handled (the paper omits them). The
rank-deficient case is solved with the minimum-norm least-squares solution, not the paper's further
analysis.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from gradinv.attacks.base import UPDATES_NEEDED, Attack, AttackConfig, ProgressFn, register_attack
from gradinv.attacks.optimization import target_gradient
from gradinv.attacks.spear import leaf_modules
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, Normalization, Reconstruction, UpdateKind

__all__ = [
    "RGAP",
    "ChainLayer",
    "LayerSolve",
    "RGAPConfig",
    "activation_inverse",
    "conv_gradient_map",
    "layer_matrix",
    "rgap_chain",
    "rgap_recover",
    "solve_classifier",
]

logger = logging.getLogger(__name__)

SHAPES_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "it needs to know that the update comes from one sample (B = 1) and the input shape to invert it",
)

_ACTS = (nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.Identity)
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def _where(name: str) -> str:
    return f"model.{name}" if name else "model"


@dataclass(frozen=True)
class ChainLayer:
    """One affine layer of the chain, the activation after it, and its input/output shapes."""

    name: str
    module: nn.Conv2d | nn.Linear
    activation: nn.Module | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _refuse_leaf(name: str, m: nn.Module) -> str:
    kind = type(m).__name__
    if isinstance(m, _POOLS):
        return f"R-GAP needs a network of conv/linear layers without pooling; got {kind} at {_where(name)}."
    return (
        f"R-GAP needs a chain of Conv2d/Linear layers with invertible activations (leaky ReLU, sigmoid, "
        f"tanh or ReLU), without pooling, normalisation or skip connections; got {kind} at {_where(name)}. "
        "Use model 'rgap-cnn6' (the paper's CNN6) or 'lenet'."
    )


def rgap_chain(model: nn.Module, input_shape: tuple[int, int, int]) -> list[ChainLayer]:
    """The model as a chain of affine layers with activations, or :class:`AttackRefused` naming the first
    module that does not fit. The chain is checked by running it against the model on a random input."""
    leaves = leaf_modules(model)
    for name, m in leaves:
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Flatten, *_ACTS)):
            raise AttackRefused(_refuse_leaf(name, m))
        if isinstance(m, nn.Conv2d) and (
            m.groups != 1
            or tuple(m.dilation) != (1, 1)
            or m.padding_mode != "zeros"
            or isinstance(m.padding, str)
        ):
            raise AttackRefused(
                f"R-GAP builds each convolution as a matrix and supports groups = 1, dilation = 1 and "
                f"numeric zero padding; {_where(name)} has groups={m.groups}, dilation={m.dilation}, "
                f"padding={m.padding!r}, padding_mode={m.padding_mode!r}."
            )
        if isinstance(m, nn.LeakyReLU) and not m.negative_slope > 0:
            raise AttackRefused(
                f"R-GAP needs an invertible activation, but {_where(name)} is a LeakyReLU with negative "
                f"slope {m.negative_slope}."
            )
    layers: list[ChainLayer] = []
    pending: tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]] | None = None
    act: nn.Module | None = None
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(dev, dtype)
    h = x
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, m in leaves:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    if pending is not None:
                        layers.append(_chain_layer(pending, act))
                    in_shape = tuple(h.shape[1:])
                    h = m(h)
                    pending, act = (name, m, in_shape, tuple(h.shape[1:])), None
                    continue
                if isinstance(m, _ACTS) and not isinstance(m, nn.Identity):
                    if pending is None or act is not None:
                        raise AttackRefused(
                            f"R-GAP needs every activation to follow a Conv2d/Linear layer, but "
                            f"{type(m).__name__} at {_where(name)} does not."
                        )
                    act = m
                h = m(h)
            if pending is None:
                raise AttackRefused("R-GAP needs at least one Conv2d/Linear layer, but the model has none.")
            if act is not None:
                raise AttackRefused(
                    "R-GAP needs the model to end with a Linear classifier (logits), but "
                    f"{_where(pending[0])} is followed by {type(act).__name__}."
                )
            layers.append(_chain_layer(pending, None))
            expected = model(x)
    except RuntimeError as e:
        raise AttackRefused(
            "R-GAP treats the model as the chain of its layers in registration order, but running them in "
            f"that order fails ({e}): skip connections or operations inside forward()? Use model 'rgap-cnn6'."
        ) from None
    finally:
        model.train(was)
    if h.shape != expected.shape or not torch.allclose(h, expected, rtol=1e-4, atol=1e-5):
        raise AttackRefused(
            "R-GAP treats the model as the chain of its layers in registration order, but running them in "
            "that order does not reproduce the model's output (skip connections or operations inside "
            "forward()?). Use model 'rgap-cnn6'."
        )
    if not isinstance(layers[-1].module, nn.Linear):
        raise AttackRefused(
            f"R-GAP needs a Linear classifier as the last layer, but got {type(layers[-1].module).__name__} "
            f"at {_where(layers[-1].name)}."
        )
    return layers


def _chain_layer(
    pending: tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]], act: nn.Module | None
) -> ChainLayer:
    name, m, in_shape, out_shape = pending
    assert isinstance(m, (nn.Conv2d, nn.Linear))
    return ChainLayer(name, m, act, in_shape, out_shape)


# --------------------------------------------------------------------------------------------------
# Pure maths
# --------------------------------------------------------------------------------------------------


def activation_inverse(
    act: nn.Module | None, out: Tensor, *, tol: float = 1e-7
) -> tuple[Tensor, Tensor, Tensor]:
    """``(z, dact/dz, known)`` for an activation's output ``out``: the pre-activation, the derivative
    at it, and which entries of ``z`` are determined (all but ReLU's zeros).

    >>> z, d, k = activation_inverse(nn.LeakyReLU(0.2), torch.tensor([1.0, -0.2], dtype=torch.float64))
    >>> z.tolist(), d.tolist(), k.tolist()
    ([1.0, -1.0], [1.0, 0.2], [True, True])
    """
    ones = torch.ones_like(out, dtype=torch.bool)
    if act is None or isinstance(act, nn.Identity):
        return out, torch.ones_like(out), ones
    if isinstance(act, nn.LeakyReLU):
        s = float(act.negative_slope)
        pos = out >= 0
        return (
            torch.where(pos, out, out / s),
            torch.where(pos, torch.ones_like(out), torch.full_like(out, s)),
            ones,
        )
    if isinstance(act, nn.Sigmoid):
        y = out.clamp(1e-12, 1 - 1e-12)
        return torch.log(y) - torch.log1p(-y), y * (1 - y), ones
    if isinstance(act, nn.Tanh):
        y = out.clamp(-1 + 1e-12, 1 - 1e-12)
        return torch.atanh(y), 1 - y * y, ones
    if isinstance(act, nn.ReLU):
        on = out > tol * out.abs().max().clamp_min(1e-300)
        return torch.where(on, out, torch.zeros_like(out)), on.to(out.dtype), on
    raise AttackRefused(f"R-GAP cannot invert activation {type(act).__name__}.")


def layer_matrix(layer: ChainLayer) -> Tensor:
    """The layer's linear map without bias as a float64 matrix ``(out_numel, in_numel)``."""
    m = layer.module
    w = m.weight.detach().double().cpu()
    if isinstance(m, nn.Linear):
        return w
    n = math.prod(layer.in_shape)
    basis = torch.eye(n, dtype=torch.float64).view(n, *layer.in_shape)
    out = F.conv2d(basis, w, None, m.stride, m.padding)
    return out.reshape(n, -1).T.contiguous()


def conv_gradient_map(
    g: Tensor,
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor:
    """``M`` ``(O k_h k_w, H W)`` with ``vec(dL/dK[:, c]) = M vec(x[c])`` for every input channel ``c``,
    given the gradient ``g`` ``(O, H_out, W_out)`` at the convolution's output.

    >>> g, x = torch.randn(2, 3, 3, dtype=torch.float64), torch.randn(1, 1, 5, 5, dtype=torch.float64)
    >>> w = torch.zeros(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> (F.conv2d(x, w, stride=2, padding=1) * g).sum().backward()
    >>> M = conv_gradient_map(g, (5, 5), (3, 3), (2, 2), (1, 1))
    >>> bool(torch.allclose(M @ x.flatten(), w.grad.flatten()))
    True
    """
    h, w = in_hw
    n = h * w
    basis = torch.eye(n, dtype=torch.float64).view(n, 1, h, w)
    cols = F.unfold(basis, kernel, padding=padding, stride=stride)  # (HW, kk, L)
    out = torch.einsum("ol,nkl->okn", g.reshape(g.shape[0], -1).double(), cols)
    return out.reshape(-1, n)


@dataclass(frozen=True)
class LayerSolve:
    """Rank analysis of one layer's system: unknowns, equations, rank and residual."""

    name: str
    unknowns: int
    forward_equations: int
    gradient_equations: int
    rank: int
    residual: float

    @property
    def deficiency(self) -> int:
        return self.unknowns - self.rank


def _rms_scale(block: Tensor) -> float:
    f = float(block.norm())
    return f / math.sqrt(block.shape[1]) if f > 0 else 1.0


def _solve_layer(
    layer: ChainLayer, a: Tensor, z: Tensor, known: Tensor, g: Tensor, grad_w: Tensor, rcond: float
) -> tuple[Tensor, LayerSolve]:
    """Least-squares solution of the forward and gradient constraints for the layer's input."""
    m = layer.module
    b = m.bias.detach().double().cpu().reshape(-1) if m.bias is not None else None
    rhs_f = z.reshape(-1)
    if b is not None:
        rhs_f = rhs_f - (
            b if isinstance(m, nn.Linear) else b.repeat_interleave(math.prod(layer.out_shape[1:]))
        )
    k = known.reshape(-1)
    a_f, rhs_f = a[k], rhs_f[k]
    if isinstance(m, nn.Linear):
        gn = float(g.norm())
        n_in = a.shape[1]
        if gn > 0:
            a_g = torch.eye(n_in, dtype=torch.float64) * gn
            rhs_g = grad_w.T @ g.reshape(-1) / gn
        else:
            a_g, rhs_g = torch.zeros(0, n_in, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        grad_eqs = grad_w.numel()
    else:
        c, h, w = layer.in_shape
        mm = conv_gradient_map(g.reshape(layer.out_shape), (h, w), m.kernel_size, m.stride, m.padding)  # type: ignore[arg-type]
        q, r = torch.linalg.qr(mm, mode="reduced")  # (Okk, p), (p, HW), p = min(Okk, HW)
        d = grad_w.reshape(grad_w.shape[0], c, -1).permute(1, 0, 2).reshape(c, -1)  # (C, O kk)
        a_g = torch.block_diag(*([r] * c))
        rhs_g = (d @ q).reshape(-1)
        grad_eqs = grad_w.numel()
    sf, sg = _rms_scale(a_f), _rms_scale(a_g)
    mat = torch.cat([a_f / sf, a_g / sg])
    rhs = torch.cat([rhs_f / sf, rhs_g / sg])
    # QR with column pivoting (fast); its rank estimate can be too low for structured deficient
    # systems, so any deficiency is re-solved with the SVD (exact rank, minimum-norm solution)
    sol = torch.linalg.lstsq(mat, rhs[:, None], rcond=rcond, driver="gelsy")
    if sol.rank is None or int(sol.rank) < mat.shape[1]:
        sol = torch.linalg.lstsq(mat, rhs[:, None], rcond=rcond, driver="gelsd")
    x = sol.solution[:, 0]
    resid = float((mat @ x - rhs).norm() / rhs.norm().clamp_min(1e-300))
    rank = int(sol.rank) if sol.rank is not None else min(mat.shape)
    info = LayerSolve(layer.name, a.shape[1], int(k.sum()), grad_eqs, rank, resid)
    return x, info


def solve_classifier(
    weight: Tensor, bias: Tensor | None, grad_w: Tensor, grad_b: Tensor | None
) -> tuple[Tensor, Tensor, str]:
    """The classifier's input ``x`` and output gradient ``g = softmax(z) - e_y`` from its gradient
    (one sample, softmax cross-entropy), and how they were obtained.

    >>> g = torch.Generator().manual_seed(0)
    >>> w, x = torch.randn(4, 6, generator=g).double(), torch.randn(6, generator=g).double()
    >>> g = torch.softmax(w @ x, 0) - torch.eye(4, dtype=torch.float64)[2]
    >>> xr, gr, how = solve_classifier(w, None, torch.outer(g, x), None)
    >>> bool(torch.allclose(xr, x)), how
    (True, 'rank-one SVD and the softmax scalar equation')
    """
    gw = grad_w.double()
    if grad_b is not None and float(grad_b.norm()) > 0:
        g = grad_b.double()
        return gw.T @ g / (g @ g), g, "bias gradient (exact)"
    u, s, vh = torch.linalg.svd(gw, full_matrices=False)
    u0, s0, v0 = u[:, 0], float(s[0]), vh[0]
    a = weight.double() @ v0
    if bias is not None:
        b0: Tensor = bias.double()
    else:
        b0 = torch.zeros_like(a)
    h = s0 * u0
    eye = torch.eye(len(a), dtype=torch.float64)

    def resid(tau: float) -> float:
        p = torch.softmax(tau * a + b0, 0)
        gg = h / tau
        y = int(torch.argmin(gg))
        return float((p - eye[y] - gg).norm() / gg.norm())  # relative: tau -> inf is no solution

    best_tau, best_r = 1.0, math.inf
    for sign in (1.0, -1.0):
        grid = sign * np.logspace(-6, 8, 1401)
        rs = [resid(float(t)) for t in grid]
        i = int(np.argmin(rs))
        lo, hi = sorted((float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])))
        opt = minimize_scalar(
            resid, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14 * abs(grid[i])}
        )
        tau, r = (float(opt.x), float(opt.fun)) if opt.fun < rs[i] else (float(grid[i]), rs[i])
        if r < best_r:
            best_tau, best_r = tau, r
    return best_tau * v0, h / best_tau, "rank-one SVD and the softmax scalar equation"


def rgap_recover(
    layers: list[ChainLayer],
    grads: dict[str, Tensor],
    *,
    rcond: float = 1e-10,
    progress: ProgressFn | None = None,
) -> tuple[Tensor, int, tuple[LayerSolve, ...], str]:
    """Run the recursion: the network input (model input space, float64, shape of the first layer's
    input), the label, each layer's rank analysis, and how the classifier was solved.

    ``grads`` maps parameter names (``"fc.weight"``) to one sample's gradient."""

    def key(layer: ChainLayer, what: str) -> str:
        return f"{layer.name}.{what}" if layer.name else what

    top = layers[-1]
    fc = top.module
    x, g, how = solve_classifier(
        fc.weight.detach(),
        fc.bias.detach() if fc.bias is not None else None,
        grads[key(top, "weight")].cpu(),
        grads[key(top, "bias")].cpu() if key(top, "bias") in grads else None,
    )
    label = int(torch.argmin(g))
    grad_x = layer_matrix(top).T @ g  # dL/d(input of the classifier)
    infos: list[LayerSolve] = []
    total = len(layers)
    for step, layer in enumerate(reversed(layers[:-1]), start=1):
        out = x.reshape(layer.out_shape)
        z, dact, known = activation_inverse(layer.activation, out)
        g_i = (dact * grad_x.reshape(layer.out_shape)).reshape(-1)
        a = layer_matrix(layer)
        x, info = _solve_layer(layer, a, z, known, g_i, grads[key(layer, "weight")].double().cpu(), rcond)
        infos.append(info)
        grad_x = a.T @ g_i
        logger.debug("R-GAP layer %s: %s", layer.name, info)
        if progress is not None:
            progress(step, total - 1, info.residual)
    return x.reshape(layers[0].in_shape), label, tuple(reversed(infos)), how


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RGAPConfig(AttackConfig):
    """R-GAP settings: ``rcond`` is the relative singular-value cut-off of each layer's least-squares
    solve (smaller directions count as rank deficiency)."""

    rcond: float = 1e-10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.rcond < 1:
            raise ConfigError(f"Expected `rcond` in (0, 1), but got {self.rcond!r}.")


@register_attack
class RGAP(Attack):
    """R-GAP: closed-form recursive inversion of one sample's gradient (passive, analytic)."""

    name = "rgap"
    title = "R-GAP"
    family = "analytic"
    paper = "Zhu, Blaschko. R-GAP: Recursive Gradient Attack on Privacy. ICLR 2021"
    config_cls = RGAPConfig
    config: RGAPConfig
    base_requirements = (UPDATES_NEEDED, SHAPES_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        assert view.input_shape is not None and view.num_samples is not None
        if view.num_samples != 1:
            return [
                f"R-GAP inverts the gradient of a single sample (B = 1), but the update comes from "
                f"{view.num_samples} samples. Use one image (data.num_images = 1) and one client."
            ]
        if view.update.kind is UpdateKind.DELTA and view.training is not None:
            steps = view.training.local_steps(1)
            if steps > 1:
                return [
                    f"R-GAP inverts one gradient, but the client's update is a FedAvg delta of {steps} local "
                    "steps. Use protocol = 'fedsgd' or FedAvg with epochs = 1."
                ]
        try:
            rgap_chain(view.model, view.input_shape)
        except AttackRefused as e:
            return [str(e)]
        return []

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        assert view.input_shape is not None
        start = time.perf_counter()
        layers = rgap_chain(view.model, view.input_shape)
        tg = target_gradient(view)
        notes = [f"target: {tg.description}", "linear algebra in float64 on the CPU"]
        fc = layers[-1].module
        if not tg.scale_known and fc.bias is None:
            notes.append(
                "the classifier has no bias and the update's scale is unknown: its input is off by a factor"
            )
        x, label, infos, how = rgap_recover(
            layers, dict(tg.grads), rcond=self.config.rcond, progress=progress
        )
        notes.append(f"classifier input from the {how}")
        for info in infos:
            notes.append(
                f"layer {info.name}: {info.unknowns} unknowns, {info.forward_equations} forward + "
                f"{info.gradient_equations} gradient equations, rank {info.rank} "
                f"(deficiency {info.deficiency}), relative residual {info.residual:.1e}"
            )
        norm = view.normalization or Normalization.identity(view.input_shape[0])
        images = norm.invert(x.float().reshape(1, *view.input_shape)).clamp(0, 1)
        rec = Reconstruction(images=images, labels=torch.tensor([label]), label_method="rgap-classifier")
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=self.config.to_dict(),
            iterations=len(layers),
            seconds=time.perf_counter() - start,
            notes=tuple(notes),
        )
