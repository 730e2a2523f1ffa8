"""Annotations a user draws on a slice (ruler, angle, ellipse, rectangle) as plain data.

Points are stored in LPS millimetres, not screen pixels, so an annotation survives zoom, pan,
re-layout and being reopened from the study index, and its length is right in any plane.
What an annotation *measures* is computed by :mod:`radview.core.measurements`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import Enum

from radview.core.volume import ViewPlane

__all__ = ["AnnotationKind", "Annotation"]


class AnnotationKind(Enum):
    RULER = "ruler"  # 2 points: the ends
    ANGLE = "angle"  # 3 points: arm end, vertex, arm end
    ELLIPSE = "ellipse"  # 2 points: opposite corners of the bounding box in the plane
    RECTANGLE = "rectangle"  # 2 points: opposite corners

    @property
    def point_count(self) -> int:
        return 3 if self is AnnotationKind.ANGLE else 2


@dataclass(frozen=True)
class Annotation:
    kind: AnnotationKind
    plane: ViewPlane
    slice_index: int
    points: tuple[tuple[float, float, float], ...]  # LPS mm
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    label: str = ""

    def __post_init__(self) -> None:
        if len(self.points) != self.kind.point_count:
            raise ValueError(f"a {self.kind.value} needs {self.kind.point_count} points")

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "plane": self.plane.value,
            "slice_index": self.slice_index,
            "points": [list(p) for p in self.points],
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: dict) -> Annotation:
        return cls(
            kind=AnnotationKind(data["kind"]),
            plane=ViewPlane(data["plane"]),
            slice_index=int(data["slice_index"]),
            points=tuple(tuple(float(v) for v in p) for p in data["points"]),
            id=str(data["id"]),
            label=str(data.get("label", "")),
        )
