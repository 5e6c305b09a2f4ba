import pytest

from binsort.data.folder import require_every_class, scan_folder
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
