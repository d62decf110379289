"""Training CCStereo: datasets, losses (incl. SCL), trainer, ccs-train."""
