"""Arc2Face as a facebench generator plugin (optional extra ``arc2face``); see docs/arc2face.md."""
