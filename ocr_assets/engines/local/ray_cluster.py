"""`RayInference`: the local engine's pages run on Ray actors, on any node of a Ray cluster.

This process (a Dagster run, `ocr-assets run`, `local run`) stays the record store's only writer: it
claims records, sends each page's input out (image bytes + rendered prompt, so workers need no shared
filesystem and never open the store) and gets outcomes back as they complete.

- One actor per device, holding the model once: `num_gpus=1` per GPU for a GPU engine, otherwise one
  CPU actor per alive node (pinned there; it runs RapidOCR's parallel pipelines on that node's cores).
- Back-pressure: at most `TASKS_IN_FLIGHT` tasks of `pages_per_task` pages per actor; the rest wait here.
- A dead actor or node: its in-flight pages come back as RETRYABLE `worker_died` failures (the attempt
  counts, so none is lost), the actor is dropped and the remaining actors carry on. Tasks are never
  retried by Ray (`max_task_retries=0`), so a page cannot run twice into SUCCESS behind our back; the
  store retries it as a new attempt. Later waves place fresh actors on nodes that have none.

Why plain actors and not Ray Data (`map_batches` with an actor pool): Ray Data's fault tolerance
re-executes lost blocks itself, which hides attempts from the store, and its streaming executor mixes
our pages into blocks whose outcome we then have to map back; per-actor in-flight caps and one
`ray.wait` loop give the same streaming and back-pressure in ~100 lines with every attempt visible.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from ocr_assets.core import PageFailure, PageOutcome, PageRequest, PricingMode
from ocr_assets.engines.local.prefetch import prepare_page
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.schema import ErrorClass

log = logging.getLogger(__name__)

TASKS_IN_FLIGHT = 2  # per actor: one running, one queued behind it, so the device never waits on us
DEFAULT_PAGES_PER_TASK = 4
WORKER_DIED = "worker_died"
NO_WORKERS = "no_ray_workers"


class RayUnavailable(ValueError):
    """Ray is not installed, or the cluster cannot be reached or has no room for an actor."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("local.cluster is 'ray' but ray is not installed: pip install -e '.[cluster]'") from None
    return ray


class PageWorker:
    """A Ray actor: one device's `LocalInference`, loaded once; answers pages sent as bytes."""

    def __init__(self, options: dict[str, Any], device: str):
        import ray

        self.engine = LocalInference(**{**options, "device": device})
        self.engine.load()
        self.worker = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()}"
        self.spool = Path(tempfile.mkdtemp(prefix="ocr-assets-ray-"))

    def describe(self) -> str:
        return self.worker

    def infer(self, pages: list[tuple[PageRequest, bytes]]) -> list[PageOutcome]:
        requests = []
        for request, image in pages:
            # The image lands in this node's spool so the engine's decoder (paths) runs unchanged.
            path = self.spool / f"{request.key.replace(':', '_')}{request.image_path.suffix}"
            path.write_bytes(image)
            requests.append(request.model_copy(update={"image_path": path}))
        try:
            outcomes = self.engine.infer(requests)
        finally:
            for request in requests:
                request.image_path.unlink(missing_ok=True)
        return [outcome.model_copy(update={"worker": self.worker}) for outcome in outcomes]


