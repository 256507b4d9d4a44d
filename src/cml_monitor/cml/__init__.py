"""The CML controller API: readiness, health, capacity, labs and licensing of each worker."""

from .client import CmlControllerClient, CmlControllerError

__all__ = ["CmlControllerClient", "CmlControllerError"]
