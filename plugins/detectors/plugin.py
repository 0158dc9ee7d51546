"""Registers the face detectors lazily, so listing plugins does not import torch."""

from __future__ import annotations

from facebench import hookimpl

_RF = "facebench_plugins.detectors.retinaface"
_MT = "facebench_plugins.detectors.mtcnn"
_RF_SOURCE = "biubug6/Pytorch_Retinaface release (Google Drive link in its README)"
_MT_SOURCE = "timesler/facenet-pytorch repository, data/ folder"


@hookimpl
def register_detectors(register):
    register("retinaface_mnet", f"{_RF}:retinaface_mnet",
             "RetinaFace, MobileNet-0.25 backbone (biubug6/Pytorch_Retinaface layout): boxes, scores, 5 landmarks",
             weights="mobilenet0.25_Final.pth", weights_required=True,
             weight_files=(("mobilenet0.25_Final.pth", "RetinaFace MobileNet-0.25 face detector", _RF_SOURCE),))
    register("retinaface_r50", f"{_RF}:retinaface_r50",
             "RetinaFace, ResNet-50 backbone (biubug6/Pytorch_Retinaface layout): boxes, scores, 5 landmarks",
             weights="Resnet50_Final.pth", weights_required=True,
             weight_files=(("Resnet50_Final.pth", "RetinaFace ResNet-50 face detector", _RF_SOURCE),))
    register("retinaface_tiny", f"{_RF}:retinaface_tiny",
             "tiny RetinaFace (MobileNet x0.125) with seeded random weights, for tests and toy runs (same code path)")
    register("mtcnn", f"{_MT}:mtcnn",
             "MTCNN, three stages (facenet-pytorch layout; --weights: the folder of pnet.pt, rnet.pt, onet.pt)",
             weights_required=True, weights_dir=True,
             weight_files=(("pnet.pt", "MTCNN P-Net (first stage)", _MT_SOURCE),
                           ("rnet.pt", "MTCNN R-Net (second stage)", _MT_SOURCE),
                           ("onet.pt", "MTCNN O-Net (third stage, landmarks)", _MT_SOURCE)))
    register("mtcnn_tiny", f"{_MT}:mtcnn_tiny",
             "MTCNN with seeded random weights, for tests and toy runs (same code path)")
