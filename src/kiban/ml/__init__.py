"""Machine learning as assets: model versions, promotion, artefacts, training, drift and the ML check kinds."""
