"""Registers the attribute models lazily, so listing plugins does not import torch."""

from __future__ import annotations

from facebench import hookimpl

_POSE = "facebench_plugins.attributes.sixdrepnet"


@hookimpl
def register_feature_extractors(register):
    register("sixdrepnet", f"{_POSE}:sixdrepnet_extractor",
             "SixDRepNet head pose (RepVGG-B1g2, deploy form): pitch, yaw, roll in degrees",
             weights="6DRepNet_300W_LP_AFLW2000.pth", attribute="pose",
             weight_files=(("6DRepNet_300W_LP_AFLW2000.pth", "SixDRepNet head pose for AttrOP and pose histograms",
                            "Vec2Face release (SixDRepNet's 300W-LP model)"),))
    register("sixdrepnet-tiny", f"{_POSE}:sixdrepnet_tiny_extractor",
             "tiny SixDRepNet, 56 px, for tests and toy runs (same code path; weights from toyfaces pose-model)", attribute="pose",
             weights_required=True)
