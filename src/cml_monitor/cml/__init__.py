"""The CML controller API: running labs per worker."""

from .client import CmlControllerClient, CmlControllerError

__all__ = ["CmlControllerClient", "CmlControllerError"]
