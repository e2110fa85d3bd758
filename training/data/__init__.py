"""Training data: a synthetic character generator, licensed emoji, and studio manifests, all read by one loader."""
