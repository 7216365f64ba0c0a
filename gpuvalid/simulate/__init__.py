"""Simulated cryo-EM maps from atomic models: the training and test data of gpuvalid's own networks.

- :mod:`.structure` reads PDB / mmCIF coordinates (own minimal parser, gzip aware);
- :mod:`.density` turns atoms into a density on a grid (Gaussian atoms weighted by atomic number);
- :mod:`.filters` low-passes to a resolution, applies B-factor decay, blends filtered copies under
  smooth masks (spatially varying local resolution), adds coloured noise, mirrors;
- :mod:`.helix` finds alpha-helical residues from the Cα trace (for the hand task);
- :mod:`.sources` lists the structures, where they come from, and the train/validation/test split.
"""
