"""Face detectors: RetinaFace (biubug6/Pytorch_Retinaface layout) and MTCNN (facenet-pytorch layout)."""
