import pytest

from binsort.data.folder import check_image, files_under, require_every_class, scan_folder
from binsort.errors import BinsortError
from conftest import make_image_folder


def test_scan_lists_classes_and_leaves_out_unreadable_files(image_folder):
    (image_folder / "glass" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (image_folder / "glass" / "empty.jpg").write_bytes(b"")
    (image_folder / "metal" / "notes.txt").write_text("hello")
    (image_folder / "metal" / ".DS_Store").write_bytes(b"\0\0")
    images = scan_folder(image_folder)
    assert images.classes == ["glass", "metal", "paper"]
    assert images.counts() == [8, 8, 8]
    skipped = dict(images.skipped)
    assert set(skipped) == {"glass/broken.jpg", "glass/empty.jpg", "metal/notes.txt"}
    assert skipped["metal/notes.txt"] == "not an image file"


@pytest.mark.parametrize("case", ["missing", "file", "one_class"])
def test_unusable_roots_are_clear_errors(tmp_path, case):
    root = tmp_path / "root"
    if case == "file":
        root.write_text("x")
    if case == "one_class":
        make_image_folder(root, classes=("glass",), per_class=2)
    with pytest.raises(BinsortError):
        scan_folder(root)


def test_class_without_images_is_an_error(image_folder):
    (image_folder / "trash").mkdir()
    with pytest.raises(BinsortError, match="trash"):
        require_every_class(scan_folder(image_folder))


def test_the_reason_an_image_is_unreadable_leaves_its_path_out(tmp_path) -> None:
    bad = tmp_path / "IMG: 1.jpg"  # ": " inside the name, where the reason is split off
    bad.write_bytes(b"not an image")
    assert check_image(bad).startswith("not a readable image (")


def test_files_under_is_sorted_and_skips_hidden_files_and_folders(tmp_path) -> None:
    for name in ["b/2.jpg", "b/1.txt", "a/3.png", ".git/x.jpg", "a/.DS_Store", "0.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in files_under(tmp_path)]
    assert found == ["0.jpg", "a/3.png", "b/1.txt", "b/2.jpg"]


def test_several_roots_match_classes_by_name_and_keep_each_photo_s_folder(tmp_path):
    from binsort.data.folder import scan_folders

    a = make_image_folder(tmp_path / "a", per_class=2, tag="_a")
    b = make_image_folder(tmp_path / "b", ("paper", "landfill"), per_class=3, tag="_b")
    (b / "paper" / "paper_a_000.jpg").write_bytes((a / "paper" / "paper_a_000.jpg").read_bytes())
    (b / "landfill" / "broken.jpg").write_bytes(b"not a photo")
    images = scan_folders([a, b])
    assert images.classes == ["glass", "landfill", "metal", "paper"]  # the sorted union
    assert images.counts() == [2, 3, 2, 6]
    assert images.roots == [a, b] and images.root == a
    # The same relative path in both folders stays two photos.
    assert {"0:paper/paper_a_000.jpg", "1:paper/paper_a_000.jpg"} <= dict(images.samples).keys()
    assert images.file("1:landfill/landfill_b_002.jpg") == b / "landfill" / "landfill_b_002.jpg"
    assert images.skipped[0][0] == str(b / "landfill" / "broken.jpg")
    # One root is scanned as it always was: plain relative paths.
    assert scan_folders([a]).samples == scan_folder(a).samples


@pytest.mark.parametrize("case", ["twice", "same_folder_by_another_path", "inside"])
def test_a_root_given_twice_or_inside_another_is_refused(tmp_path, case):
    from binsort.data.folder import scan_folders

    a = make_image_folder(tmp_path / "a", per_class=2)
    other = {"twice": a, "same_folder_by_another_path": tmp_path / "a" / ".." / "a"}
    nested = make_image_folder(a / "glass" / "more", per_class=2) if case == "inside" else None
    with pytest.raises(BinsortError, match="twice|inside") as info:
        scan_folders([a, other.get(case, nested)])
    assert "\n" not in str(info.value)
