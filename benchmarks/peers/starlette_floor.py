"""The floor of the serving benchmark: bare Starlette routes, no gateway (keel's venv).

    python peers/starlette_floor.py MODEL_DIR PORT

``POST /predict`` parses ``{"instances": [...]}`` with orjson, builds a DataFrame and calls
the same ``LoadedModel.predict`` keel serves (loaded from the same model directory);
``POST /constant`` answers a fixed body without reading the model. One uvicorn worker,
like the keel server it is compared with.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import pandas as pd
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.registry.packaging import load_model_dir

MODEL = load_model_dir(sys.argv[1]) if __name__ == "__main__" else None
CONSTANT = orjson.dumps({"predictions": [0], "model": "churn", "version": 1, "cached": True})


async def predict(request: Request) -> Response:
    body: Any = orjson.loads(await request.body())
    frame = pd.DataFrame(body["instances"])
    assert MODEL is not None
    predictions = MODEL.predict(frame).tolist()
    return Response(orjson.dumps({"predictions": predictions}), media_type="application/json")


async def constant(request: Request) -> Response:
    await request.body()
    return Response(CONSTANT, media_type="application/json")


async def ping(_request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/constant", constant, methods=["POST"]),
        Route("/ping", ping),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
