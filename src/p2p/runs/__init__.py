"""Whole runs from a composed config: train, evaluate, benchmark, report. The console scripts (`p2p.cli`)
are thin wrappers over these functions, which tests and notebooks call directly."""
