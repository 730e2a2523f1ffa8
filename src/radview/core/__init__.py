"""Pure-numpy core: the Volume type, geometry conventions, errors."""

from radview.core.errors import RadviewError
from radview.core.volume import Rescale, ViewPlane, Volume, VolumeSource

__all__ = ["RadviewError", "Rescale", "ViewPlane", "Volume", "VolumeSource"]
