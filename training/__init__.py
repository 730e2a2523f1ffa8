"""Development-only model training code (phantoms, datasets, networks, export)."""
