"""A teacher for ``binsort train --teacher``: a frozen checkpoint, ensemble file or exported ONNX
file (``default``: the bundled model) whose answers a student learns from (knowledge
distillation, Hinton et al. 2015).

The teacher answers the same augmented batch the student sees ("consistent teaching", Beyer et
al. 2022), so it has to run during training; it is not a submodule of the student, so its
weights stay out of the student's checkpoint, its optimiser and its train/eval switches. The
checkpoint records only the teacher's path.

An exported file (the bundled model is one) teaches through onnxruntime, which runs on the
CPU: there it is several times faster than the same networks in PyTorch, but next to a
student on a GPU it would take most of each step. So when the student trains on another
device, the file's members are rebuilt as PyTorch networks on that device where their weights
can be read back (``binsort.models.bundled``: the EfficientNet-Lite members of the bundled
model), and only if they answer like the file on a test batch; else the file teaches.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from binsort.errors import BinsortError
from binsort.leakage import held_out_overlap
from binsort.metrics import tempered_softmax, weighted_mean
from binsort.models.checkpoint import LoadedModel, distinct_members, load_members
from binsort.models.onnx_member import OnnxModule, load_onnx_member
from binsort.onnx_model import is_onnx

# Probabilities: the rebuilt members compute in float32 what the graph computes from the
# same stored weights, so they differ by rounding (about 3e-7 on the bundled model).
REBUILT_TOLERANCE = 1e-4


class Teacher:
    """The tempered-softmax mean of one or more frozen models, as an ensemble file defines it."""

    def __init__(self, members: list[tuple[LoadedModel, int]], path: Path) -> None:
        self.members = members
        self.path = path
        for member, _ in members:
            member.model.eval().requires_grad_(False)

    def to(self, device: torch.device | str, channels_last: bool = False) -> Teacher:
        if torch.device(device).type != "cpu":
            rebuilt = rebuilt_teacher(self)
            if rebuilt is not None:
                self.members = rebuilt.members
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for member, _ in self.members:
            member.model.to(device=device, memory_format=fmt)
        return self

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` class probabilities for ``[N, 3, S, S]`` images in [0, 1]."""
        # float32 whatever the student's precision (autocast off too): the members were
        # trained that way, and their answer is the target.
        images = images.float()
        with torch.autocast(images.device.type, enabled=False):
            probs = [
                tempered_softmax(member.model(_view(member, images)).float(), member.temperature)
                for member, _ in self.members
            ]
            return weighted_mean(probs, [weight for _, weight in self.members])


def _view(member: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """The batch as ``member`` takes it. An exported file's graph has a fixed input size, so
    it sees the student's crop resized to that size: the same view, at its own resolution
    (its networks rebuilt in PyTorch too, to answer as the file does); a checkpoint's network
    takes the crop as it is."""
    if not is_onnx(member.path):
        return images
    size = member.input_size
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def load_teacher(path: str | Path, classes: list[str]) -> Teacher:
    """The models in ``path`` (checkpoint, ensemble file, ONNX file, or ``default`` for the
    bundled model); their classes must be ``classes``."""
    from binsort.candidates import bundled_or

    path = bundled_or(path)
    if not Path(path).is_file():
        # --resume reads the path as it was typed, so a relative one depends on the folder.
        raise BinsortError(
            f"--teacher {path}: no such checkpoint or ensemble file (a relative path is read "
            "from the folder the command runs in, also by --resume)"
        )
    # An exported file answers calibrated probabilities already (temperature 1 keeps them).
    members = [load_onnx_member(path)] if is_onnx(path) else load_members(path)
    theirs = members[0].classes
    if list(theirs) != list(classes):
        raise BinsortError(
            f"--teacher {path}: its classes ({', '.join(theirs)}) are not the training "
            f"folder's ({', '.join(classes)}), in the same order"
        )
    return Teacher(distinct_members(members), Path(path))


def rebuilt_teacher(teacher: Teacher) -> Teacher | None:
    """``teacher``, an exported file, as PyTorch networks on the CPU; None for a teacher that
    is not one file, whose weights cannot be read back, or whose rebuilt networks do not
    answer like the file (REBUILT_TOLERANCE)."""
    from binsort.models.bundled import bundled_weights
    from binsort.models.factory import build_model

    (file, _), path = teacher.members[0], teacher.path
    if len(teacher.members) != 1 or not isinstance(file.model, OnnxModule):
        return None
    onnx = file.model.onnx
    if onnx.tta != "none" or len(onnx.input_sizes) != 1 or not onnx.members:
        return None
    members = []
    for i, member in enumerate(onnx.members):
        try:
            source = bundled_weights(f"bundled:{i + 1}", str(member["arch"]), path)
            model = build_model(str(member["arch"]), len(file.classes), source.mean, source.std)
            model.net.load_state_dict(source.state)
            temperature, weight = float(member["temperature"]), int(member.get("weight", 1))
        except (BinsortError, KeyError, TypeError, ValueError, RuntimeError):
            return None
        # Same path and input size as the file: _view feeds it the file's view.
        members.append((replace(file, model=model.eval(), temperature=temperature), weight))
    candidate = Teacher(members, path)
    batch = torch.rand(
        2, 3, onnx.input_size, onnx.input_size, generator=torch.Generator().manual_seed(0)
    )
    gap = (candidate.probabilities(batch) - teacher.probabilities(batch)).abs().max()
    return candidate if float(gap) <= REBUILT_TOLERANCE else None


def distillation_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student), both softened by ``temperature``, times ``temperature**2`` so that
    its gradients keep their size as the temperature changes (Hinton et al.)."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    target = teacher_probs
    if temperature != 1.0:
        # The teacher's answer is already a probability: soften its log like a logit.
        target = tempered_softmax(teacher_probs.clamp_min(1e-12).log(), temperature)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature**2


def teacher_overlap(teacher: Teacher, val: list[str], test: list[str]) -> list[str]:
    """Warnings for held-out images of the student that the teacher's members trained on.

    What the teacher learnt from an image leaks into the student's answer on it, so the
    student's validation (or test) figures would be optimistic. Images are matched by
    ``binsort.leakage``'s rule: a teacher trained on a copy of the same folder counts."""
    trained: set[str] = set()
    for member, _ in teacher.members:
        trained.update((member.split or {}).get("train", []))
    held_out = {"validation": val, "test": test}
    return held_out_overlap(f"the teacher ({teacher.path})", "the student's", trained, held_out)
