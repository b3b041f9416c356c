"""``gradinv train-generator``: train a DCGAN generator on your surrogate data, the image prior of the
generative attacks (``generator = "G.pt"`` in an attack config).

Examples::

  gradinv train-generator --data npz:cifar10_train.npz --out cifar_G.pt --epochs 5
  gradinv train-generator --data folder:my_images --out G.pt --ngf 32 --max-images 5000
  gradinv train-generator --data digits --out digits_G.pt --epochs 20 --batch-size 64

Exit code 0: trained and saved; 2: bad input; 130: interrupted (Ctrl-C), what was trained so far saved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gradinv.cli.common import (
    add_command,
    add_device_flag,
    doc_examples,
    format_duration,
    int_type,
    parse_float,
    prepare_out_dir,
    progress_bar,
)
from gradinv.errors import ConfigError

#: suffixes ``load_generator`` recognises as a file (rather than a registered name)
SUFFIXES = (".pt", ".pth")


HELP = "train a DCGAN generator on your surrogate data (a prior for the generative attacks)"
DESCRIPTION = (
    "Train a DCGAN (Radford, Metz, Chintala, ICLR 2016) on a data source and save the generator to a "
    'file the generative attacks load (generator = "G.pt"). At 32x32 it trains on a CPU; Ctrl-C stops '
    "and saves what was trained so far."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train-generator", HELP, DESCRIPTION, doc_examples(__doc__))
    p.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="data source: samples, digits, npz:PATH, folder:DIR, cifar10[:DIR][:test] … "
        "(see `gradinv list`)",
    )
    p.add_argument("--out", "-o", required=True, type=Path, help="the generator file to write (.pt or .pth)")
    p.add_argument(
        "--image-size",
        type=int_type(1, flag="--image-size"),
        default=32,
        help="generated image size, 32 or 64 (default 32; images are resized to it)",
    )
    p.add_argument("--epochs", type=int_type(1, flag="--epochs"), default=5, help="epochs (default 5)")
    p.add_argument(
        "--batch-size", type=int_type(1, flag="--batch-size"), default=128, help="batch size (default 128)"
    )
    p.add_argument("--lr", default="2e-4", help="Adam learning rate of both networks (default 2e-4)")
    p.add_argument("--nz", type=int_type(1, flag="--nz"), default=100, help="latent size (default 100)")
    p.add_argument(
        "--ngf",
        type=int_type(1, flag="--ngf"),
        default=64,
        help="base width of the generator and discriminator (default 64; 32 is ~3x faster)",
    )
    p.add_argument("--seed", type=int_type(0, flag="--seed"), default=0, help="random seed (default 0)")
    p.add_argument(
        "--max-images",
        type=int_type(1, flag="--max-images"),
        help="train on a seeded random subset of this many images (default: all)",
    )
    p.add_argument("--download", action="store_true", help="let cifar10/cifar100 sources fetch their archive")
    add_device_flag(p, "device (default auto: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def check_out_file(path: Path) -> Path:
    """Refuse an output path ``load_generator`` would not read back, or that cannot be written, before
    any training starts."""
    p = path.expanduser()
    if p.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"Expected --out to name a .pt or .pth file, but got {str(path)!r}. Use e.g. --out G.pt "
            "(attacks recognise a generator file by its suffix)."
        )
    if p.is_dir():
        raise ConfigError(
            f"Expected --out to name a file, but {str(p)!r} is a directory. Use e.g. {p / 'G.pt'}."
        )
    prepare_out_dir(p.parent, option="the folder of --out")
    return p


def run(args: argparse.Namespace) -> int:
    from gradinv.data import load_source
    from gradinv.device import resolve_device
    from gradinv.models.train_generator import DCGANTraining, train_dcgan

    out = check_out_file(args.out)
    lr = parse_float(args.lr, "--lr")
    options: dict[str, Any] = {
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": lr,
        "nz": args.nz,
        "ngf": args.ngf,
        "seed": args.seed,
        "max_images": args.max_images,
    }
    try:
        DCGANTraining(**options)  # refuse bad settings before loading the data
    except ConfigError as err:  # the same message, naming the flag instead of the config key
        msg = str(err)
        for key in options:
            msg = msg.replace(f"`{key}`", "--" + key.replace("_", "-"))
        raise ConfigError(msg) from None
    device = resolve_device(args.device or "auto")
    dataset = load_source(args.data, download=args.download)
    n = min(len(dataset), args.max_images or len(dataset))
    print(
        f"training a DCGAN {args.image_size}x{args.image_size} (nz {args.nz}, ngf {args.ngf}) on {n} "
        f"image(s) of {dataset.name!r} for {args.epochs} epoch(s) on {device}",
        file=sys.stderr,
    )
    with progress_bar("train-generator", enabled=not args.no_progress) as progress:
        result = train_dcgan(dataset, progress=progress, device=device, **options)
    if result.steps == 0:
        print("interrupted before the first step: nothing saved", file=sys.stderr)
        return 130
    trained_on = dataset.name if dataset.name == args.data else f"{dataset.name} ({args.data})"
    path = result.save(out, trained_on=trained_on)
    last = result.losses[-1]
    print(
        f"trained {result.epochs_completed} epoch(s), {result.steps} step(s) on {result.images} image(s) "
        f"in {format_duration(result.seconds)}; last epoch: loss D {last.discriminator:.3f}, "
        f"G {last.generator:.3f}, D(x) {last.real_score:.2f}, D(G(z)) {last.fake_score:.2f}"
    )
    print(f"generator: {path}")
    print(f'use it in an attack config: generator = "{path}"')
    if result.interrupted:
        print("interrupted: saved the generator trained so far", file=sys.stderr)
        return 130
    return 0
