"""The Hub side: an export folder that timm and transformers both load, its model card, and publishing it.

``export`` writes and verifies the folder atomically, ``timm_config`` fills ``config.json``,
``model_card`` renders README.md, ``push`` uploads (``python -m procrustean.hub push EXPORT REPO``).
"""
from .export import export_model, to_plain, unwrap_backbone
from .model_card import render_model_card
from .push import HubPushError, push_export, retry_command
from .timm_config import export_model_args, export_pretrained_cfg

__all__ = ["HubPushError", "export_model", "export_model_args", "export_pretrained_cfg", "push_export",
           "render_model_card", "retry_command", "to_plain", "unwrap_backbone"]
