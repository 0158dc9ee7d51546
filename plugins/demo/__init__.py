"""The end-to-end demo on toyfaces (``facebench demo``)."""
