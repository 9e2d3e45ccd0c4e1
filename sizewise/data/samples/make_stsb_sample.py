"""Make the STS-B sample that ``sizewise demo`` ships (``stsb-sample/``), from the STS Benchmark release.

Usage (from the repository root): python sizewise/data/samples/make_stsb_sample.py [--source ../shared/data/stsb]

Only the caption subsets are sampled: ``images`` (PASCAL VOC-2008 image descriptions) and ``track5.en-en`` (a subset
of SNLI), whose text, like the STS-B scores, is released under Creative Commons Attribution-ShareAlike. The other
subsets carry terms of their own that a redistributed sample cannot meet as simply (MSRpar and MSRvid: a Microsoft
Research licence to agree to; answers-forums / answer-answer: per-author Stack Exchange attribution; headlines and
deft: news-source terms), so they are left out. Rows are drawn by a seeded random sample and written byte for byte in
their original order and layout (genre, file, year, id, score, sentence1, sentence2), so the packed STS-B reader
loads the folder like the full release. Standard library only: re-running with the same source and seed rewrites the
same files.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("images", "track5.en-en")  # the ``file`` column (2nd) of the rows kept; see the docstring for why
SIZES = {"train": 300, "dev": 200, "test": 250}
SEED = 0


def sample_split(source: Path, size: int, seed: int) -> list[str]:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    eligible = [i for i, line in enumerate(lines) if line.split("\t")[1] in SOURCES]
    if len(eligible) < size:
        raise SystemExit(f"{source}: only {len(eligible)} rows from {SOURCES}, {size} asked")
    picked = sorted(random.Random(f"{seed}:{source.name}").sample(eligible, size))
    return [lines[i] for i in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=HERE.parents[2].parent / "shared" / "data" / "stsb",
                        help="the STS-B release folder ({train,dev,test}.tsv and LICENSE.txt)")
    parser.add_argument("--out", type=Path, default=HERE / "stsb-sample")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, size in SIZES.items():
        rows = sample_split(args.source / f"{split}.tsv", size, args.seed)
        (args.out / f"{split}.tsv").write_text("".join(rows), encoding="utf-8", newline="")
        print(f"{split}.tsv: {len(rows)} pairs")
    shutil.copyfile(args.source / "LICENSE.txt", args.out / "LICENSE.txt")


if __name__ == "__main__":
    main()
