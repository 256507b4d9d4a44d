"""Fleet simulator: CML controllers (and, with the simulator issue, AWS) on loopback."""
