"""HTTP services: async JSON handlers or any ASGI app, with a lifecycle, health and metrics.

``svc = Service("orders", "1.0")`` then ``@svc.get("/orders/{id:int}")`` on an
``async def`` handler; ``await svc.serve(port=0, registry="sqlite:///...")`` runs it on
uvicorn. ``Service.wrap(fastapi_app, name="orders")`` gives an existing ASGI app the same
envelope: ``/healthz``, ``/readyz``, Prometheus ``/metrics``, ``X-Request-ID``, deadlines
from ``X-Request-Timeout-Ms`` (504 past them), registration with a lease while RUNNING,
and a graceful drain on SIGTERM. ``distsys service run module:svc`` serves one from the
command line.
"""

from distsys.service._client import ServiceClient
from distsys.service._client_errors import UpstreamStatusError
from distsys.service._client_response import ServiceResponse
from distsys.service._client_statistics import InstanceCallStatistics, ServiceClientStatistics
from distsys.service._errors import HTTPError, LifecycleError
from distsys.service._lifecycle import Lifecycle, State, Transition
from distsys.service._metrics import ServiceMetrics
from distsys.service._request import (
    REQUEST_ID_HEADER,
    Request,
    context_of,
    request_id_of,
)
from distsys.service._response import Response
from distsys.service._service import Service, ServiceStatistics

__all__ = [
    # the service
    "Service",
    "ServiceStatistics",
    "ServiceMetrics",
    # handlers
    "Request",
    "Response",
    "HTTPError",
    "REQUEST_ID_HEADER",
    "context_of",
    "request_id_of",
    # lifecycle
    "State",
    "Lifecycle",
    "Transition",
    "LifecycleError",
    "ServiceClient",
    "ServiceResponse",
    "ServiceClientStatistics",
    "InstanceCallStatistics",
    "UpstreamStatusError",
]
