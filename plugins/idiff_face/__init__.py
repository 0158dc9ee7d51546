"""IDiff-Face / UIFace (and NegFaceDiff's negative-context sampling): identity-conditioned latent diffusion."""
