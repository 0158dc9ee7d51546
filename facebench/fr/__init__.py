"""FR training: the recipe schema (:mod:`.recipe`), seeded augmentation (:mod:`.augment`), the ``train-fr``
loop (:mod:`.trainer`) and the model card it writes (:mod:`.model_card`).

Importing this package does not import torch.
"""
