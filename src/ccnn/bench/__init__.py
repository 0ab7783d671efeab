"""Benchmarks: classical codecs behind one interface, rate-distortion sweeps and reports."""
