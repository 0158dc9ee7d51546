"""FR backbones: insightface IResNets, the Vec2Face paper's SE-IResNets, and timm ViTs for 112x112 faces."""
