"""Compares a fresh rebuild of the tiny packages and their goldens with the committed ones (CI runs it after
python/build_tiny_packages.py --out DIR):

    /usr/bin/python3 python/check_rebuild.py DIR            # DIR/models and DIR/golden against fixtures/

Package files (graphs, tokenizer, manifest) must be byte-identical: the weights are seeded and the export is
deterministic. Golden arrays must have the same names, dtypes and shapes; integer arrays (token ids, masks) must be
equal and float32 arrays within TOLERANCE of the committed values (another CPU may sum in another order). Exits 1
naming every difference.
"""
import argparse
import filecmp
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from emu2ref.golden import read_golden  # noqa: E402

TOLERANCE = 1e-5  # absolute, plus the same relative to the committed value


def files_under(folder: str) -> set:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names}


def compare_packages(committed: str, rebuilt: str) -> list:
    problems = []
    if not os.path.isdir(rebuilt):
        return [f"{rebuilt}: missing"]
    mine, theirs = files_under(committed), files_under(rebuilt)
    problems += [f"{os.path.join(rebuilt, p)}: missing from the rebuild" for p in sorted(mine - theirs)]
    problems += [f"{os.path.join(rebuilt, p)}: not in the committed package" for p in sorted(theirs - mine)]
    for p in sorted(mine & theirs):
        if not filecmp.cmp(os.path.join(committed, p), os.path.join(rebuilt, p), shallow=False):
            problems.append(f"{os.path.join(rebuilt, p)}: differs from {os.path.join(committed, p)}")
    return problems


def compare_golden(committed: str, rebuilt: str) -> list:
    if not os.path.exists(os.path.join(rebuilt, "index.json")):
        return [f"{rebuilt}: no golden was rebuilt"]
    meta_a, a = read_golden(committed)
    meta_b, b = read_golden(rebuilt)
    problems = []
    if meta_a != meta_b:
        problems.append(f"{rebuilt}: index.json meta differs")
    for name in sorted(set(a) | set(b)):
        if name not in b or name not in a:
            problems.append(f"{rebuilt}: array {name} is {'missing' if name not in b else 'new'}")
            continue
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            problems.append(f"{rebuilt}: {name} is {y.dtype}{list(y.shape)}, committed {x.dtype}{list(x.shape)}")
        elif x.dtype == np.float32:
            same = (x == y) | (np.isnan(x) & np.isnan(y))  # equal infinities (masked scores) included
            with np.errstate(invalid="ignore"):
                excess = np.abs(y.astype(np.float64) - x) - TOLERANCE * (1 + np.abs(x.astype(np.float64)))
            if x.size and not np.all(same | (excess <= 0)):
                bad = ~(same | (excess <= 0))
                problems.append(f"{rebuilt}: {name} differs at {int(bad.sum())} of {x.size} entries, by up to "
                                f"{np.abs(y[bad].astype(np.float64) - x[bad]).max():.3g}")
        elif not np.array_equal(x, y):
            problems.append(f"{rebuilt}: {name} differs at {int((x != y).sum())} of {x.size} entries")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rebuilt", help="the --out folder of build_tiny_packages.py (emu2-toy: export_toy.py --out "
                        "DIR/models/emu2-toy)")
    args = parser.parse_args()
    fixtures = os.path.join(ROOT, "fixtures")
    problems = []
    for name in sorted(os.listdir(os.path.join(args.rebuilt, "models"))):
        problems += compare_packages(os.path.join(fixtures, "models", name), os.path.join(args.rebuilt, "models", name))
    golden_root = os.path.join(fixtures, "golden")
    for package in sorted(os.listdir(os.path.join(args.rebuilt, "golden"))):
        for part in sorted(os.listdir(os.path.join(golden_root, package))):
            problems += compare_golden(os.path.join(golden_root, package, part),
                                       os.path.join(args.rebuilt, "golden", package, part))
    for p in problems:
        print(f"check_rebuild: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_rebuild: {args.rebuilt} equals the committed packages and goldens", file=sys.stderr)


if __name__ == "__main__":
    main()
