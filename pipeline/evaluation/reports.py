"""What an evaluation tells beyond two numbers: per-class figures, the classification
report, the most confused pairs, and a confusion picture that stays readable with 257
classes."""

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix  # noqa: E402

# Up to this many classes the whole confusion matrix is drawn; above, the most confused pairs.
FULL_MATRIX_CLASSES = 30
MOST_CONFUSED_SHOWN = 25


def per_class_figures(hits_rank1, hits_rank5, labels, class_names) -> list[dict]:
    """Samples, rank-1 and rank-5 of every class (None where a class has no sample, and
    rank-5 None throughout with 5 classes or fewer, where every sample is a hit)."""
    num_classes = len(class_names)
    reported5 = num_classes > 5
    counts = np.bincount(labels, minlength=num_classes)
    rank1 = np.bincount(labels, weights=hits_rank1, minlength=num_classes)
    rank5 = np.bincount(labels, weights=hits_rank5, minlength=num_classes)
    return [
        {
            "class": index,
            "name": class_names[index],
            "samples": int(counts[index]),
            "rank1": float(rank1[index] / counts[index]) if counts[index] else None,
            "rank5": float(rank5[index] / counts[index]) if counts[index] and reported5 else None,
        }
        for index in range(num_classes)
    ]


def classification_summary(labels, predictions, class_names) -> tuple[str, dict]:
    """scikit-learn's classification report with class names, as text and as a dict."""
    arguments = dict(
        labels=list(range(len(class_names))), target_names=list(class_names), zero_division=0
    )
    text = classification_report(labels, predictions, digits=4, **arguments)
    as_dict = classification_report(labels, predictions, output_dict=True, **arguments)
    return text, as_dict


def most_confused_pairs(labels, predictions, class_names, top=MOST_CONFUSED_SHOWN) -> list[dict]:
    """The (true, predicted) pairs of different classes seen most often."""
    matrix = confusion_matrix(labels, predictions, labels=list(range(len(class_names))))
    np.fill_diagonal(matrix, 0)
    order = np.argsort(matrix, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, matrix.shape)
        if matrix[true, predicted] == 0:
            break
        pairs.append(
            {
                "true": class_names[true],
                "predicted": class_names[predicted],
                "count": int(matrix[true, predicted]),
            }
        )
    return pairs


def plot_confusion(labels, predictions, class_names, path, title: str = "") -> Path:
    """The full matrix for a few classes; for many, a bar chart of the most confused pairs.
    `title` says what was scored (model, split, mode, rank-1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(class_names) <= FULL_MATRIX_CLASSES:
        matrix = confusion_matrix(labels, predictions, labels=list(range(len(class_names))))
        figure, axis = plt.subplots(figsize=(8, 7))
        image = axis.imshow(matrix, cmap="Blues")
        axis.set_xticks(range(len(class_names)), class_names, rotation=90)
        axis.set_yticks(range(len(class_names)), class_names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        # Counts in white on dark cells and black on light ones, so each stays readable.
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if count > threshold else "black"
                axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                          color=colour)  # fmt: skip
        figure.colorbar(image, label="samples")
    else:
        pairs = most_confused_pairs(labels, predictions, class_names)
        figure, axis = plt.subplots(figsize=(9, 0.35 * max(len(pairs), 4) + 1.5))
        names = [f"{pair['true']} -> {pair['predicted']}" for pair in pairs][::-1]
        axis.barh(names, [pair["count"] for pair in pairs][::-1], color="tab:red")
        axis.set_xlabel("test samples")
        axis.set_title(f"The {len(pairs)} most confused pairs of {len(class_names)} classes")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def file_fingerprint(path) -> dict:
    """Size and SHA-256 of a file (a model checkpoint: tens of MB, hashed in a second)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}