class RayInference:
    """The `SyncEngine` that sends `LocalInference` work to Ray actors; same outcomes, same order."""

    pricing_mode: ClassVar[PricingMode] = "local"

    def __init__(self, local: LocalInference, *, address: str = "", pages_per_task: int | None = None):
        self.local = local  # the options every actor builds its engine from; also names the model here
        self.address = address
        if pages_per_task is None:
            pages_per_task = DEFAULT_PAGES_PER_TASK if local.batch_size == "auto" else local.batch_size
        self.pages_per_task = max(1, pages_per_task)
        self._actors: dict[str, Any] = {}  # worker description -> actor handle
        self._on_outcome: Callable[[PageOutcome], None] | None = None

    @property
    def name(self) -> str:
        return self.local.name

    @property
    def engine(self) -> str:
        return self.local.engine

    @property
    def model_name(self) -> str:
        return self.local.model_name

    @property
    def uses_gpus(self) -> bool:
        device = self.local.device if isinstance(self.local.device, str) else ",".join(self.local.device)
        return self.local.engine == "transformers" and device.strip().lower() != "cpu"

    def set_progress(self, callback: Callable[[PageOutcome], None] | None) -> None:
        """Call `callback` with each page's outcome as it arrives (in this process)."""
        self._on_outcome = callback

    # -- the cluster -----------------------------------------------------------------------

    def connect(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        try:
            # Workers import ocr_assets from their own install (same version on every node, see README).
            ray.init(address=self.address or None, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"cannot reach the Ray cluster at {self.address or 'a new local Ray'}: {exc}") from exc

    def load(self) -> list[str]:
        """Connect and place the actors now (each loads the model once); returns where they run.

        Raises `RayUnavailable` when no actor can run: the caller stops with a clear error instead of
        failing every page of every wave until their attempts run out.
        """
        self.connect()
        self._place_actors()
        if not self._actors:
            raise RayUnavailable("the Ray cluster has no room for an OCR actor "
                                 f"({'a free GPU' if self.uses_gpus else 'one free CPU'} per actor)")
        return sorted(self._actors)

    def _place_actors(self) -> None:
        """One actor per GPU, or one per alive node without one; waits for each to load its model."""
        ray = _ray()
        options = self.local.model_dump(exclude={"device"})
        worker_cls = ray.remote(PageWorker)
        starting = []
        if self.uses_gpus:
            wanted = int(ray.cluster_resources().get("GPU", 0)) - len(self._actors)
            starting = [worker_cls.options(num_gpus=1, num_cpus=1, max_restarts=0, max_task_retries=0)
                        .remote(options, "cuda:0") for _ in range(max(0, wanted))]  # Ray masks the others
        else:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            served = {name.rpartition("/")[2] for name in self._actors}
            for node in ray.nodes():
                if not node["Alive"] or node["NodeID"] in served or node["Resources"].get("CPU", 0) < 1:
                    continue
                strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
                starting.append(worker_cls.options(num_cpus=1, max_restarts=0, max_task_retries=0,
                                                   scheduling_strategy=strategy).remote(options, "cpu"))
        for actor in starting:
            try:
                self._actors[ray.get(actor.describe.remote(), timeout=600)] = actor
            except ray.exceptions.RayError as exc:  # a node that died or has no room: the others serve
                log.warning("a Ray OCR actor could not start: %s", exc)
                ray.kill(actor)

    def close(self) -> None:
        """Stop the actors (each frees its model); the cluster itself keeps running."""
        if not self._actors:
            return
        ray = _ray()
        for actor in self._actors.values():
            ray.kill(actor)
        self._actors = {}

    # -- inference -------------------------------------------------------------------------

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        """One outcome per request, in request order."""
        answered: dict[str, PageOutcome] = {}
        for outcomes in self.infer_stream(requests):
            for outcome in outcomes:
                answered.setdefault(outcome.key, outcome)
        return [answered[request.key] for request in requests]

    def infer_stream(self, requests: list[PageRequest]) -> Iterator[list[PageOutcome]]:
        """Outcomes as actors finish them (every request answered once), with bounded pages in flight."""
        if not requests:
            return
        ray = _ray()
        self.load()  # places actors on nodes that joined (or lost theirs) since the last wave
        queue = deque(requests[i:i + self.pages_per_task] for i in range(0, len(requests), self.pages_per_task))
        in_flight: dict[Any, tuple[str, list[PageRequest]]] = {}
        load = dict.fromkeys(self._actors, 0)
        while queue or in_flight:
            for worker in list(load):
                while queue and load[worker] < TASKS_IN_FLIGHT:
                    chunk = queue.popleft()
                    shipped, unreadable = self._ship(chunk)
                    if unreadable:
                        yield self._report(unreadable)
                    if shipped:
                        in_flight[self._actors[worker].infer.remote(shipped)] = (worker, [r for r, _ in shipped])
                        load[worker] += 1
            if not in_flight:  # every actor died: what is left goes back to the store as retryable
                yield self._report([self._failure(r, NO_WORKERS, "no live Ray OCR actor was left to run this page")
                                    for chunk in queue for r in chunk])
                return
            done, _ = ray.wait(list(in_flight), num_returns=1)
            worker, chunk = in_flight.pop(done[0])
            if worker in load:  # absent once an earlier task told us this actor died
                load[worker] -= 1
            try:
                outcomes = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                if isinstance(exc, ray.exceptions.RayActorError) and worker in self._actors:
                    log.warning("Ray OCR actor %s died; its pages go back as retryable", worker)
                    del self._actors[worker]
                    load.pop(worker, None)
                outcomes = [self._failure(r, WORKER_DIED, f"Ray worker {worker} died: {type(exc).__name__}")
                            for r in chunk]
            yield self._report(outcomes)

    def _ship(self, chunk: list[PageRequest]) -> tuple[list[tuple[PageRequest, bytes]], list[PageOutcome]]:
        """Each page with its image bytes; an unreadable image fails here, as it would on the worker."""
        shipped, unreadable = [], []
        for request in chunk:
            try:
                shipped.append((request, Path(request.image_path).read_bytes()))
            except OSError:
                failure = prepare_page(request, self.local.max_side).failure or PageFailure(
                    key=request.key, error_class=ErrorClass.FATAL, error_type="image_unreadable",
                    message=f"cannot read image file {request.image_path}")
                unreadable.append(failure.model_copy(update={"model": self.model_name}))
        return shipped, unreadable

    def _failure(self, request: PageRequest, error_type: str, message: str) -> PageFailure:
        return PageFailure(key=request.key, error_class=ErrorClass.RETRYABLE, error_type=error_type,
                           message=message, model=self.model_name)

    def _report(self, outcomes: list[PageOutcome]) -> list[PageOutcome]:
        if self._on_outcome is not None:
            for outcome in outcomes:
                self._on_outcome(outcome)
        return outcomes

    def estimate(self, requests: list[PageRequest], *, pages: int | None = None):
        """A dry run times one page on this host (the cluster is not needed to validate a run)."""
        return self.local.estimate(requests, pages=pages)

