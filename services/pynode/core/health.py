"""grpc.health.v1 for the mesh: the reference servicer, with Watch streams that end at shutdown, and List.

A load balancer holds a `Health/Watch` stream open for as long as the process lives. The reference
servicer sends NOT_SERVING on graceful shutdown and then keeps the stream open, so a graceful stop
waited out its whole grace period for these streams alone. Here a Watch stream ends once it has told
its watcher NOT_SERVING: in-flight calls still get the grace period, watchers do not hold it up.

The reference asyncio servicer does not implement `List` (grpcio-health-checking's sync one does), while
reflection lists it: here it answers every status set.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

# What a watcher may be left with after shutdown: nothing will change any more.
_FINAL = (health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


class DrainingHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """HealthServicer whose Watch streams close after reporting the shutdown."""

    async def List(self, request: health_pb2.HealthListRequest, context: Any) -> health_pb2.HealthListResponse:
        # A snapshot of every name this process reports ("" is the whole server); a handful, never paged.
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status) for name, status in self._server_status.items()
            }
        )

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        # The reference loop (grpc_health.v1._async), plus the return once shutting down.
        condition = self._server_watchers[request.service]
        self._watcher_count_by_service[request.service] += 1
        last_status = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last_status:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                    last_status = status
                    # Only once NOT_SERVING itself was written: the flag is set before the statuses change.
                    if self._gracefully_shutting_down and status in _FINAL:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[request.service] -= 1
            if self._watcher_count_by_service[request.service] == 0:
                del self._server_watchers[request.service]
                del self._watcher_count_by_service[request.service]
