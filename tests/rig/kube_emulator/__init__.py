"""A small stateful Kubernetes API server for tests.

It serves the Kubernetes REST API over real HTTP (stdlib ``http.server`` in a
background thread), so the real ``kubernetes`` client talks to it unpatched:

    emu = KubeEmulator().start()
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emu.url))

Why not kmock: its emulator has no resourceVersion, ignores label selectors and
knows neither JSON/strategic patch, server-side apply nor ``/scale``.

Modules: ``resources`` (what is served, ``ApiError``), ``store`` (objects,
resourceVersions, watch history, the "controllers"), ``patching`` (merge,
strategic merge, JSON patch), ``selectors`` (label and field), ``request_log``
(requests as RBAC names them, faults), ``discovery``, ``handlers`` (the HTTP
API) and ``server`` (``KubeEmulator``: start/stop, the log, faults).

What is emulated (in memory, one store per server):

* resources: core/v1 namespaces, services, configmaps, secrets, pods, events;
  apps/v1 deployments, replicasets, statefulsets (``/scale``, ``/status``);
  networking.k8s.io/v1 ingresses; coordination.k8s.io/v1 leases; batch/v1 jobs;
  gateway.networking.k8s.io/v1 httproutes (as if its CRD were installed: served
  under /apis and in discovery). Add more in ``RESOURCES``.
* verbs: get, list (labelSelector, fieldSelector on any dotted path), watch
  (``?watch=1``; resourceVersion, timeoutSeconds, 410 Expired), create
  (generateName), replace (PUT, optimistic concurrency on resourceVersion),
  patch (``application/json-patch+json``, ``merge-patch+json``,
  ``strategic-merge-patch+json``, ``apply-patch+yaml``), delete,
  deletecollection; discovery (/api, /apis, /version).
* metadata: uid, creationTimestamp, resourceVersion (one global counter),
  generation (bumped when anything outside metadata/status changes); the
  ``status`` of resources with a status subresource changes only through it.
* errors are ``Status`` objects: 404 NotFound, 409 AlreadyExists/Conflict,
  400 BadRequest, 405 MethodNotAllowed, 415 UnsupportedMediaType.
* namespaced objects can only be created in an existing namespace (default,
  kube-system, kube-public and kube-node-lease exist); deleting a namespace
  deletes what is in it.
* "controllers": with ``auto_rollout`` (default on) a Deployment's status
  follows its spec at once (observedGeneration, replicas, updated/ready/
  available replicas, Available/Progressing conditions). Turn it off and write
  ``/status`` yourself to emulate a stuck rollout.
* a request log for tests: ``emu.requests()`` (every request: method, path,
  query, content type, verb, resource, namespace, name, status code and a short
  summary of the body), ``emu.writes()`` (only the changing ones),
  ``emu.reset_requests()``.
* fault injection for tests: ``emu.deny(verb, resource)`` answers 403
  Forbidden, the way the API server's RBAC authorizer words it, until
  ``emu.clear_faults()``; ``emu.conflict_once(verb, resource)`` answers the
  next matching request with 409 Conflict. ``resource`` is a plural, with a
  subresource if any (``deployments/scale``); ``"*"`` matches any verb or
  resource. A refused request changes nothing.

Approximations: server-side apply is a strategic merge that creates the object
when missing (no managedFields, so fields dropped from a later apply stay);
strategic merge knows the usual merge keys (containers/env/volumes by name,
ports by containerPort/port, conditions by type) and ``$patch: delete/replace``
only; no finalizers, admission, pagination (``limit``/``continue``), tables,
or protobuf; services get no clusterIP; nothing runs pods.
"""

from .patching import json_patch, merge_patch, strategic_merge
from .request_log import DEFAULT_USER, Request
from .resources import RESOURCES, ApiError, Resource
from .selectors import field_selector, label_selector
from .server import KubeEmulator
from .store import Store

__all__ = [
    "DEFAULT_USER",
    "RESOURCES",
    "ApiError",
    "KubeEmulator",
    "Request",
    "Resource",
    "Store",
    "field_selector",
    "json_patch",
    "label_selector",
    "merge_patch",
    "strategic_merge",
]
