"""Not waste: how well out-of-distribution scores on the model's own features tell photos of
waste from photos of other things, and the threshold ``binsort.ood`` ships.

Runs the model (the bundled file by default) on the TrashNet photos of its split (training
photos for the class means, validation photos for the threshold, test photos to report) and
on photos of other things: scikit-learn's two sample photos and scikit-image's natural sample
photos (``pip install scikit-image``), plus four corner crops (60 % of each side) of each.
Each member's pooled features and logits are cached under ``--cache`` (one model pass over
2148 photos takes minutes on 2 cores). For each score it prints the threshold that flags at
most ``--rate`` of validation photos and the share flagged of validation, test and
non-waste photos; then every non-waste photo's score under the shipped score.

    python benchmarks/not_waste.py --root /work/shared/data/trashnet
    python benchmarks/not_waste.py --root ... --write build/with-ood.onnx   # also writes the file

``--write`` writes what ``binsort export --not-waste`` writes (``binsort.ood_fit``), from the
cached features, with the test photos flagged added to its metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from binsort.config import NOT_WASTE_RATE
from binsort.data.images import open_rgb, resize_shorter
from binsort.onnx_model import OnnxModel
from binsort.ood import OOD_OUTPUT, class_means, cosine_score, threshold_for
from binsort.ood_fit import Features, fit_from_features, write_ood
from binsort.predict import default_model_path
from binsort.screening import screen

SKIMAGE_PHOTOS = {  # skimage.data's natural photos (no drawings, phantoms, test patterns)
    "astronaut": "a person (astronaut portrait)",
    "camera": "a man with a camera (grey)",
    "chelsea": "a cat",
    "coffee": "a cup of coffee",
    "coins": "coins (grey)",
    "clock": "a wall clock, motion-blurred (grey)",
    "hubble_deep_field": "galaxies (Hubble)",
    "immunohistochemistry": "stained tissue, microscope",
    "moon": "the moon's surface (grey)",
    "rocket": "a rocket on its launch pad",
    "stereo_motorcycle": "a motorcycle",
    "retina": "a retina (fundus photo)",
    "text": "a photo of lettering (grey)",
    "grass": "grass (grey texture)",
    "gravel": "gravel (grey texture)",
    "brick": "a brick wall (grey texture)",
}


def sample_photos() -> list[tuple[str, str, Image.Image]]:
    """(name, what it shows, RGB image) for each non-waste photo."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    found = []
    sk = load_sample_images()
    for name, array in zip(["china", "flower"], sk.images, strict=True):
        what = "a Chinese temple" if name == "china" else "a flower"
        found.append((f"sklearn/{name}", what, Image.fromarray(array).convert("RGB")))
    for name, what in SKIMAGE_PHOTOS.items():
        array = getattr(skimage.data, name)()
        array = array[0] if isinstance(array, tuple) else array
        found.append((f"skimage/{name}", what, Image.fromarray(array).convert("RGB")))
    return found


def corner_crops(im: Image.Image, share: float = 0.6) -> list[Image.Image]:
    w, h = im.size
    cw, ch = int(w * share), int(h * share)
    return [im.crop((x, y, x + cw, y + ch)) for x in (0, w - cw) for y in (0, h - ch)]


def trashnet_part(features: Features, root: Path, paths: list[str], cache: Path):
    if cache.is_file():
        return dict(np.load(cache))
    data = features.of_files(root, paths)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def member_list(data: dict, kind: str, members: int) -> list[np.ndarray]:
    return [data[f"{kind}_{i}"] for i in range(members)]


