"""Service registration and discovery: leases, heartbeats, watches, resolvers.

``open_registry(url)`` opens a :class:`Registry` on ``sqlite:///...`` (one machine),
``redis://``, ``etcd://`` or ``memory://``. ``await registry.register(instance, ttl=10)``
keeps an :class:`Instance` registered while its process lives; ``registry.resolver(name)``
follows a service and keeps serving its last known instances if the backend goes away.
"""

from distsys.registry._instance import Instance, Status
from distsys.registry._registration import Registration, RegistrationStatistics
from distsys.registry._registry import ChangeKind, Registry, ServiceChange, open_registry
from distsys.registry._resolver import Resolver, ResolverStatistics

__all__ = [
    "ChangeKind",
    "Instance",
    "Registration",
    "RegistrationStatistics",
    "Registry",
    "Resolver",
    "ResolverStatistics",
    "ServiceChange",
    "Status",
    "open_registry",
]
