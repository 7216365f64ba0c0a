"""Package list for setuptools; all metadata and options live in pyproject.toml.

``packages.find`` cannot add a package whose folder lies outside ``gpuvalid/``, so the list is built here:
every ``gpuvalid*`` package plus ``gpuvalid.kernels``, which is the top-level ``kernels/`` folder (mapped
by ``[tool.setuptools.package-dir]``; its ``*.cu`` files are package data).
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["gpuvalid", "gpuvalid.*"]) + ["gpuvalid.kernels"])
