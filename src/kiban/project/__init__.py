"""Projects: a folder with ``kiban.yml``, models and use cases, loaded once and validated."""

from kiban.project.asset import Asset
from kiban.project.config import LAYERS, ColumnConfig, ModelConfig, ProjectConfig
from kiban.project.initiative import Initiative, InitiativeConfig
from kiban.project.loader import Project, find_project_root, load_project
from kiban.project.usecase import UseCase, UseCaseConfig

__all__ = [
    "LAYERS",
    "Asset",
    "ColumnConfig",
    "Initiative",
    "InitiativeConfig",
    "ModelConfig",
    "Project",
    "ProjectConfig",
    "UseCase",
    "UseCaseConfig",
    "find_project_root",
    "load_project",
]
