"""CML Worker Monitor: watches Cisco Modeling Labs workers running on AWS EC2."""

__version__ = "0.1.0"
