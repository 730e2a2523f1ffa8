"""What the viewer shows, as an evented model (psygnal) that the Qt views subscribe to.

Views never keep their own copy of this state: a view receives the model in its constructor,
draws from it, and changes it through its methods; every other view updates through the events
(napari's ``components/dims.py`` <-> ``_qt/widgets/qt_dims.py`` split). That is what keeps the
three slice views linked: they all follow one ``cursor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from psygnal import evented

from radview.core.labelmap import LabelMap
from radview.core.volume import ViewPlane, Volume
from radview.core.windowing import WindowLevel, window_for

__all__ = ["Layout", "Tool", "StudyInfo", "ViewerState"]


class Layout(Enum):
    ONE = "1x1"
    THREE = "1x3"
    FOUR = "2x2"


class Tool(Enum):
    """What a left-drag does in a slice view."""

    WINDOW = "window"  # the default: left-drag changes window/level
    RULER = "ruler"
    ANGLE = "angle"
    ELLIPSE = "ellipse"
    RECTANGLE = "rectangle"


@dataclass(frozen=True)
class StudyInfo:
    """Header text for the corner annotations (escape it before rich text)."""

    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    series_description: str = ""
    modality: str = ""


@evented
@dataclass
class ViewerState:
    volume: Volume | None = None
    labels: LabelMap | None = None
    study: StudyInfo = field(default_factory=StudyInfo)
    #: the crosshair, LPS mm; every view shows the slice through it
    cursor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    window: WindowLevel = field(default_factory=lambda: WindowLevel(400.0, 40.0))
    invert: bool = False
    layout: Layout = Layout.THREE
    #: the view shown alone after a double-click, or None
    maximized: ViewPlane | None = None
    overlay_visible: bool = True
    overlay_opacity: float = 0.45
    overlay_outline: bool = False
    hide_patient_info: bool = False
    tool: Tool = Tool.WINDOW

    # ------------------------------------------------------------------ actions
    def show_volume(self, volume: Volume, study: StudyInfo | None = None) -> None:
        """Display a new volume: crosshair at its centre, its default window, no labels."""
        self.labels = None
        self.study = study or StudyInfo(modality=volume.modality,
                                        series_description=volume.source.description)
        self.window = window_for(volume)
        self.invert = volume.display_inverted
        centre = (np.asarray(volume.size_xyz) - 1) / 2.0
        self.volume = volume
        self.cursor = tuple(float(v) for v in volume.index_to_world(centre))

    def replace_volume(self, volume: Volume) -> None:
        """Swap in a volume on the same grid (e.g. the finished load of a provisional one),
        keeping crosshair, window and labels."""
        current = self.volume
        if current is None or current.shape != volume.shape:
            self.show_volume(volume)
            return
        self.volume = volume

    def clear_volume(self) -> None:
        self.labels = None
        self.volume = None

    def slice_index(self, plane: ViewPlane) -> int:
        """The slice of ``plane`` through the crosshair."""
        if self.volume is None:
            return 0
        return self.volume.plane_index_of_world(plane, self.cursor)

    def set_slice(self, plane: ViewPlane, index: int) -> None:
        """Move the crosshair along ``plane``'s normal to slice ``index`` (clamped)."""
        volume = self.volume
        if volume is None:
            return
        geometry = volume.plane_geometry(plane)
        index = int(np.clip(index, 0, geometry.slice_count - 1))
        if index == self.slice_index(plane):
            return
        # Keep the in-plane position: move only along the plane's normal array axis.
        ijk = volume.world_to_index(self.cursor)
        axis_ijk = 2 - geometry.normal_axis
        array_index = geometry.slice_count - 1 - index if geometry.normal_flipped else index
        ijk[axis_ijk] = array_index
        self.cursor = tuple(float(v) for v in volume.index_to_world(ijk))

    def step(self, plane: ViewPlane, delta: int) -> None:
        self.set_slice(plane, self.slice_index(plane) + delta)

    def click(self, plane: ViewPlane, row: float, col: float) -> None:
        """Move the crosshair to a pixel of ``plane``'s current slice (the views follow)."""
        if self.volume is None:
            return
        world = self.volume.world_of_plane_pixel(plane, self.slice_index(plane), row, col)
        self.cursor = tuple(float(v) for v in world)

    def set_labels(self, labels: LabelMap | None) -> None:
        if labels is not None and (self.volume is None or not labels.matches(self.volume)):
            raise ValueError("the label map is not on the displayed image's grid")
        self.labels = labels
