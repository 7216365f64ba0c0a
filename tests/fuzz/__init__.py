"""Fuzz corpus of bad and edge inputs for ``gpuvalid run`` (see corpus.py) and its tests."""
