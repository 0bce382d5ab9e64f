"""Rank-1/rank-5 from a score matrix: this project's vectorised count against the
reference's per-sample argsort loop, on the same scores, in one run.

    .venv/bin/python bench/rank_accuracy.py [--samples 10000] [--classes 200]
"""

import argparse
import time

import numpy as np

from pipeline.evaluation.rank_accuracy import rank_k_accuracy


def reference_rank5_accuracy(predictions, labels):
    """The reference projects' ranked.py: one argsort per sample, in Python."""
    rank1 = rank5 = 0
    for scores, truth in zip(predictions, labels, strict=True):
        order = np.argsort(scores)[::-1]
        rank5 += truth in order[:5]
        rank1 += truth == order[0]
    return rank1 / len(predictions), rank5 / len(predictions)


def best_time(function, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--classes", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Continuous random scores: no ties, so both methods must agree exactly.
    scores = rng.random((args.samples, args.classes)).astype(np.float32)
    labels = rng.integers(0, args.classes, args.samples)

    reference_time, reference = best_time(lambda: reference_rank5_accuracy(scores, labels))
    project_time, project = best_time(
        lambda: (rank_k_accuracy(scores, labels, 1), rank_k_accuracy(scores, labels, 5))
    )
    assert np.allclose(reference, project), (reference, project)
    print(f"{args.samples} samples x {args.classes} classes, rank-1/rank-5 = {project}")
    print(f"reference per-sample loop: {reference_time * 1000:9.1f} ms")
    print(f"project vectorised:        {project_time * 1000:9.1f} ms")
    print(f"ratio: {reference_time / project_time:.1f}x faster")


if __name__ == "__main__":
    main()
