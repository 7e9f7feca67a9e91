"""Publishing the zoo: model cards from run folders, pushing them to the Hub, and the catalogue.

- `build_card` / `write_card` (``ltzoo card``): a huggingface_hub `ModelCard` from a run folder.
- `push_run` (``ltzoo push``): a run folder and its card to the Hub in one commit.
- `catalogue` (``ltzoo zoo``): the zoo's models, read from ``hub_cards/*.md``.

A pushed model loads with ``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` (after
``import ltzoo`` when its architecture is one of ltzoo's).
"""

from ltzoo.hub.card import build_card, write_card
from ltzoo.hub.push import HubError, push_run
from ltzoo.hub.zoo import catalogue

__all__ = ["HubError", "build_card", "catalogue", "push_run", "write_card"]
