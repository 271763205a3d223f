"""The KuCoin adapter: signing, REST, WebSocket, level2 book sync, error table.

Its public surface is what the runtime needs (the ports' implementations and the level2
book); everything else is private to the adapter.
"""

from rules_engine.adapters.kucoin._book import BookState, Level2Book, Step
from rules_engine.adapters.kucoin._book import Delta as BookDelta
from rules_engine.adapters.kucoin._keys import KeyError_, check_key, load_credentials
from rules_engine.adapters.kucoin._market import KucoinMarket
from rules_engine.adapters.kucoin._oco import KucoinOco, OcoLeg, OcoOrder, OcoSeen, oco_body
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.adapters.kucoin._venue import KucoinFeed, KucoinVenue, Page, Seen, Snapshot

__all__ = [
    "BookDelta",
    "BookState",
    "Credentials",
    "KeyError_",
    "KucoinFeed",
    "KucoinMarket",
    "KucoinOco",
    "KucoinRest",
    "KucoinVenue",
    "Level2Book",
    "OcoLeg",
    "OcoOrder",
    "OcoSeen",
    "Page",
    "Secret",
    "Seen",
    "Snapshot",
    "Step",
    "check_key",
    "load_credentials",
    "oco_body",
]
