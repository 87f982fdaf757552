"""What the checks share: the small supernets and data, the error, and how a check fails."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from harness.batches import Batches
from harness.config import SpaceSettings
from harness.errors import HarnessError
from harness.plugins import torch_state_kept
from harness.search_data import SearchData
from spaces import make_space

# The smoke preset's supernet (channels 4, one cell per stage) on 8 x 8 images, 16 per split
# in batches of 8: seconds per method in NAS-Bench-201's spaces, more in the DARTS space.
CHANNELS, CELLS_PER_STAGE = 4, 1
RESOLUTION, IMAGES, BATCH_SIZE, NUM_CLASSES = 8, 16, 8, 10


class ConformanceError(HarnessError):
    """A method or algorithm failed a check: ``subject`` (who), ``space`` (where), ``reason``."""

    def __init__(self, subject: str, space: str | None, reason: str) -> None:
        where = f" in space {space}" if space else ""
        super().__init__(f"{subject} fails conformance{where}: {reason}")
        self.subject, self.space, self.reason = subject, space, reason


class Skip(Exception):
    """The subject does not apply to a space (the reason says why, as the harness decides)."""


@dataclass(frozen=True)
class Subject:
    """What is checked: its label in messages, its short name, and the check of one space."""

    label: str
    name: str
    check: Callable[[str], None]


@contextlib.contextmanager
def quarantine() -> Iterator[None]:
    """The caller's random state and torch's global switches as they were, whatever the
    subject does (it runs seeded; a test after it must not depend on that)."""
    with torch.random.fork_rng(devices=[]), torch_state_kept():
        yield


def failer(subject: str, space: str) -> Callable[..., NoReturn]:
    """``fail(reason, cause=None)``: raise the :class:`ConformanceError` for that subject there."""

    def fail(reason: str, cause: BaseException | None = None) -> NoReturn:
        raise ConformanceError(subject, space, reason) from cause

    return fail


def guarded(fail: Callable[..., NoReturn], what: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``; anything it raises fails the check, with its first line."""
    try:
        return call(*args)
    except (ConformanceError, Skip):
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        fail(f"raised {type(error).__name__} {what}" + (f" ({first})" if first else ""), error)


def differing(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors added, removed or changed, compared bit for bit (NaN equals NaN)."""
    names = sorted(set(before) ^ set(after))
    for name in [n for n in before if n in after]:
        a, b = before[name].detach(), after[name].detach()
        same = (a.dtype, a.shape) == (b.dtype, b.shape) and torch.equal(
            a.reshape(-1).contiguous().view(torch.uint8),
            b.reshape(-1).contiguous().view(torch.uint8),
        )
        if not same:
            names.append(name)
    return names


def cloned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def tiny_space(name: str) -> tuple[SpaceSettings, Any]:
    settings = SpaceSettings(name=name, channels=CHANNELS, cells_per_stage=CELLS_PER_STAGE)
    return settings, make_space(settings)


def tiny_data(seed: int) -> SearchData:
    """Learnable 8 x 8 images (each class its own brightness), seeded streams as in a run."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(IMAGES) % NUM_CLASSES

    def images() -> torch.Tensor:
        noise = torch.randint(0, 60, (IMAGES, 3, RESOLUTION, RESOLUTION), generator=generator)
        return (labels.view(-1, 1, 1, 1) * 20 + noise).clamp(0, 255).to(torch.uint8)

    weight, alpha = images(), images()

    def stream(pixels: torch.Tensor, number: int, augment: bool) -> Batches:
        return Batches(pixels, labels, BATCH_SIZE, seed * 1000 + number, augment)

    streams = [stream(weight, 1, True), stream(alpha, 2, True)]
    streams += [stream(weight, 3, False), stream(alpha, 4, False)]
    return SearchData(*streams, f"conformance-{seed}", NUM_CLASSES)
