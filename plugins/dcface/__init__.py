"""DCFace (Kim et al., CVPR 2023): the dual-condition diffusion generator as a facebench plugin."""
