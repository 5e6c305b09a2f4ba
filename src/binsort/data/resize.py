"""Shrink an ImageFolder once, so that training does not decode full-size photos every epoch.

``resize_folder(src, dst, size)`` mirrors the class folders and file names of ``src`` under
``dst`` with every image's shorter side brought down to ``size`` pixels (aspect ratio kept,
never upscaled), upright (EXIF orientation applied), RGB and JPEG-encoded.

It is safe to interrupt and re-run: nothing is ever written under ``src``; each output is
written to a hidden temporary file in its folder and renamed into place, so a killed run leaves
no half-written file under a final name; a re-run skips outputs that already exist and removes
the temporary files a killed run left behind.

Files that cannot be used are not errors: they are returned in ``ResizeResult.skipped`` with the
reason, and every other file is still written. Nothing here prints or imports torch.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from binsort.data.images import describe, is_hidden, is_image_name, open_rgb
from binsort.errors import BinsortError

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
NOT_AN_IMAGE = "not an image file"

# ``.<final name>.tmp-<pid>``: what a worker writes before renaming it into place.
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")

ProgressCallback = Callable[[int, int], None]


@dataclass
class ResizeResult:
    """What ``resize_folder`` did.

    ``written``: images resized (or re-encoded) and written in this run.
    ``already_done``: images whose output already existed and was kept.
    ``skipped``: ``(path relative to src, reason)`` for every file that was not written.
    ``cleaned``: temporary files left by an earlier, interrupted run that were removed.
    """

    written: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cleaned: int = 0

    @property
    def ok(self) -> bool:
        """True when every file was written or already done (exit code 0 in the CLI)."""
        return not self.skipped


def output_name(name: str) -> str:
    """The output file name for a source file name: JPEG names are kept, others get ``.jpg``."""
    path = Path(name)
    if path.suffix.lower() in JPEG_SUFFIXES:
        return name
    return path.stem + ".jpg"


def target_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side at ``size``; unchanged when already smaller."""
    short = min(width, height)
    if short <= size:
        return width, height
    if width <= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def default_workers() -> int:
    """The number of CPUs this process may use."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def resize_folder(
    src: str | Path,
    dst: str | Path,
    size: int,
    quality: int = 90,
    workers: int | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ResizeResult:
    """Write a copy of the image folder ``src`` under ``dst`` with shorter sides of ``size`` px.

    ``workers``: processes to decode and encode with (``None``: one per CPU; 0 or 1: in this
    process). ``overwrite``: redo outputs that already exist instead of counting them as done.
    ``progress(done, total)`` is called as images are processed (``total`` counts the images that
    need work, not those already done).

    Raises ``BinsortError`` for problems with the arguments: ``src`` missing or not a folder,
    ``dst`` equal to or inside ``src``, a size, quality or worker count out of range.
    ``OSError`` from writing (disk full, permission denied) stops the run and propagates.
    """
    src_root, dst_root = _check_arguments(src, dst, size, quality, workers)
    result = ResizeResult()
    jobs: list[tuple[str, str, str]] = []  # (relative source path, source path, output path)
    src_in_dst = _is_within(src_root, dst_root)

    for rel, rel_out, reason in _plan(src_root):
        if reason is not None:
            result.skipped.append((rel, reason))
            continue
        out = dst_root / rel_out
        if src_in_dst and _is_within(out, src_root):
            # Possible only when src is inside dst and a class folder repeats src's own path.
            result.skipped.append((rel, f"output {rel_out} would be written inside SRC"))
            continue
        if not overwrite and out.is_file():
            result.already_done += 1
            continue
        jobs.append((rel, str(src_root / rel), str(out)))

    result.cleaned = _clean_temp_files(dst_root, {Path(out).parent for _, _, out in jobs})

    total = len(jobs)
    if progress is not None:
        progress(0, total)
    n_workers = default_workers() if workers is None else workers
    n_workers = min(n_workers, total)
    tasks = [(path, out, size, quality) for _, path, out in jobs]

    if n_workers <= 1:
        outcomes = map(_resize_task, tasks)
        _collect(outcomes, jobs, result, progress, total)
    else:
        # "spawn": the CLI's progress bar runs a thread, and forking a threaded process can
        # deadlock. A spawned worker re-imports the main module (for the CLI, binsort.cli,
        # which loads no torch), PIL and this module: a fraction of a second each.
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(32, total // (n_workers * 8)))
        executor = ProcessPoolExecutor(
            max_workers=n_workers, mp_context=context, initializer=_ignore_sigint
        )
        try:
            outcomes = executor.map(_resize_task, tasks, chunksize=chunksize)
            _collect(outcomes, jobs, result, progress, total)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)

    result.skipped.sort()
    return result


def _check_arguments(
    src: str | Path, dst: str | Path, size: int, quality: int, workers: int | None
) -> tuple[Path, Path]:
    if size < 1:
        raise BinsortError(f"--size must be at least 1 pixel, not {size}")
    if not 1 <= quality <= 100:
        raise BinsortError(f"--quality must be between 1 and 100, not {quality}")
    if workers is not None and workers < 0:
        raise BinsortError(f"--workers must be 0 or more, not {workers}")
    src_path = Path(src).expanduser()
    if not src_path.exists():
        raise BinsortError(f"source folder {src} does not exist")
    if not src_path.is_dir():
        raise BinsortError(f"source {src} is not a folder")
    src_root = src_path.resolve()
    dst_root = Path(dst).expanduser().resolve()
    if dst_root == src_root:
        raise BinsortError(f"destination {dst} is the source folder; choose a new folder")
    if _is_within(dst_root, src_root):
        raise BinsortError(
            f"destination {dst} is inside the source folder {src}; choose a folder outside it"
        )
    if dst_root.exists() and not dst_root.is_dir():
        raise BinsortError(f"destination {dst} exists and is not a folder")
    return src_root, dst_root


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _plan(src_root: Path) -> list[tuple[str, str, str | None]]:
    """``(relative path, relative output path, reason to skip or None)`` for every file.

    Hidden files and folders are ignored. Symbolic links to folders are not followed (no loops);
    links to files are read like files. When two sources map to the same output name (``a.png``
    and ``a.jpg``; case is ignored), a source whose name is kept wins, then the first in sorted
    order.
    """
    entries: list[tuple[str, str, str | None]] = []
    for dirpath, dirnames, filenames in os.walk(src_root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        base = Path(dirpath).relative_to(src_root)
        for name in sorted(filenames):
            if is_hidden(name):
                continue
            rel = (base / name).as_posix()
            if not is_image_name(name):
                entries.append((rel, "", NOT_AN_IMAGE))
            else:
                entries.append((rel, (base / output_name(name)).as_posix(), None))

    # Names are compared ignoring case: on macOS and Windows a.JPG and a.jpg are one file.
    owners: dict[str, str] = {}
    for rel, rel_out, reason in sorted(entries, key=lambda e: (e[0] != e[1], e[0])):
        if reason is None:
            owners.setdefault(rel_out.casefold(), rel)
    planned = []
    for rel, rel_out, reason in entries:
        owner = owners.get(rel_out.casefold())
        if reason is None and owner != rel:
            reason = f"output name {rel_out} is already taken by {owner}"
        planned.append((rel, rel_out, reason))
    return planned


def _clean_temp_files(dst_root: Path, folders: set[Path]) -> int:
    """Remove temporary files of dead processes from ``folders``; return how many."""
    removed = 0
    for folder in sorted(folders):
        if not _is_within(folder, dst_root) or not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            match = _TEMP_RE.match(entry.name)
            if match and entry.is_file(follow_symlinks=False) and not _alive(int(match[1])):
                try:
                    os.remove(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (so its temporary file may still be in use)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that was killed but not yet reaped (Linux; in containers whose first process
    does not reap orphans it can stay so for long): it keeps its pid but writes nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (name) state ...": the name may hold spaces and parentheses, the state follows it.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _collect(outcomes, jobs, result: ResizeResult, progress, total: int) -> None:
    for done, ((rel, _, _), reason) in enumerate(zip(jobs, outcomes, strict=True), start=1):
        if reason is None:
            result.written += 1
        else:
            result.skipped.append((rel, reason))
        if progress is not None:
            progress(done, total)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: let the parent stop the run (and the CLI say
    # "interrupted") instead of every worker printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _resize_task(task: tuple[str, str, int, int]) -> str | None:
    """Resize one image; return None when written, or the reason it was skipped.

    Reading problems are reasons; writing problems (``OSError``) propagate and stop the run.
    """
    path, out, size, quality = task
    try:
        im = open_rgb(path, min_side=size)
        new_size = target_size(im.width, im.height, size)
        if new_size != im.size:
            im = im.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except BinsortError as exc:
        # The table already names the file: drop the path from the reason.
        reason = str(exc).removeprefix(f"{path}: ")
        return reason.replace(path, Path(path).name)
    except Exception as exc:  # one odd file must not stop a run over thousands
        return f"not a readable image ({describe(exc)})".replace(path, Path(path).name)

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        im.save(temp, "JPEG", quality=quality)
        os.replace(temp, out_path)
    finally:
        if temp.exists():
            temp.unlink()
    return None
