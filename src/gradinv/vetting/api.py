"""``vet``: inspect a model received from the server before training on it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gradinv.errors import GradinvError, ModelError, UpdateError
from gradinv.types import ModelUpdate
from gradinv.vetting import behaviour, checks
from gradinv.vetting.findings import Finding, VetReport

__all__ = ["ModelLike", "vet"]

logger = logging.getLogger(__name__)

#: A model, or its named tensors (a ``state_dict``).
ModelLike = nn.Module | Mapping[str, Tensor]

#: Checks on the received model alone, in report order.
PATTERN_CHECKS: tuple[tuple[str, Callable[[checks.State], list[Finding]]], ...] = (
    ("zero-weights", checks.check_zero_weights),
    ("extreme-bias", checks.check_extreme_bias),
    ("constant-weights", checks.check_constant),
    ("parallel-rows", checks.check_parallel_rows),
    ("monotone-bias", checks.check_monotone_bias),
    ("sign-balance", checks.check_sign_balance),
    ("row-norms", checks.check_row_norms),
    ("scale", checks.check_scale),
    ("classifier-bias", checks.check_classifier_bias),
)


def _as_checked(t: Tensor) -> Tensor:
    """A CPU float64 copy of floating tensors (exact for float32/16), so that every check converts
    once; other tensors as they are."""
    t = t.detach().cpu()
    return t.double() if t.is_floating_point() else t


def require_finite(
    state: dict[str, Tensor], what: str, error: type[GradinvError] = ModelError
) -> dict[str, Tensor]:
    """``state`` when every floating tensor is finite; otherwise one error naming the tensors."""
    bad = [
        (k, int((~torch.isfinite(v)).sum()), v.numel())
        for k, v in state.items()
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())
    ]
    if bad:
        shown = ", ".join(f"{k!r} ({n} of {total} values)" for k, n, total in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise error(
            f"Expected finite numbers in the {what}, but {len(bad)} tensor(s) hold NaN or inf: "
            f"{shown}{more}. "
            "No vetting check can say anything sound about them; a diverged training run or a corrupted "
            "file produces these. Vet the model you actually received (and the update you would send)."
        )
    return state


def _state(model: ModelLike, what: str, error: type[GradinvError] = ModelError) -> dict[str, Tensor]:
    if isinstance(model, nn.Module):
        return require_finite({k: _as_checked(v) for k, v in model.state_dict().items()}, what, error)
    if isinstance(model, Mapping) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in model.items()
    ):
        if not model:
            raise error(f"Expected the {what} to hold at least one tensor, but it is empty.")
        return require_finite({k: _as_checked(v) for k, v in model.items()}, what, error)
    raise error(
        f"Expected the {what} as an nn.Module or a state_dict (a mapping of names to tensors), but got "
        f"{type(model).__name__}."
    )


def _infer_classes(state: Mapping[str, Tensor]) -> int:
    name = checks.classifier_name(state)
    if name is None:
        raise ModelError(
            "Expected a model ending in an nn.Linear classifier to infer the number of classes, but found no "
            "2-D weight. Pass architecture_options={'num_classes': ...}."
        )
    return int(state[name].shape[0])


def _reference(
    architecture: str | nn.Module, state: Mapping[str, Tensor], options: Mapping[str, Any] | None
) -> tuple[str, nn.Module]:
    if isinstance(architecture, nn.Module):
        return f"reference {type(architecture).__name__}", architecture
    from gradinv.models import build_model

    opts = dict(options or {})
    opts.setdefault("num_classes", _infer_classes(state))
    return f"registered architecture {architecture!r}", build_model(architecture, seed=0, **opts)


def _as_module(
    model: ModelLike, state: Mapping[str, Tensor], template: nn.Module | None
) -> tuple[nn.Module | None, str]:
    """``model`` itself when it is a module, else ``template`` (deep-copied) holding ``state``; the
    reason when neither works."""
    if isinstance(model, nn.Module):
        return model, ""
    if template is None:
        return None, "a state_dict without a module to run it in: pass the model or a registered architecture"
    work = copy.deepcopy(template)
    try:
        work.load_state_dict(
            {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
        )
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"its tensors do not fit the architecture ({first[:160]})"
    return work, ""


def _input_shape(
    module: nn.Module,
    input_shape: Sequence[int] | None,
    data: Tensor | None,
    architecture: str | nn.Module | None,
    options: Mapping[str, Any] | None,
) -> tuple[int, ...] | None:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if data is not None:
        return tuple(data.shape[1:])
    if isinstance(architecture, str):
        size = (options or {}).get("image_size", 32)
        hw = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        return (int((options or {}).get("in_channels", 3)), *map(int, hw))
    return behaviour.infer_input_shape(module)


def _behaviour(
    module: nn.Module,
    previous: nn.Module | None,
    shape: tuple[int, ...],
    data: Tensor | None,
) -> tuple[list[Finding], str]:
    """Findings of the behaviour checks on seeded probes (and the client's ``data``), or a reason."""
    probe_sets = [
        (f"{behaviour.PROBES} seeded probe images in [0, 1] {shape}", behaviour.noise_probes(shape))
    ]
    if data is not None:
        probe_sets.append((f"{len(data)} inputs of your own data", data.detach().cpu()))
    found: list[Finding] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for what, x in probe_sets:
        try:
            acts = behaviour.activity(module, x)
            before = behaviour.activity(previous, x) if previous is not None else {}
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if not found and what.startswith(str(behaviour.PROBES)):
                return (
                    [],
                    f"the model does not accept inputs of shape {shape} ({first[:160]}); pass input_shape",
                )
            raise ModelError(
                f"Expected the model to accept the {what} (shape {tuple(x.shape)}), but its forward pass "
                f"failed: {first}. Pass data shaped as the model's input."
            ) from err
        for f in (
            behaviour.check_sparse_activations(acts, what)
            + behaviour.check_binning(acts, what)
            + behaviour.check_activation_shift(acts, before, what)
        ):
            key = (f.kind, f.parameters)
            if key not in seen:  # the same layer flagged on both probe sets: report once
                seen.add(key)
                found.append(f)
    return found, ""


def vet(
    received_model: ModelLike,
    *,
    previous: ModelLike | None = None,
    others: Sequence[ModelLike] = (),
    architecture: str | nn.Module | None = None,
    update: ModelUpdate | Mapping[str, Tensor] | None = None,
    architecture_options: Mapping[str, Any] | None = None,
    data: Tensor | None = None,
    input_shape: Sequence[int] | None = None,
) -> VetReport:
    """Inspect ``received_model`` (what the server sent) for signs of a malicious server.

    Client-side inspection as proposed by paper 003 (§IV-B, third stage of its defence pipeline;
    Pasquini et al., CCS 2022, on model inconsistency). Checks parameter patterns of the received
    model alone, and, when given: its architecture against ``previous`` (the last global model) or
    ``architecture`` (a registered model name, built with ``architecture_options`` such as
    ``image_size``; the class count is read off the received classifier, or a reference module),
    how it changed since ``previous``, whether the models ``others`` received are identical, and the
    client's own ``update`` (gradient or weight delta) after training on it. The behaviour checks
    (:mod:`gradinv.vetting.behaviour`) run the model on seeded probe images of ``input_shape``
    (default: ``data``'s, the registered architecture's ``in_channels`` / ``image_size``, or guessed
    from the first layer) and on the client's own inputs ``data`` (a batch shaped as the model's
    input), and flag input layers whose units fire for few inputs or as bins of one measurement;
    a state dict is run inside the registered ``architecture``. Returns a
    :class:`VetReport`; an empty report means no check found anything, not that the model is safe.
    A model (:class:`~gradinv.errors.ModelError`) or update (:class:`~gradinv.errors.UpdateError`)
    holding NaN or inf is refused, naming the tensors: no check can judge it.

    >>> from gradinv.models import build_model
    >>> model = build_model("mlp", num_classes=10, image_size=8, seed=0)
    >>> vet(model, architecture="mlp", architecture_options={"image_size": 8}).clean
    True
    >>> import torch
    >>> with torch.no_grad():
    ...     _ = model.net[-1].weight[1:].zero_()
    >>> sorted(vet(model).kinds())
    ['zero-weights']
    """
    state = _state(received_model, "received model")
    if data is not None and (not isinstance(data, Tensor) or data.ndim < 2 or not len(data)):
        raise ModelError(
            "Expected `data` as a non-empty tensor batch of the model's inputs (N, ...), but got "
            + (
                f"a tensor of shape {tuple(data.shape)}."
                if isinstance(data, Tensor)
                else f"{type(data).__name__}."
            )
        )
    found: list[Finding] = []
    ran: list[str] = []
    skipped: dict[str, str] = {}
    for name, fn in PATTERN_CHECKS:
        found += fn(state)
        ran.append(name)

    prev_state = _state(previous, "previous model") if previous is not None else None
    references: list[tuple[str, Mapping[str, Tensor], nn.Module | None]] = []
    if prev_state is not None:
        references.append(
            ("previous global model", prev_state, previous if isinstance(previous, nn.Module) else None)
        )
    if architecture is not None:
        what, ref = _reference(architecture, state, architecture_options)
        references.append((what, _state(ref, what), ref))
    if references:
        module = received_model if isinstance(received_model, nn.Module) else None
        seen: set[tuple[str, str]] = set()
        for what, ref_state, ref_module in references:
            for f in checks.check_architecture(
                state, ref_state, what=what, received_module=module, reference_module=ref_module
            ):
                key = (f.kind, ";".join(f.parameters))
                if key not in seen:  # the same change seen against both references: report once
                    seen.add(key)
                    found.append(f)
        ran.append("architecture")
    else:
        skipped["architecture"] = "no previous model or registered architecture given"
    if prev_state is not None:
        found += checks.check_change(state, prev_state)
        ran.append("change-since-previous")
    else:
        skipped["change-since-previous"] = "no previous model given"
    if others:
        found += checks.check_consistency(
            state, [_state(o, f"model #{i} of others") for i, o in enumerate(others)]
        )
        ran.append("consistency")
    else:
        skipped["consistency"] = "no other clients' models given"
    module, why = _as_module(received_model, state, references[-1][2] if architecture is not None else None)
    if module is None and prev_state is not None and isinstance(previous, nn.Module):
        module, why = _as_module(received_model, state, previous)
    if module is not None:
        shape = _input_shape(module, input_shape, data, architecture, architecture_options)
        if shape is None:
            why = "the model's input shape could not be guessed from its first layer: pass input_shape"
        else:
            prev_module = None
            if prev_state is not None:
                prev_module, _ = _as_module(
                    previous if previous is not None else prev_state, prev_state, module
                )
            more, why = _behaviour(module, prev_module, shape, data)
            found += more
    if why:
        skipped["behaviour"] = why
    else:
        ran.append("behaviour")
    if update is not None:
        upd = (
            require_finite(dict(update.params), "update", UpdateError)
            if isinstance(update, ModelUpdate)
            else _state(update, "update", UpdateError)
        )
        found += checks.check_update(upd)
        ran.append("update")
    else:
        skipped["update"] = "no update of this client given"
    summary = {
        "tensors": len(state),
        "values": int(sum(v.numel() for v in state.values() if v.is_floating_point())),
    }
    logger.info("vetting: %d findings from %d checks", len(found), len(ran))
    return VetReport(tuple(found), tuple(ran), skipped, summary)
