"""Following one performer through a video's detections: choosing the main person and tracking them.

Two steps, both on the per-frame detections of :class:`~mtvcrafter.extract.nlf.Detections`:

1. **Tracklets.** Frame by frame, each detection joins the tracklet it continues best, or starts a new one.
   A detection continues a tracklet only when *both* gates pass: its box overlaps the tracklet's last box
   moved on at the tracklet's image speed (IoU ≥ :data:`MIN_IOU`, relaxed to 0 over
   :data:`LINK_GAP_S`), and its pelvis lies within :data:`PELVIS_GATE_MM` + :data:`PELVIS_SPEED_MM_S` × the
   time since the tracklet was last seen of the last pelvis. Pairs are taken in order of cost (the
   best-matching first), one detection per tracklet and one tracklet per detection, so when two people
   cross each keeps their own; a tracklet unseen for longer than :data:`LINK_GAP_S` is closed.
2. **The main person's chain.** Starting from the chosen person's tracklet, the track is continued after it
   ends (and before it starts) by a tracklet that begins after it (ends before it) whose first pelvis is
   within the same gate of the last one seen, the nearest and soonest first. A tracklet that was seen
   while the main person's was is somebody else, and is never taken: when the main person is hidden,
   their frames are missing rather than filled with whoever is visible.

Choosing the main person (the people seen in the first second from the first frame anyone is seen in):

- by default: the person whose boxes are largest on average over that second (among those seen in at least
  a quarter of its frames: a glimpse is not a performer);
- ``person=N``: the N-th of them in that order, counting from 0 (0 is the default's choice);
- ``box=(x, y, w, h)`` (pixels of the first frames): the person whose box overlaps it most (IoU) in that
  second, else anywhere in the video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import ExtractionError
from .nlf import Detections

#: Time (s) over which the main person is chosen, from the first frame where anyone is seen.
SELECTION_WINDOW_S = 1.0
#: Least share of that second's frames a person must be seen in to be one of the people to choose from.
MIN_PRESENCE = 0.25
#: Smallest box overlap (IoU) between consecutive frames of one person.
MIN_IOU = 0.2
#: Longest time (s) a tracklet waits for its person to be seen again.
LINK_GAP_S = 0.5
#: Pelvis gate: how far (mm) a person's pelvis may move between consecutive sightings, plus a speed
#: (mm/s) for the time they were not seen.
PELVIS_GATE_MM = 300.0
PELVIS_SPEED_MM_S = 2000.0
#: Smallest overlap (IoU) with a given ``box`` for a person to be taken as the one in it.
MIN_BOX_IOU = 0.1


@dataclass
class Track:
    """The main person's detection in each frame.

    Attributes:
        indices: per frame, the index of the main person's detection in that frame's
            :class:`~mtvcrafter.extract.nlf.Detections`, or None where they were not seen.
        description: how the person was chosen, in plain words (for the motion's notes).
        resumed: how many times the track was lost and picked up again.
    """

    indices: list[int | None]
    description: str
    resumed: int = 0

    @property
    def valid(self) -> np.ndarray:
        """``(T,)`` bool: the frames where the main person was seen."""
        return np.array([i is not None for i in self.indices], dtype=bool)


@dataclass
class _Tracklet:
    frames: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    pelvis: list[np.ndarray] = field(default_factory=list)
    velocity_px: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per frame

    def add(self, frame: int, index: int, box: np.ndarray, pelvis: np.ndarray) -> None:
        if self.frames:
            step = frame - self.frames[-1]
            moved = (_centre(box) - _centre(self.boxes[-1])) / step
            self.velocity_px = moved if len(self.frames) == 1 else 0.5 * self.velocity_px + 0.5 * moved
        self.frames.append(frame)
        self.indices.append(index)
        self.boxes.append(box)
        self.pelvis.append(pelvis)

    @property
    def start(self) -> int:
        return self.frames[0]

    @property
    def end(self) -> int:
        return self.frames[-1]


def _centre(box: np.ndarray) -> np.ndarray:
    return np.asarray(box[:2], dtype=np.float64) + np.asarray(box[2:4], dtype=np.float64) / 2.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(..., 4+)`` x, y, w, h (broadcast against each other)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    x0 = np.maximum(a[..., 0], b[..., 0])
    y0 = np.maximum(a[..., 1], b[..., 1])
    x1 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y1 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _pelvis_gate_mm(seconds: float) -> float:
    return PELVIS_GATE_MM + PELVIS_SPEED_MM_S * seconds


def _min_iou(seconds: float) -> float:
    return MIN_IOU * max(0.0, 1.0 - seconds / LINK_GAP_S)


def _tracklets(detections: Sequence[Detections], fps: float) -> tuple[list[_Tracklet], list[list[int]]]:
    """All tracklets, and for each frame the tracklet of each of its detections."""
    tracklets: list[_Tracklet] = []
    owner: list[list[int]] = []
    active: list[int] = []
    max_gap = max(1, round(LINK_GAP_S * fps))
    for t, frame in enumerate(detections):
        active = [k for k in active if t - tracklets[k].end <= max_gap]
        pairs = []
        for k in active:
            track = tracklets[k]
            seconds = (t - track.end) / fps
            moved = track.boxes[-1][:4].astype(np.float64).copy()
            moved[:2] += track.velocity_px * (t - track.end)
            ious = box_iou(moved, frame.boxes[:, :4])
            distances = np.linalg.norm(frame.joints[:, 0] - track.pelvis[-1], axis=-1)
            gate = _pelvis_gate_mm(seconds)
            for d in range(len(frame)):
                if ious[d] >= _min_iou(seconds) and distances[d] <= gate:
                    pairs.append((distances[d] / gate + (1.0 - ious[d]), k, d))
        owner.append([-1] * len(frame))
        taken: set[int] = set()
        for _, k, d in sorted(pairs):
            if k in taken or owner[t][d] >= 0:
                continue
            taken.add(k)
            owner[t][d] = k
        for d in range(len(frame)):
            if owner[t][d] < 0:
                tracklets.append(_Tracklet())
                owner[t][d] = len(tracklets) - 1
                active.append(owner[t][d])
            tracklets[owner[t][d]].add(t, d, frame.boxes[d], frame.joints[d, 0].astype(np.float64))
    return tracklets, owner


def _chain(tracklets: list[_Tracklet], seed: int, fps: float) -> list[int]:
    """The tracklets of the main person, in time order, grown from ``seed`` both ways."""
    chain = [seed]
    for forward in (True, False):
        while True:
            edge = tracklets[chain[-1] if forward else chain[0]]
            best, best_cost = None, np.inf
            for k, other in enumerate(tracklets):
                if forward and other.start <= edge.end or not forward and other.end >= edge.start:
                    continue
                gap = (other.start - edge.end if forward else edge.start - other.end) / fps
                ends = (edge.pelvis[-1], other.pelvis[0]) if forward else (edge.pelvis[0], other.pelvis[-1])
                gate = _pelvis_gate_mm(gap)
                distance = float(np.linalg.norm(ends[0] - ends[1]))
                cost = distance / gate + gap
                if distance <= gate and cost < best_cost:
                    best, best_cost = k, cost
            if best is None:
                break
            if forward:
                chain.append(best)
            else:
                chain.insert(0, best)
    return chain


def _window(detections: Sequence[Detections], fps: float) -> range:
    first = next((t for t, frame in enumerate(detections) if len(frame)), None)
    if first is None:
        raise ExtractionError("nobody was detected in any frame of the video", field="person")
    return range(first, min(len(detections), first + max(1, round(SELECTION_WINDOW_S * fps))))


def _people(
    detections: Sequence[Detections], tracklets: list[_Tracklet], owner: list[list[int]], window: range, fps: float
) -> list[list[int]]:
    """The people seen in ``window`` (in at least :data:`MIN_PRESENCE` of its frames), largest first: each a
    chain of tracklets (its first the one with the largest boxes in the window), ranked by the mean area of
    their boxes there."""
    area: dict[int, float] = {}
    seen: dict[int, int] = {}
    for t in window:
        for d, k in enumerate(owner[t]):
            area[k] = area.get(k, 0.0) + float(detections[t].boxes[d, 2] * detections[t].boxes[d, 3])
            seen[k] = seen.get(k, 0) + 1
    people: list[tuple[float, int, list[int]]] = []
    remaining = sorted(area, key=lambda k: (-area[k] / seen[k], k))
    while remaining:
        chain = [k for k in _chain(tracklets, remaining[0], fps) if k in area]
        frames = sum(seen[k] for k in chain)
        mean_area = sum(area[k] for k in chain) / frames
        people.append((mean_area, frames, [remaining[0], *(k for k in chain if k != remaining[0])]))
        remaining = [k for k in remaining if k not in chain]
    people.sort(key=lambda p: -p[0])
    # A person glimpsed in a few frames (a false detection, a passer-by at the edge) is not offered.
    present = [chain for _, frames, chain in people if frames >= MIN_PRESENCE * len(window)]
    return present or [max(people, key=lambda p: p[1])[2]]


def track_person(
    detections: Sequence[Detections],
    fps: float,
    *,
    person: int | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> Track:
    """Chooses the main person (see the module's description) and follows them through every frame.

    Args:
        detections: one :class:`~mtvcrafter.extract.nlf.Detections` per frame.
        fps: the frames' rate (the gates are in seconds).
        person: follow the N-th largest person of the first second instead (0 = the largest).
        box: follow the person in this box ``(x, y, w, h)`` of the first frames instead.

    Raises:
        ExtractionError: nobody was detected, there is no N-th person, or nobody overlaps ``box``.
    """
    if person is not None and box is not None:
        raise ExtractionError("give either a person number or a box, not both", field="person")
    window = _window(detections, fps)
    tracklets, owner = _tracklets(detections, fps)
    if box is not None:
        wanted = np.asarray(box, dtype=np.float64)
        if wanted.shape != (4,) or not np.isfinite(wanted).all() or wanted[2] <= 0 or wanted[3] <= 0:
            raise ExtractionError(f"expected x, y, w, h in pixels with w, h > 0, got {box!r:.60}", field="box")
        best = (0.0, -1)
        for frames in (window, range(len(detections))):
            for t in frames:
                if len(detections[t]):
                    ious = box_iou(wanted, detections[t].boxes[:, :4])
                    d = int(np.argmax(ious))
                    if ious[d] > best[0]:
                        best = (float(ious[d]), owner[t][d])
            if best[0] >= MIN_BOX_IOU:
                break
        if best[0] < MIN_BOX_IOU:
            raise ExtractionError(
                f"nobody was detected in the box {_box_text(wanted)} (the best overlap is {100 * best[0]:.0f} %); "
                "draw it around the performer in the first frames",
                field="box",
            )
        seed = best[1]
        description = f"followed the person in the box {_box_text(wanted)} (overlap {100 * best[0]:.0f} %)"
    else:
        people = _people(detections, tracklets, owner, window, fps)
        rank = 0 if person is None else int(person)
        if not 0 <= rank < len(people):
            seen = f"{len(people)} {'person is' if len(people) == 1 else 'people are'}"
            raise ExtractionError(
                f"person {rank} asked for, but {seen} seen in the first second (0 is the largest)", field="person"
            )
        seed = people[rank][0]
        others = f" of the {len(people)} seen" if len(people) > 1 else ""
        description = (
            f"followed the largest person of the first second{others}"
            if person is None
            else f"followed person {rank} (by size in the first second{others}, 0 the largest)"
        )
    chain = _chain(tracklets, seed, fps)
    indices: list[int | None] = [None] * len(detections)
    for k in chain:
        for t, d in zip(tracklets[k].frames, tracklets[k].indices, strict=True):
            indices[t] = d
    return Track(indices, description, resumed=len(chain) - 1)


def _box_text(box: np.ndarray) -> str:
    return ",".join(f"{v:g}" for v in np.round(box, 1))
