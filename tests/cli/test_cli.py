"""The gradinv command: list, attack (run, dry run, overrides), demo, and clean errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from gradinv.cli.app import main


def run_cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gradinv.cli.app", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_list_text_and_json(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for needle in ("lenet", "resnet56", "inverting-gradients", "Eavesdropper", "level 4", "psnr", "npz:PATH"):
        assert needle in out
    assert main(["list", "attacks", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {a["name"]: a for a in data["attacks"]}
    assert by_name["dlg"]["weakest_threat_model"] == "A"  # paper 004 lists DLG under A
    assert by_name["inverting-gradients"]["weakest_threat_model"] == "B"
    assert "basic_knowledge" in by_name["inverting-gradients"]["requires"]


def test_attack_writes_reports(tmp_path, photos, capsys):
    npz = tmp_path / "d.npz"
    np.savez(npz, x=photos, y=np.arange(len(photos)))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        f'[data]\nsource = "npz:{npz}"\nindices = [3]\nimage_size = 16\n'
        '[model]\nname = "lenet"\nnum_classes = 10\n[threat]\nmodel = "B"\n'
        '[attack]\nname = "idlg"\niterations = 2\nmax_iter = 3\n'
    )
    out = tmp_path / "out"
    code = main(
        [
            "attack",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--set",
            "attack.restarts=2",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "labels: true" in text
    report = json.loads((out / "report.json").read_text())
    # the summary says what the iteration count counts, as report.json does, in the report's formats
    evals = report["attack"]["iterations"]
    assert report["attack"]["iteration_counts"]["text"] == f"2 L-BFGS steps ({evals} objective evaluations)"
    assert f"  2 L-BFGS steps ({evals} objective evaluations) in " in text and "ms per evaluation)" in text
    psnr, ssim = report["metrics"]["psnr"]["mean"], report["metrics"]["ssim"]["mean"]
    assert re.search(rf"PSNR \(dB\) +mean +{psnr:.2f} ", text) and re.search(
        rf"SSIM +mean +{ssim:.4f} ", text
    )
    assert report["attack"]["parameters"]["restarts"] == 2
    assert report["scenario"]["data"]["indices"] == [3]
    assert (out / "reconstruction.png").stat().st_size > 0 and (out / "report.html").stat().st_size > 0


def test_dry_run_prints_an_aligned_table(capsys):
    assert main(["attack", "--dry-run", "--threat", "B", "--attack", "dlg", "--image-size", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "{" not in "\n".join(lines)  # no Python dict reprs
    cells = [
        re.match(r"( ?\S.*?|  \S.*?)(?:\s{2,}(\S.*))?$", line)
        for line in lines
        if not line.startswith("    ")
    ]
    assert all(cells), lines
    rows: dict[str, re.Match[str]] = {}
    for m in cells:  # the first row of each key (training_details is a flag, then a view field)
        if m:
            rows.setdefault(m.group(1).strip(), m)
    for key in (
        "scenario",
        "victim batch",
        "threat model",
        "applicability",
        "basic_knowledge",
        "training_details",
    ):
        assert key in rows, key
    for key in ("attacker's view", "num_samples", "input_shape", "attack", "requires", "max_iter", "result"):
        assert key in rows, key
    assert len({m.start(2) for m in rows.values() if m.group(2)}) == 1  # values start in one column

    def value(key: str) -> str:
        return rows[key].group(2)

    assert value("threat model") == "B (Informed Eavesdropper)" and value("applicability").startswith(
        "*** (high"
    )
    assert value("basic_knowledge").startswith("granted ") and "input shape" in value("basic_knowledge")
    assert value("training_details").startswith("not granted ") and value("input_shape") == "[3, 8, 8]"
    assert value("attack") == "DLG (dlg), optimization" and value("max_iter") == "20"
    assert value("result") == "DLG: ok, would run with the parameters above"


def test_dry_run_reports_refusal(capsys):
    args = ["attack", "--dry-run", "--threat", "A", "--image-size", "8"]
    assert main([*args, "--attack", "inverting-gradients"]) == 2
    assert "attack refused" in capsys.readouterr().out
    assert main([*args, "--attack", "dlg"]) == 0  # DLG runs under A (paper 004), assuming B = 1
    assert "DLG: ok" in capsys.readouterr().out
    assert main(["attack", "--dry-run", "--threat", "B", "--attack", "dlg", "--image-size", "8"]) == 0
    assert "DLG: ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["attack", "--model", "lenett", "--dry-run"], "Unknown model 'lenett'"),
        (["attack", "--source", "npz:/nonexistent/x.npz", "--dry-run"], "/nonexistent/x.npz"),
        (["attack", "--source", "cifar10:/nonexistent", "--dry-run"], "cifar-10-batches-py"),
        (["attack", "--num-images", "11", "--dry-run"], "num_images"),
        (["attack", "--model", "convnet", "--image-size", "4", "--dry-run"], "image"),
        (["attack", "--num-classes", "3", "--indices", "7", "--dry-run"], "num_classes"),
        (["attack", "--checkpoint", "/nonexistent.pt", "--dry-run"], "/nonexistent.pt"),
        (["attack", "--set", "attack.iteratons=3", "--dry-run"], "Did you mean 'iterations'"),
        (["attack", "--config", "/nonexistent.toml"], "Expected a TOML config file"),
        (["attack", "--device", "cuda", "--image-size", "8", "--attack", "dlg", "--iterations", "1"], "CUDA"),
    ],
)
def test_bad_input_is_one_clear_error(args, needle, capsys):
    code = main(args)  # an uncaught exception (a traceback) would fail the test
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and err.startswith("error: ")


def test_console_entry_point_prints_no_traceback():
    code, _out, err = run_cli("attack", "--model", "lenett", "--dry-run")
    assert code == 2 and err.startswith("error: Unknown model 'lenett'") and "Traceback" not in err


def test_demo_quick(tmp_path):
    code, out, err = run_cli("demo", "--quick", "--out", str(tmp_path), "--device", "cpu")
    assert code == 0, err
    assert "refused" in out and (tmp_path / "index.html").exists()
    # states its expected time up front, each case's and its own time at the end
    assert "expected to take about 10 seconds on 2 CPU cores" in out.splitlines()[0]
    assert out.count("  took ") == 3 and "Demo took " in out
    # stderr is not a terminal here: progress comes as timestamped lines, not a redrawn bar
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"(WARNING|INFO) ", line)]
    assert lines and all(re.match(r"\[\d\d:\d\d:\d\d\] \S+ \d+/\d+", line) for line in lines), err
    assert "\r" not in err
    assert (tmp_path / "dlg-lenet" / "report.json").exists()
    rtf = json.loads((tmp_path / "robbing-the-fed" / "report.json").read_text())
    assert min(rtf["metrics"]["psnr"]["per_image"]) >= 60  # exact, even in --quick (analytic attack)


def test_help_does_not_load_torch():
    """``gradinv --help`` builds every command's parser without importing torch or the registries (a
    fixed cost of seconds on a small CPU): they load when a command runs."""
    code = (
        "import sys\nfrom gradinv.cli.app import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('torch', 'gradinv.experiment', 'gradinv.attacks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
