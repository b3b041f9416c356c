"""How long DCGAN training (``gradinv train-generator``) takes on a CPU, and what it gives. Prints JSON.

1. Timing: one epoch on a seeded subset of ``--timing-images`` images at each width in
   ``--timing-widths`` (base width ngf = ndf), extrapolated linearly to seconds per epoch of the
   whole data set (the cost per image is constant: fixed batch size, no data loading).
2. Training: ``--epochs`` epochs at ``--ngf`` on every image (the command's defaults otherwise:
   batch 128, Adam 2e-4 / β1 0.5, nz 100), the measured seconds of every epoch and its losses.
3. What the prior can express: latent search (Adam on z, ``--fit-steps`` steps, 4 restarts) fitting
   ``--fit-images`` held-out CIFAR-10 test images, PSNR of the best fit, for the trained generator
   and for the same architecture untrained (the floor). Higher = the prior covers unseen images better.
4. A PNG: a row of real training images, then generated samples (fixed latents, eval mode as the
   attacks use it). The generator file is written next to it.

    python benchmarks/bench_train_generator.py                     # ngf 64, 6 epochs on 10k CIFAR images
    python benchmarks/bench_train_generator.py --epochs 1 --timing-widths 32 --fit-images 0

Data: ../shared/data/cifar10_train_jpeg_10k.npz (``$GRADINV_SHARED``), test images from
cifar10_test_jpeg_3k.npz; without ../shared, the bundled photos (numbers then mean little).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from _common import emit, machine, shared_dir
from gradinv.data import ImageDataset, load_npz, load_samples
from gradinv.metrics import psnr
from gradinv.models.generators import Generator, build_generator
from gradinv.models.train_generator import dcgan_init, train_dcgan, training_images
from gradinv.report.grid import image_grid


def _data() -> tuple[ImageDataset, ImageDataset, str]:
    d = shared_dir()
    if d is None:
        s = load_samples()
        return s, s, "samples"
    return (
        load_npz(d / "data" / "cifar10_train_jpeg_10k.npz"),
        load_npz(d / "data" / "cifar10_test_jpeg_3k.npz"),
        "cifar10_train_jpeg_10k",
    )


def fit_psnr(gen: Generator, targets: torch.Tensor, *, steps: int, restarts: int = 4, seed: int = 0) -> float:
    """Mean PSNR (dB, images in [0, 1]) of the best latent-search fit of each target (Adam on z)."""
    gen = gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    rng = torch.Generator().manual_seed(seed)
    n = targets.shape[0]
    z = torch.randn(restarts, n, gen.latent_dim, generator=rng).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    goal = targets.expand(restarts, *targets.shape)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        x = (gen(z.reshape(-1, gen.latent_dim)).reshape(goal.shape) + 1) / 2
        ((x - goal) ** 2).mean(dim=(2, 3, 4)).sum().backward()
        opt.step()
    with torch.no_grad():
        x = ((gen(z.reshape(-1, gen.latent_dim)).reshape(goal.shape) + 1) / 2).clamp(0, 1)
        scores = torch.stack([psnr(x[r], targets) for r in range(restarts)])  # (restarts, n)
    return float(scores.max(dim=0).values.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--timing-widths", default="64,32")
    ap.add_argument("--timing-images", type=int, default=2560)
    ap.add_argument("--fit-images", type=int, default=8)
    ap.add_argument("--fit-steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_train_generator"))
    args = ap.parse_args()
    train, test, name = _data()
    args.out.mkdir(parents=True, exist_ok=True)
    n = len(train)

    timing = {}
    for w in [int(v) for v in args.timing_widths.split(",") if v]:
        m = min(args.timing_images, n)
        r = train_dcgan(train, epochs=1, ngf=w, batch_size=args.batch_size, max_images=m)
        timing[f"ngf{w}"] = {
            "images": m,
            "seconds": round(r.seconds, 2),
            "seconds_per_epoch_of_all": round(r.seconds * n / m, 1),
        }

    per_epoch = -(-n // min(args.batch_size, n))
    marks: list[float] = []
    start = time.perf_counter()

    def tick(step: int, total: int, loss: float) -> None:
        if step % per_epoch == 0:
            marks.append(time.perf_counter() - start)

    r = train_dcgan(train, epochs=args.epochs, ngf=args.ngf, batch_size=args.batch_size, progress=tick)
    epoch_seconds = [round(b - a, 1) for a, b in zip([0.0, *marks[:-1]], marks)]
    path = r.save(args.out / f"cifar_dcgan32_ngf{args.ngf}_e{r.epochs_completed}.pt", trained_on=name)

    fit = {}
    if args.fit_images:
        targets = (training_images(test, image_size=32, max_images=args.fit_images, seed=1) + 1) / 2
        untrained = build_generator("dcgan32", seed=0, ngf=args.ngf)
        dcgan_init(untrained, torch.Generator().manual_seed(0))
        fit = {
            "images": args.fit_images,
            "steps": args.fit_steps,
            "psnr_trained": round(fit_psnr(r.generator, targets, steps=args.fit_steps), 2),
            "psnr_untrained": round(fit_psnr(untrained, targets, steps=args.fit_steps), 2),
        }

    with torch.no_grad():
        z = torch.randn(48, r.generator.latent_dim, generator=torch.Generator().manual_seed(7))
        fake = (r.generator(z) + 1) / 2
    real = (training_images(train, image_size=32, max_images=16, seed=2) + 1) / 2
    png = args.out / "samples.png"
    image_grid(
        [real, fake[:16], fake[16:32], fake[32:]],
        row_titles=["real training images", *[f"DCGAN samples after {r.epochs_completed} epoch(s)"] * 3],
        scale=3,
        max_cols=16,
    ).save(png)
    emit(
        {
            "benchmark": "train_generator",
            "data": name,
            "images": n,
            "machine": machine(),
            "load_average": os.getloadavg()[0],
            "timing_one_epoch": timing,
            "training": {
                "ngf": args.ngf,
                "batch_size": args.batch_size,
                "epochs": r.epochs_completed,
                "steps": r.steps,
                "seconds": round(r.seconds, 1),
                "epoch_seconds": epoch_seconds,
                "losses": [
                    {k: v if isinstance(v, int) else round(v, 4) for k, v in e.to_dict().items()}
                    for e in r.losses
                ],
            },
            "latent_fit_of_test_images": fit,
            "generator_file": str(path),
            "samples_png": str(png),
        }
    )


if __name__ == "__main__":
    main()
