"""``gradinv audit`` on a model file written by the user: per threat model the strongest applicable
attacks through the one pipeline, refusals with reasons, vetting of crafted models, partial results
on Ctrl-C, the budget, and bad input."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

from gradinv.audit import AuditSpec, run_audit
from gradinv.cli.app import main
from gradinv.config import ExperimentConfig, apply_overrides, parse_config
from gradinv.errors import ConfigError, GradinvError, ModelError

MODEL_FILE = '''
from torch import nn


def make(num_classes, in_channels, image_size, hidden=32):
    """A two-layer MLP written by the user (first layer Linear with bias)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def fixed(num_classes):
    """Written for 8x8 grey images only."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))


def not_a_model(num_classes):
    return {"weights": num_classes}
'''


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_net.py"
    path.write_text(MODEL_FILE, encoding="utf-8")
    return path


def _cfg(model: str, **extra: object) -> ExperimentConfig:
    return apply_overrides(
        ExperimentConfig(),
        {
            "model.name": model,
            "data.source": "digits",
            "data.num_images": 2,
            "model.num_classes": 10,
            **extra,
        },
    )


class _Tags(HTMLParser):
    VOID: ClassVar[set[str]] = {"br", "img", "meta", "link", "hr", "input", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_audit_of_a_user_model_file(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    spec = AuditSpec(_cfg(f"{model_file}:make"), budget_minutes=2, threats=("A", "B", "F"), max_attacks=2)
    audit = run_audit(spec, out_dir=out)
    assert not audit.partial and all(t.done for t in audit.threats)

    a, b, f = (audit.threat(t) for t in "ABF")
    # A grants no active manipulation: every malicious-server attack is refused, with the reason
    for r in a.runs:
        if r.active:
            assert r.status == "refused" and "does not grant" in r.reasons[0]
    # B: the analytic FC attack inverts the user's first Linear layer exactly
    assert b.best is not None and b.best.attack == "fc-bias"
    assert b.best.exact == 2 and b.best.mean("psnr") > 40
    # it stopped there: weaker applicable attacks are "not run" with the reason
    assert any(r.status == "not run" and "exactly" in r.reasons[0] for r in b.runs)
    # F: Robbing the Fed recovers both, and gradinv vet flags the model it crafted
    rtf = next(r for r in f.runs if r.attack == "robbing-the-fed")
    assert rtf.scored and rtf.exact == 2
    assert rtf.vet is not None and rtf.vet.flagged and rtf.vet.kinds

    d = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert d["kind"] == "gradinv-audit" and d["partial"] is False
    tm = {t["id"]: t for t in d["threat_models"]}
    assert set(tm) == {"A", "B", "F"}
    assert tm["B"]["best"]["attack"] == "fc-bias" and tm["B"]["best"]["exact"] == 2
    assert any(x["threat"] == "A" and x["reasons"] for x in d["refused"])
    assert d["setup"]["model_class"] == "Sequential" and d["defenses"], "defense advice from shipped numbers"
    assert (out / tm["B"]["best"]["image"]).is_file()

    page = (out / "audit.html").read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(page)
    assert not tags.errors and tags.images >= 2
    assert (
        "data:image/png;base64," in page and "http://" not in page.split("<body", 1)[1].split("https://")[0]
    )

    # each run is an ordinary experiment: its recorded config reproduces the number
    from gradinv.experiment import run_experiment

    again = run_experiment(parse_config(dict(b.best.config)), device="cpu")
    assert again.evaluation.metrics["psnr"].mean == pytest.approx(b.best.mean("psnr"), rel=1e-4)


def test_ctrl_c_keeps_partial_results(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    seen: list[str] = []

    def listener(audit: object, event: str) -> None:
        seen.append(event)
        if event == "run":
            raise KeyboardInterrupt  # the user presses Ctrl-C after the first attack

    spec = AuditSpec(_cfg(f"{model_file}:make"), budget_minutes=2, threats=("B", "F"))
    audit = run_audit(spec, out_dir=out, listener=listener)
    assert audit.interrupted and audit.partial and seen[-1] == "interrupted"
    d = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert d["partial"] and d["interrupted"]
    assert d["threat_models"][0]["best"]["attack"] == "fc-bias"
    assert d["threat_models"][1]["runs"] == []
    assert "Partial audit" in (out / "audit.html").read_text(encoding="utf-8")


def test_budget_stops_a_long_attack(model_file: Path) -> None:
    spec = AuditSpec(
        _cfg(f"{model_file}:make"),
        budget_minutes=0.05,  # 3 s
        threats=("B",),
        candidates=("inverting-gradients",),
        attack_params={"inverting-gradients": {"iterations": 1_000_000}},
    )
    audit = run_audit(spec)
    (run,) = audit.threat("B").runs
    assert run.status == "budget" and 0 < run.iterations < 1_000_000
    assert run.metrics["psnr"].mean > 0


def test_bad_input_is_one_clear_error(model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nn\.Module"):
        run_audit(AuditSpec(_cfg(f"{model_file}:not_a_model"), threats=("B",)))
    with pytest.raises(ModelError, match="shape"):  # built for 8x8 grey digits, given 32x32 RGB photos
        run_audit(
            AuditSpec(
                apply_overrides(
                    _cfg(f"{model_file}:fixed"), {"data.source": "samples", "data.image_size": 32}
                ),
                threats=("B",),
            )
        )
    import torch
    from torch import nn

    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(GradinvError, match=r"checkpoint|state"):
        run_audit(AuditSpec(_cfg(f"{model_file}:make", **{"model.checkpoint": str(other)}), threats=("B",)))
    with pytest.raises(ConfigError, match="budget"):
        AuditSpec(_cfg("lenet"), budget_minutes=0)
    with pytest.raises(GradinvError, match="Z"):
        AuditSpec(_cfg("lenet"), threats=("Z",))


def test_cli_audit(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = [
        "audit",
        "--model",
        f"{model_file}:make",
        "--source",
        "digits",
        "--num-images",
        "1",
        "--threats",
        "B,F",
    ]
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "B: fc-bias" in plan and "F: robbing-the-fed" in plan
    code = main(
        [*args, "--budget", "1", "--out", str(out), "--no-progress", "--defense", "gaussian-noise:sigma=0.5"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "B (Informed Eavesdropper)" in printed and (out / "audit.html").is_file()
    d = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert d["setup"]["defenses"] == ["gaussian-noise"]
    assert d["threat_models"][0]["best"]["exact"] == 0  # noise of std 0.5 on the update: nothing exact
    assert main([*args, "--defense", "gaussian-noise:sigma"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_plan_of_the_shipped_example_model() -> None:
    """examples/audit/my_model.py (plain PyTorch, a CNN): the analytic FC attack is refused for its
    first Conv2d, the optimisation attacks pass, the malicious server only under F–H."""
    from gradinv.audit import plan_audit

    example = Path(__file__).resolve().parents[2] / "examples" / "audit" / "my_model.py"
    cfg = apply_overrides(
        ExperimentConfig(),
        {
            "model.name": f"{example}:make_model",
            "data.source": "samples",
            "data.num_images": 1,
            "data.image_size": 32,
        },
    )
    plan = plan_audit(AuditSpec(cfg, threats=("B", "F")))
    b, f = dict(plan["B"]), dict(plan["F"])
    assert "Conv2d" in b["fc-bias"][0] and not b["inverting-gradients"]
    assert "does not grant" in b["robbing-the-fed"][0] and not f["robbing-the-fed"]


def test_a_generator_adds_the_generative_attacks_where_surrogate_data_is_granted(tmp_path: Path) -> None:
    """``--generator``: GIAS and GGL join the candidates after the analytic attacks, with the prior
    passed on; refused (with the surrogate-data reason) under C, applicable under D; a missing weight
    file is a reason in the plan, not a crash mid-audit."""
    from gradinv.audit import plan_audit
    from gradinv.audit.spec import CANDIDATES, with_generative
    from tests.attacks._tiny_generator import tiny_generator_file

    order = with_generative(CANDIDATES)
    assert order.index("spear") + 1 == order.index("gias") < order.index("ggl") < order.index("idlg")
    cfg = apply_overrides(
        ExperimentConfig(), {"data.source": "samples", "data.num_images": 1, "data.image_size": 16}
    )
    spec = AuditSpec(cfg, threats=("C", "D"), candidates=order, generator=tiny_generator_file())
    assert spec.params("gias")["generator"] == tiny_generator_file() and "generator" not in spec.params(
        "idlg"
    )
    plan = plan_audit(spec)
    c, d = dict(plan["C"]), dict(plan["D"])
    assert "surrogate" in c["gias"][0] and "surrogate" in c["ggl"][0]
    assert not d["gias"] and not d["ggl"]
    missing = AuditSpec(cfg, threats=("D",), candidates=order, generator=str(tmp_path / "none.pt"))
    assert "cannot load its generator" in dict(plan_audit(missing)["D"])["gias"][0]
