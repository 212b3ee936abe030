"""A small stateful Kubernetes API server for tests.

It serves the Kubernetes REST API over real HTTP (stdlib ``http.server`` in a
background thread), so the real ``kubernetes`` client talks to it unpatched:

    emu = KubeEmulator().start()
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emu.url))

Why not kmock: its emulator has no resourceVersion, ignores label selectors and
knows neither JSON/strategic patch, server-side apply nor ``/scale``.

Modules: ``resources`` (what is served, ``ApiError``), ``schema`` (the OpenAPI schemas of Kubernetes
1.30 from the ``kubernetes-validate`` package, and the HTTPRoute CRD subset vendored in
tests/fixtures/gateway-api/), ``validation`` (decoding and validation), ``defaults``, ``fieldmanager``
(managedFields, server-side apply), ``store`` (objects, resourceVersions, watch history, namespaces
that terminate), ``controller`` (the Deployment and namespace controllers on a background clock),
``patching`` (merge, strategic merge, JSON patch), ``selectors`` (label and field), ``request_log``
(requests as RBAC names them, faults), ``discovery``, ``handlers`` (the HTTP API) and ``server``
(``KubeEmulator``: start/stop, the token, the log, faults, never-ready images).

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
  ``strategic-merge-patch+json`` (by the schema's patch strategies; 415 on a
  custom resource), ``apply-patch+yaml``), delete, deletecollection; discovery
  (/api, /apis, /version).
* every write as the API server does it: unknown fields dropped with a
  ``Warning`` header (``fieldValidation=Strict``: 400), a value of the wrong
  type 400 (422 in a custom resource), defaults (Deployment, pod templates,
  Service with a cluster IP, Namespace; a CRD's ``default``s), then validation:
  the kind's OpenAPI schema and the Go rules of validation.py (DNS names,
  label keys, a Deployment's selector matching its template and immutable, a
  Service's ports, an Ingress's paths...), each finding a cause of a 422.
* managedFields: an update gives its manager what it changed; server-side apply
  (``fieldManager`` required) owns what it applies, removes what its manager
  stops applying unless another manager owns it, and answers 409 Conflict when
  it would change another manager's field, unless ``force=true``.
* metadata: uid, creationTimestamp, resourceVersion (one global counter),
  generation (bumped when anything outside metadata/status changes); the
  ``status`` of resources with a status subresource changes only through it;
  finalizers hold a deleted object (deletionTimestamp) until they are removed.
* errors are ``Status`` objects: 401 Unauthorized, 403 Forbidden, 404 NotFound,
  409 AlreadyExists/Conflict, 400 BadRequest, 405 MethodNotAllowed, 415
  UnsupportedMediaType, 422 Invalid (with ``details.causes``).
* auth: with ``token``, a request without ``Authorization: Bearer <token>`` gets
  401 (the health checks excepted).
* namespaced objects can only be created in an existing namespace (default,
  kube-system, kube-public and kube-node-lease exist). A deleted namespace is
  Terminating for ``namespace_grace_s`` (and while objects with finalizers stay
  in it): what is in it is deleted, and creating anything in it is 403
  "being terminated".
* controllers, every ``tick_s`` (controller.py): a Deployment rolls out over
  time within maxSurge/maxUnavailable, observedGeneration lagging the write,
  with Available/Progressing conditions; pods of an image marked with
  ``emu.never_ready(image)`` never get ready, so the rollout stalls and turns
  ProgressDeadlineExceeded after progressDeadlineSeconds. With ``auto_rollout``
  off, the Deployment controller stops: write ``/status`` yourself.
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

Approximations: no admission webhooks, pagination (``limit``/``continue``),
tables, protobuf, dryRun or garbage collection by ownerReferences; replica sets
and pods are the controller's state, not API objects; of the CRD's CEL rules
only the two in validation.py; managedFields' ``.`` markers and list order
after an apply are near, not exact; nothing runs containers.
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
