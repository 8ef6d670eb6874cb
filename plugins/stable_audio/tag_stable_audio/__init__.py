"""Stable Audio backends for TAG (Stable Audio 3 and Stable Audio Open 1.0), built on the diffusers pipelines."""