def scores(train, labels, classes, members) -> dict[str, callable]:
    """Each score as a function of a part's cached outputs (higher: less like waste); the
    first is the one binsort.ood ships."""
    f_train = member_list(train, "features", members)
    means = class_means(f_train, labels, classes)
    centres = [f.mean(0) for f in f_train]
    centred = class_means([f - c for f, c in zip(f_train, centres, strict=True)], labels, classes)
    # Mahalanobis with one covariance per member shared by the classes (Lee et al. 2018),
    # shrunk toward its diagonal: 1644 photos for 1280 (lite) features.
    maha = []
    for f in f_train:
        mu = np.stack([f[labels == c].mean(0) for c in range(classes)])
        resid = f - mu[labels]
        cov = np.cov(resid, rowvar=False)
        cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
        maha.append((mu, np.linalg.inv(cov)))

    def mahalanobis(d):
        out = []
        for f, (mu, prec) in zip(member_list(d, "features", members), maha, strict=True):
            diff = f[:, None, :] - mu[None]
            out.append(np.einsum("ncd,de,nce->nc", diff, prec, diff).min(1))
        return np.mean(out, axis=0)

    def energy(d):  # -logsumexp of the logits, the members' mean (Liu et al. 2020)
        e = []
        for z in member_list(d, "logits", members):
            top = z.max(1, keepdims=True)
            e.append(-(top[:, 0] + np.log(np.exp(z - top).sum(1))))
        return np.mean(e, axis=0)

    def centred_cosine(d):  # the same, after subtracting the training photos' mean feature
        f = member_list(d, "features", members)
        return cosine_score([x - c for x, c in zip(f, centres, strict=True)], centred)

    return {
        "cosine to nearest class mean": lambda d: cosine_score(
            member_list(d, "features", members), means
        ),
        "centred cosine to nearest class mean": centred_cosine,
        "Mahalanobis, shared covariance": mahalanobis,
        "energy of the logits": energy,
        "1 - max probability": lambda d: 1 - d["probabilities"].max(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--root", type=Path, required=True, help="the TrashNet folder")
    parser.add_argument(
        "--rate", type=float, default=NOT_WASTE_RATE, help="validation photos flagged"
    )
    parser.add_argument("--cache", type=Path, default=Path("build/not_waste"))
    parser.add_argument("--write", type=Path, help="write the model with its ood_score here")
    args = parser.parse_args()

    digest = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    model = OnnxModel(args.model)
    split, classes = model.metadata["split"], model.classes
    features = Features(args.model)
    parts = {
        part: trashnet_part(features, args.root, split[part], args.cache / f"{digest}-{part}.npz")
        for part in ("train", "val", "test")
    }
    labels = {
        part: np.array([classes.index(p.split("/")[0]) for p in split[part]]) for part in parts
    }
    photos = sample_photos()
    whole = features([im for _, _, im in photos])
    crops = features([c for _, _, im in photos for c in corner_crops(im)])
    screened = [name for name, _, im in photos if screen(resize_shorter(im, model.input_size))]
    print(f"model: {args.model.name} ({digest}), {features.members} members")
    print(
        f"TrashNet photos: {len(split['train'])} training (class means), "
        f"{len(split['val'])} validation (threshold), {len(split['test'])} test"
    )
    print(
        f"non-waste: {len(photos)} photos, {4 * len(photos)} corner crops; "
        f"screened out by binsort.screening anyway: {screened or 'none'}"
    )
    for part in ("val", "test"):
        acc = (parts[part]["probabilities"].argmax(1) == labels[part]).mean()
        print(f"accuracy on {part}: {acc:.4f}")

    table = scores(parts["train"], labels["train"], len(classes), features.members)
    print(f"\nthreshold: flags at most {args.rate:.0%} of validation photos")
    print("flagged: the share of each set above it; AUROC: test photos against non-waste")
    print("photos and crops together, whatever the threshold (1: every non-waste one higher)")
    columns = ("val", "test", "photos", "crops", "AUROC")
    print(f"{'score':40s} {'threshold':>10s} " + " ".join(f"{c:>7s}" for c in columns))
    chosen = None
    for name, fn in table.items():
        t = threshold_for(fn(parts["val"]), args.rate)
        rates = [(fn(d) > t).mean() for d in (parts["val"], parts["test"], whole, crops)]
        near, far = fn(parts["test"]), np.concatenate([fn(whole), fn(crops)])
        auroc = roc_auc_score([0] * len(near) + [1] * len(far), np.concatenate([near, far]))
        cells = " ".join(f"{r:7.1%}" for r in rates)
        print(f"{name:40s} {t:10.4f} {cells} {auroc:7.3f}")
        if chosen is None:
            chosen = (name, fn, t)
    name, fn, t = chosen
    n_val, n_test = len(split["val"]), len(split["test"])
    val_flags, test_flags = int((fn(parts["val"]) > t).sum()), int((fn(parts["test"]) > t).sum())
    print(f"\nshipped: {name}, threshold {t:.4f}")
    print(f"  validation flagged {val_flags}/{n_val}, test flagged {test_flags}/{n_test}")
    whole_scores, crop_scores = fn(whole), fn(crops).reshape(len(photos), 4)
    for (pname, what, _), s, cs in zip(photos, whole_scores, crop_scores, strict=True):
        label = classes[int(whole["probabilities"][photos.index((pname, what, _))].argmax())]
        print(
            f"  {pname:32s} {s:.4f} {'flagged' if s > t else 'NOT flagged':11s} "
            f"crops flagged {int((cs > t).sum())}/4  (model: {label}; {what})"
        )
    flagged = int((whole_scores > t).sum())
    crops_flagged = int((crop_scores > t).sum())
    print(
        f"  non-waste flagged: {flagged}/{len(photos)} photos, "
        f"{crops_flagged}/{crop_scores.size} crops"
    )

    if args.write:
        # What binsort export --not-waste writes, from the features cached above.
        fit = fit_from_features(
            member_list(parts["train"], "features", features.members),
            labels["train"],
            member_list(parts["val"], "features", features.members),
            len(classes),
            args.rate,
        )
        assert fit.threshold == t and fit.flagged == val_flags  # the shipped score, as printed
        test_scores = fn(parts["test"])
        args.write.parent.mkdir(parents=True, exist_ok=True)
        write_ood(args.model, args.write, fit, {"test_flagged": [test_flags, n_test]})
        written = OnnxModel(args.write)
        ims = [open_rgb(args.root / p, min_side=written.input_size) for p in split["test"][:16]]
        probs, graph_scores = written.answers([resize_shorter(i, written.input_size) for i in ims])
        print(
            f"\nwrote {args.write} ({args.write.stat().st_size / 1e6:.2f} MB); on 16 test photos "
            f"the graph's {OOD_OUTPUT} differs from numpy's by "
            f"{np.abs(graph_scores - test_scores[:16]).max():.1e}, its probabilities from the "
            f"original's by {np.abs(probs - parts['test']['probabilities'][:16]).max():.1e}"
        )
        print(json.dumps(written.metadata["ood"]))


if __name__ == "__main__":
    main()
