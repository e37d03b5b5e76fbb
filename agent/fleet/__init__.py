"""Fleet coordination (DESIGN.md §12): the hosts of one ID-1 instance take turns.

    config.py       FleetConfig: the ``[fleet]`` table; default_fleet_id(machine-id text)
    model.py        what the coordinator says: SlotWait, SlotGrant, HostState, FleetView (frozen,
                    JSON-able dataclasses) and check_ref for ``REF@VERSION``
    coordinator.py  Coordinator (abstract), NoCoordinator, coordinator_from_config
    waiting.py      the wait loop every backend shares: SIGTERM, give-up deadline, backoff
    background.py   the one thread of a coordinator: lease renewal and what is owed to the
                    lock service while it was unreachable (in order)
    fleetlock.py    FleetLockCoordinator: Zincati's FleetLock protocol (a slot, nothing else)
    gateway.py      EtcdGateway: etcd v3's JSON gateway over httpx, endpoint after endpoint
    keys.py         the etcd key layout of a group (drawn there), pure
    etcd.py         EtcdCoordinator: slots as a fair counting semaphore, halt, view

Importing this package (as ``agent.config`` does, for ``FleetConfig``) loads nothing: httpx is
imported by the backends only, so the planner stays free of I/O libraries.
"""
