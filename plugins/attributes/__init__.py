"""Face-attribute models for AttrOP: SixDRepNet head pose and MagFace quality, as feature extractors."""
