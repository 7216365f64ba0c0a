"""Report figures (PNG, matplotlib Agg): input slices/projections, plots, and 3-D views."""
