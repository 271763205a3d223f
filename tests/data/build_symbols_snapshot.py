"""Rebuild rules_engine/data/symbols_snapshot.json from the real KuCoin data it derives from.

Usage: python tests/data/build_symbols_snapshot.py V1_SYMBOLS_JSON SDK_EXAMPLES_JSON OUT

V1_SYMBOLS_JSON is the real `/api/v1/symbols` reply recorded on 2021-04-25 (cryptofeed sample
data); SDK_EXAMPLES_JSON the official SDK's documentation examples, whose `/api/v2/symbols`
example gives the current v2 shape and BTC-USDT's current minimums. Not run by the tests: the
project never reads the shared data folder at run or test time.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

V2_FIELDS = [
    "symbol",
    "name",
    "baseCurrency",
    "quoteCurrency",
    "feeCurrency",
    "market",
    "baseMinSize",
    "quoteMinSize",
    "baseMaxSize",
    "quoteMaxSize",
    "baseIncrement",
    "quoteIncrement",
    "priceIncrement",
    "priceLimitRate",
    "minFunds",
    "isMarginEnabled",
    "enableTrading",
    "feeCategory",
    "makerFeeCoefficient",
    "takerFeeCoefficient",
    "st",
    "callauctionIsEnabled",
    "callauctionPriceFloor",
    "callauctionPriceCeiling",
    "callauctionFirstStageStartTime",
    "callauctionSecondStageStartTime",
    "callauctionThirdStageStartTime",
    "tradingStartTime",
]


def main(v1_path: str, sdk_path: str, out_path: str) -> None:
    with open(v1_path) as f:
        v1 = json.load(f)
    with open(sdk_path) as f:
        sdk = json.load(f)
    recorded = datetime.fromtimestamp(v1["ts"], UTC)
    v2_example = next(e["response_example"] for e in sdk["rest"] if e["path"] == "/api/v2/symbols")
    overrides = {row["symbol"]: row for row in v2_example["data"]}
    rows = []
    for old in v1["response"]["data"]:
        row = {key: old.get(key) for key in V2_FIELDS}  # v2 shape; unknown fields stay null
        row.update(overrides.get(old["symbol"], {}))
        rows.append(row)
    document = {
        "as_of": recorded.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "KuCoin's 2021-04-25 symbols list in the v2 shape (BTC-USDT from the v2 docs)",
        "derived": True,
        "note": "minFunds is known only where the v2 example gives it (BTC-USDT); lint says so "
        "for the others instead of guessing",
        "reply": {"code": "200000", "data": rows},
    }
    with open(out_path, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
