"""The model's own "not waste" score (binsort.ood): in the graph, in its metadata, in predict
and serve's answers; files without it answer as before. Fitted to a user's model by
``binsort export --not-waste`` (binsort.ood_fit)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.images import open_rgb
from binsort.errors import BinsortError
from binsort.models.checkpoint import load_members, save_ensemble
from binsort.onnx_model import OnnxModel, to_batch
from binsort.ood import (
    OOD_OUTPUT,
    REASON,
    SCORE_NAME,
    add_ood_score,
    class_means,
    cosine_score,
    member_tensors,
    threshold_for,
    with_member_outputs,
)
from binsort.ood_fit import fit_ood
from binsort.predict import default_model_path
from conftest import make_image_folder

runner = CliRunner()
CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
SIZE = 32


def tiny_export(
    path: Path, members: int = 2, seed: int = 0, attention: bool = False, divide: bool = True
) -> Path:
    """A file shaped like binsort's exports: each member a convolution, pooled features, a
    Gemm classifier, its temperature and a Softmax; the members' mean as ``probabilities``.
    ``attention`` puts a Softmax of the member's own before its classifier, as a
    transformer's attention is; ``divide=False`` leaves out the Div by the temperature."""
    rng = np.random.default_rng(seed)
    nodes, inits, softmaxes = [], [], []
    for i in range(members):
        p = f"m{i}_"
        inits += [
            numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), p + "w"),
            numpy_helper.from_array(rng.normal(size=8).astype(np.float32), p + "b"),
            numpy_helper.from_array(rng.normal(size=(6, 8)).astype(np.float32), p + "fc"),
            numpy_helper.from_array(np.zeros(6, np.float32), p + "fcb"),
            numpy_helper.from_array(np.array(0.5 + i, np.float32), p + "t"),
        ]
        nodes += [
            helper.make_node("Conv", ["images_32", p + "w", p + "b"], [p + "c"], pads=[1] * 4),
            helper.make_node("Relu", [p + "c"], [p + "r"]),
            helper.make_node("GlobalAveragePool", [p + "r"], [p + "g"]),
            helper.make_node("Flatten", [p + "g"], [p + "f"]),
        ]
        features = p + "f"
        if attention:
            nodes.append(helper.make_node("Softmax", [p + "f"], [p + "a"], axis=1))
            features = p + "a"
        nodes.append(helper.make_node("Gemm", [features, p + "fc", p + "fcb"], [p + "z"], transB=1))
        if divide:
            nodes.append(helper.make_node("Div", [p + "z", p + "t"], [p + "zt"]))
        nodes.append(
            helper.make_node("Softmax", [p + "zt" if divide else p + "z"], [p + "s"], axis=1)
        )
        softmaxes.append(p + "s")
    inits.append(numpy_helper.from_array(np.array(members, np.float32), "count"))
    nodes += [
        helper.make_node("Sum", softmaxes, ["total"]),
        helper.make_node("Div", ["total", "count"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images_32", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 6])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    member = {"arch": "tiny", "input_size": SIZE, "temperature": 1.0, "weight": 1}
    meta = {"classes": CLASSES, "input_sizes": [SIZE], "members": [member] * members}
    helper.set_model_props(proto, {"binsort": json.dumps(meta)})
    onnx.save(proto, str(path))
    return path


def member_features(path: Path, images: list[Image.Image]) -> list[np.ndarray]:
    import onnxruntime as ort

    proto = with_member_outputs(onnx.load(str(path)))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name.startswith("features_")]
    return session.run(names, {"images_32": to_batch(images, SIZE)})


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("ood"), per_class=3, tag="_ood")


def images_of(root: Path) -> tuple[list[Image.Image], np.ndarray]:
    paths = sorted(root.rglob("*.jpg"))
    ims = [Image.open(p).convert("RGB").resize((SIZE, SIZE)) for p in paths]
    return ims, np.array(
        [sorted({p.parent.name for p in paths}).index(p.parent.name) for p in paths]
    )


def with_score(tmp_path: Path, photos: Path, threshold: float) -> tuple[Path, Path]:
    """The tiny file, and a copy with ``ood_score`` (means from ``photos``) at ``threshold``."""
    plain = tiny_export(tmp_path / "plain.onnx")
    ims, labels = images_of(photos)
    means = class_means(member_features(plain, ims), labels, 3)
    scored = tmp_path / "scored.onnx"
    onnx.save(add_ood_score(onnx.load(str(plain)), means, threshold), str(scored))
    return plain, scored


def test_the_graph_computes_the_numpy_score(tmp_path: Path, photos: Path) -> None:
    plain, scored = with_score(tmp_path, photos, 0.5)
    ims, labels = images_of(photos)
    means = class_means(member_features(plain, ims), labels, 3)
    probs, scores = OnnxModel(scored).answers(ims)

    expected = cosine_score(member_features(plain, ims), means)
    assert scores.shape == (len(ims),)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert scores.min() >= 0 and scores.max() <= 2
    # The probabilities are the file's as before: one more output, nothing else changed.
    np.testing.assert_array_equal(probs, OnnxModel(plain).probabilities(ims))
    # With flip, the score is the views' mean, as the probabilities are.
    flipped, flip_scores = OnnxModel(scored).answers(ims, "flip")
    assert flip_scores.shape == scores.shape
    np.testing.assert_allclose(flipped, OnnxModel(plain).probabilities(ims, "flip"), atol=1e-6)


def test_the_threshold_travels_in_the_metadata(tmp_path: Path, photos: Path) -> None:
    plain, scored = with_score(tmp_path, photos, 0.123)
    model = OnnxModel(scored)
    assert model.ood_threshold == pytest.approx(0.123)
    assert model.ood["score"] == SCORE_NAME and model.ood["output"] == OOD_OUTPUT
    assert model.classes == CLASSES  # the rest of the metadata is kept
    with pytest.raises(BinsortError, match="already has"):
        add_ood_score(onnx.load(str(scored)), [], 0.1)


def test_a_file_without_the_output_is_unaffected(tmp_path: Path, photos: Path) -> None:
    plain, scored = with_score(tmp_path, photos, 2.5)  # above any score: never flagged
    ims, _ = images_of(photos)
    model = OnnxModel(plain)
    assert model.ood_threshold is None and model.answers(ims)[1] is None
    rows = [predict_json(path, photos) for path in (plain, scored)]
    assert rows[0] == rows[1]
    assert all(r["bin"] and r["not_recognised"] is None for r in rows[0])


def test_an_output_without_a_threshold_is_refused(tmp_path: Path, photos: Path) -> None:
    _, scored = with_score(tmp_path, photos, 0.5)
    proto = onnx.load(str(scored))
    (entry,) = [p for p in proto.metadata_props if p.key == "binsort"]
    meta = json.loads(entry.value)
    del meta["ood"]
    entry.value = json.dumps(meta)
    onnx.save(proto, str(scored))
    with pytest.raises(BinsortError, match="no threshold"):
        OnnxModel(scored)


def predict_json(model: Path, photos: Path) -> list[dict]:
    result = runner.invoke(app, ["predict", str(photos), "--model", str(model), "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        row.pop("model_file"), row.pop("model_sha256"), row.pop("model")
    return rows


def test_a_photo_far_from_the_classes_gets_no_bin(tmp_path: Path, photos: Path) -> None:
    _, scored = with_score(tmp_path, photos, -1.0)  # below any score: every photo flagged
    for row in predict_json(scored, photos):
        assert row["not_recognised"] == REASON
        assert row["bin"] is None and row["class"] is None and row["error"] is None

    from binsort.serve import create_app, load_served

    client = TestClient(create_app(load_served(scored, "psu")))
    photo = next(photos.rglob("*.jpg"))
    response = client.post("/predict", files={"file": ("x.jpg", photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json()["not_recognised"] == REASON and response.json()["bin"] is None


def test_the_threshold_flags_at_most_the_rate() -> None:
    scores = np.arange(100, dtype=float)
    t = threshold_for(scores, 0.02)
    assert (scores > t).sum() == 2
    assert (np.arange(183.0) > threshold_for(np.arange(183.0), 0.02)).sum() == 3


def test_member_tensors_of_the_bundled_file() -> None:
    """The bundled file's five members each give their features (the Gemm's input)."""
    proto = onnx.load(str(default_model_path()), load_external_data=False)
    assert len(member_tensors(proto.graph)) == 5


def test_the_shipped_model_says_a_flower_is_not_waste(tmp_path: Path) -> None:
    """scikit-learn's sample photo of a flower: 0.53 against the threshold's 0.46; the
    held-out TrashNet photos all score below it and keep their bins."""
    from sklearn.datasets import load_sample_images

    from binsort.serve import create_app, load_served

    flower = tmp_path / "flower.png"
    Image.fromarray(load_sample_images().images[1]).save(flower)
    held_out = Path(__file__).parents[1] / "examples" / "held-out"
    assert OnnxModel(default_model_path()).ood["score"] == SCORE_NAME

    result = runner.invoke(app, ["predict", str(flower), str(held_out), "-f", "json"])
    assert result.exit_code == 0, result.output
    (row, *waste) = json.loads(result.stdout)
    assert row["not_recognised"] == REASON and row["bin"] is None and row["class"] is None
    assert len(waste) == 6 and all(r["bin"] and r["not_recognised"] is None for r in waste)

    client = TestClient(create_app(load_served(None)))
    response = client.post("/predict", files={"file": ("f.png", flower.read_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["not_recognised"] == REASON and response.json()["bin"] is None


@pytest.mark.parametrize(
    ("attention", "divide"), [(False, True), (True, True), (False, False), (True, False)]
)
def test_member_tensors_of_every_member_shape(
    tmp_path: Path, photos: Path, attention: bool, divide: bool
) -> None:
    """A transformer's own Softmaxes are not members; a member without its Div still is."""
    path = tiny_export(tmp_path / "m.onnx", attention=attention, divide=divide)
    graph = onnx.load(str(path)).graph

    assert member_tensors(graph) == [
        (f"m{i}_{'a' if attention else 'f'}", f"m{i}_z") for i in range(2)
    ]
    # ...and the score is written and computed from those features.
    ims, labels = images_of(photos)
    means = class_means(member_features(path, ims), labels, 3)
    scored = tmp_path / "scored.onnx"
    onnx.save(add_ood_score(onnx.load(str(path)), means, 0.5), str(scored))
    expected = cosine_score(member_features(path, ims), means)
    np.testing.assert_allclose(OnnxModel(scored).answers(ims)[1], expected, atol=1e-5)


def test_member_tensors_refuses_a_classifier_that_is_not_fully_connected(tmp_path: Path) -> None:
    proto = onnx.load(str(tiny_export(tmp_path / "m.onnx")))
    (gemm, _) = [n for n in proto.graph.node if n.op_type == "Gemm"]
    gemm.op_type = "Conv"  # squeezenet's classifier is a convolution
    with pytest.raises(BinsortError, match="member 0 does not end in a fully connected .* Conv"):
        member_tensors(proto.graph)


RATE = 0.34  # of the tiny runs' 6 validation photos: at most 2 flagged


@pytest.fixture(scope="module")
def recorded_root(trained_runs) -> Path:
    """The image folder the first tiny run trained on (its split.json's root)."""
    return Path(json.loads((trained_runs[0].run_dir / "split.json").read_text())["root"])


@pytest.fixture(scope="module")
def not_waste_export(trained_runs, recorded_root: Path, tmp_path_factory) -> tuple[str, Path]:
    """The first tiny run exported with --not-waste: (what the command said, the file)."""
    out = tmp_path_factory.mktemp("not_waste") / "model.onnx"
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out)]
    result = runner.invoke(
        app, [*args, "--not-waste", str(recorded_root), "--not-waste-rate", str(RATE)]
    )
    assert result.exit_code == 0, result.output
    return result.output, out


def test_export_not_waste_writes_the_score_of_the_models_own_photos(
    not_waste_export: tuple[str, Path], recorded_root: Path
) -> None:
    said, out = not_waste_export
    model = OnnxModel(out)
    split = model.metadata["split"]
    # A single checkpoint's export: one member, Gemm -> Div -> Softmax.
    assert len(member_tensors(onnx.load(str(out)).graph)) == 1
    train = [open_rgb(recorded_root / p, min_side=SIZE) for p in split["train"]]
    val = [open_rgb(recorded_root / p, min_side=SIZE) for p in split["val"]]
    labels = np.array([model.classes.index(p.split("/")[0]) for p in split["train"]])
    assert len(val) == 6 and len(set(labels)) == 3

    # The graph's score is numpy's, from the class means of the training photos' features.
    means = class_means(member_features(out, train), labels, 3)
    expected = cosine_score(member_features(out, val), means)
    _, scores = model.answers(val)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # The threshold flags at most RATE of the validation photos, and the file says how many.
    assert model.ood_threshold == pytest.approx(threshold_for(expected, RATE), abs=1e-6)
    flagged = int((scores > model.ood_threshold).sum())
    assert flagged == 2 == np.floor(RATE * len(val))
    assert model.ood["score"] == SCORE_NAME and model.ood["rate"] == RATE
    assert model.ood["validation_flagged"] == [2, 6]
    assert f"not recognised above {model.ood_threshold:.4f}: flags 2 of 6 validation" in said
    # The library call gives the same fit for the file.
    fit = fit_ood(out, recorded_root, RATE)
    assert fit.threshold == pytest.approx(model.ood_threshold, abs=1e-6)
    assert (fit.flagged, fit.validation) == (2, 6)


def test_export_not_waste_refuses_photos_that_are_not_the_models(
    trained_runs, tmp_path: Path
) -> None:
    out = tmp_path / "m.onnx"
    other = make_image_folder(tmp_path / "other", per_class=2, tag="_other")
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out)]

    result = runner.invoke(app, [*args, "--not-waste", str(other)], terminal_width=400)

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    first = json.loads((trained_runs[0].run_dir / "split.json").read_text())["train"][0]
    assert f"{first}: a photo of last.ckpt's split is not under {other}" in result.output
    assert not out.exists()


def test_export_not_waste_needs_a_recorded_split(trained_runs, tmp_path: Path) -> None:
    """Members trained on different splits record none: no validation photos to set it."""
    members = [load_members(run.last_checkpoint)[0] for run in trained_runs]
    two = save_ensemble(members, tmp_path / "two.ensemble")
    out = tmp_path / "m.onnx"

    result = runner.invoke(
        app, ["export", str(two), "-o", str(out), "--not-waste", str(tmp_path)], terminal_width=400
    )

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "two.ensemble has no recorded validation photos: the threshold needs them" in (
        result.output
    )
    assert not out.exists()


def test_a_failed_fit_leaves_the_output_as_it_was(
    trained_runs, recorded_root: Path, tmp_path: Path
) -> None:
    """An unreadable photo is found only by the fit, after the export: output is not touched,
    and no temporary file is left behind."""
    root = tmp_path / "copy"
    shutil.copytree(recorded_root, root)
    val = json.loads((trained_runs[0].run_dir / "split.json").read_text())["val"]
    (root / val[0]).write_bytes(b"not a photo")
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    out.write_bytes(b"the user's file")
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out), "--not-waste"]

    refused = runner.invoke(app, [*args, str(root)])
    failed = runner.invoke(app, [*args, str(root), "--force"], terminal_width=400)

    assert refused.exit_code == 1 and "exists; pass --force to replace it" in refused.output
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert str(root / val[0]) in failed.output
    assert out.read_bytes() == b"the user's file"
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]


def test_export_not_waste_rate_must_be_a_share(trained_runs, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out)]
    result = runner.invoke(app, [*args, "--not-waste", str(tmp_path), "--not-waste-rate", "2"])
    assert result.exit_code == 1 and "--not-waste-rate must be at least 0 and below 1" in (
        result.output
    )
    assert not out.exists()


def test_the_files_score_is_the_torch_models(
    not_waste_export: tuple[str, Path], trained_runs, recorded_root: Path
) -> None:
    """The features the file scores are the ones the PyTorch model hands its classifier: the
    cosine score computed from them in torch, with the file's own class means, is the file's."""
    import torch

    _, out = not_waste_export
    (member,) = load_members(trained_runs[0].last_checkpoint)
    classifier = [m for m in member.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    taken = []
    hook = classifier.register_forward_hook(lambda _m, args, _out: taken.append(args[0]))
    model = OnnxModel(out)
    val = [open_rgb(recorded_root / p, min_side=SIZE) for p in model.metadata["split"]["val"]]
    try:
        with torch.no_grad():
            torch_probs = torch.softmax(
                member.model.eval()(torch.from_numpy(to_batch(val, SIZE))) / member.temperature, 1
            )
    finally:
        hook.remove()
    # The file's class means, read back from its initializer (ood0_means: [D, C]).
    stored = onnx.load(str(out)).graph.initializer
    means = next(numpy_helper.to_array(t) for t in stored if t.name == "ood0_means")
    expected = cosine_score([taken[0].numpy()], [means.T])
    probs, scores = model.answers(val)
    np.testing.assert_allclose(probs, torch_probs.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.ptp(expected) > 1e-3  # the photos score differently: the comparison means something
