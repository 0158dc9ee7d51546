"""Face-attribute models for AttrOP: SixDRepNet head pose as a feature extractor.

MagFace quality needs no module of its own: it is the norm of the ``magface-r100`` extractor's output
(fr plugin).
"""
