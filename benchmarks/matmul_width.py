"""Why TiledSigLipLoss pads its bias-augmented features: matmul time against operand width.

The tiled SigLIP loss multiplies [tile, tile] gradient tiles by features widened by one bias
column (D + 1 = 513 for D = 512). This times the two backward products, dX @ T and dX.T @ I, for
widths 512, 513 and 520 (513 padded to a multiple of 8), interleaved in one process.

Run from the repository root: python benchmarks/matmul_width.py [--tile 4096] [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks.report import format_table, write_section  # noqa: E402
from cliplab.losses.tiled_siglip import augmented_width  # noqa: E402

FEATURE_DIM = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    grad_tile = torch.randn(args.tile, args.tile, generator=generator)
    widths = [FEATURE_DIM, FEATURE_DIM + 1, augmented_width(FEATURE_DIM)]
    operands = {width: (torch.randn(args.tile, width, generator=generator), torch.zeros(args.tile, width))
                for width in widths}
    products = {
        "dX @ T": lambda features, accumulator: accumulator.addmm_(grad_tile, features),
        "dX.T @ I": lambda features, accumulator: accumulator.addmm_(grad_tile.T, features),
    }
    seconds = {(name, width): [] for name in products for width in widths}
    for round_index in range(args.rounds + 1):
        for name, product in products.items():
            for width in widths:
                start = time.perf_counter()
                product(*operands[width])
                if round_index:  # round 0 warms up
                    seconds[(name, width)].append(time.perf_counter() - start)
    rows = []
    for name in products:
        base = statistics.median(seconds[(name, FEATURE_DIM)])
        for width in widths:
            median = statistics.median(seconds[(name, width)])
            rows.append([name, width, f"{1000 * median:.1f}", f"{median / base:.2f}x"])
    table = format_table(["product", "width", "ms (median)", "vs width 512"], rows)
    print(table)
    if not args.no_write:
        body = (f"[{args.tile}, {args.tile}] fp32 tile times [{args.tile}, width] features, accumulated in place "
                f"(addmm_), median of {args.rounds} interleaved rounds after one warm-up, torch's default CPU "
                "threads. TiledSigLipLoss uses the padded width (the last row of each product).\n\n" + table)
        write_section("matmul_width", "Matmul time against operand width (tiled SigLIP padding)", body)


if __name__ == "__main__":
    main()
