"""Training: the fit and what drives it (callbacks, data, distribution, clusters)."""
