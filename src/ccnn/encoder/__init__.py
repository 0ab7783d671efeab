"""The encoder: the CCNN network, its per-image training, quantization and coding (needs torch).

Import :mod:`ccnn.encoder.encode` for :func:`encode`; this package itself imports nothing
heavy, so that :mod:`ccnn.encoder.result` stays cheap to import.
"""
