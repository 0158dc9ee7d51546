"""Making synthetic datasets from identity vectors, one module per step:

* :mod:`.sampling`: PCA statistics of real identity features, exact rejection above tau (``sample-ids``).
* :mod:`.perturbation`: per-image vectors around each identity vector (the release's sigma mix).
* :mod:`.attrop`: AttrOP, gradient steps on vectors toward pose/quality targets, and the identity pre-pass.
* :mod:`.sharded`: the resumable sharded job (seeded per shard, manifests, assembly through a format writer).
* :mod:`.job`: ``facebench generate`` as one call (:func:`.job.run_generate`).

Importing this package imports none of them (and no torch).
"""
