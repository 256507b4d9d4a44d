"""The fleet simulator: EC2, CloudWatch and CML controllers on loopback (see README.md here)."""

from .simulator import FleetSimulator

__all__ = ["FleetSimulator"]
