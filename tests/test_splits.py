import json
from pathlib import Path

from binsort.data.splits import stratified_split


def samples(counts: list[int]) -> list[tuple[str, int]]:
    return [(f"c{c}/{i}.jpg", c) for c, n in enumerate(counts) for i in range(n)]


def test_split_is_stratified_disjoint_and_complete():
    data = samples([40, 20, 10])
    split = stratified_split(data, val=0.2, test=0.1, seed=3)
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {p for p, _ in data}
    for cls, n in enumerate([40, 20, 10]):
        n_test = sum(p.startswith(f"c{cls}/") for p in test)
        n_val = sum(p.startswith(f"c{cls}/") for p in val)
        assert n_test == round(n * 0.1)
        assert n_val == max(1, round((n - n_test) * 0.2))


def test_split_is_reproducible_and_seed_dependent():
    data = samples([30, 30])
    a = stratified_split(data, 0.2, 0.2, seed=1)
    b = stratified_split(list(reversed(data)), 0.2, 0.2, seed=1)
    c = stratified_split(data, 0.2, 0.2, seed=2)
    assert a == b
    assert a.val != c.val


def test_every_class_keeps_a_training_and_validation_image():
    split = stratified_split(samples([2, 3, 50]), val=0.05, test=0.0, seed=0)
    for cls in range(3):
        assert any(p.startswith(f"c{cls}/") for p in split.train)
        assert any(p.startswith(f"c{cls}/") for p in split.val)


def test_the_committed_trashnet_split_is_reproduced():
    """``--split-seed 42 --test-split 0.15`` on TrashNet gives docs/trashnet-split.json again:
    a change of algorithm (e.g. to sklearn's train_test_split) would fail here."""
    record = json.loads((Path(__file__).parents[1] / "docs" / "trashnet-split.json").read_text())
    paths = record["train"] + record["val"] + record["test"]
    classes = sorted({p.split("/")[0] for p in paths})
    data = [(p, classes.index(p.split("/")[0])) for p in paths]
    split = stratified_split(data, val=0.1, test=0.15, seed=record["seed"])
    assert split.to_dict() == {part: record[part] for part in ("train", "val", "test")}


def test_a_split_of_several_folders_is_drawn_over_all_their_photos(tmp_path):
    from binsort.data.folder import qualify
    from binsort.data.splits import recorded_roots, split_record

    # Class 1 lies in both folders, 3 photos in each: split together, a fifth of its 6 is 1
    # validation photo; split folder by folder, each would give one (2 of 6).
    data = [(qualify(0, f"c0/{i}.jpg"), 0) for i in range(10)]
    data += [(qualify(r, f"c1/{i}.jpg"), 1) for r in (0, 1) for i in range(3)]
    split = stratified_split(data, val=0.2, test=0.0, seed=0)
    assert sum("c1/" in p for p in split.val) == 1 and len(split.val) == 3
    assert {p.split(":")[0] for p in split.train} == {"0", "1"}
    record = split_record([tmp_path / "a", tmp_path / "b"], 0, split.train, split.val, [])
    assert record["roots"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert record["root"] == record["roots"][0]
    assert recorded_roots(record) == record["roots"]
    # One folder is recorded as it always was: a root and no roots.
    one = split_record([tmp_path / "a"], 0, split.train, split.val, [])
    assert "roots" not in one and recorded_roots(one) == [str(tmp_path / "a")]


def test_an_old_record_names_its_one_folder():
    from binsort.data.splits import recorded_roots
    from binsort.imagesets import read_split

    path = Path(__file__).parents[1] / "docs" / "trashnet-split.json"
    record = read_split(path)
    assert "roots" not in record and recorded_roots(record) == [record["root"]]
