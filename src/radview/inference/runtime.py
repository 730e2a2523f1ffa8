"""ONNX Runtime execution providers and sessions, with a GPU -> CPU fallback.

``onnxruntime`` is imported when first needed, never when this module is imported
(DESIGN rule 1 and 6): listing what is available, choosing a provider and opening a session
each say in one line why a GPU is not used and what to install.

Design choices
--------------
* **Preference order** is TensorRT -> CUDA -> DirectML -> CoreML -> CPU, restricted to what
  ``onnxruntime.get_available_providers()`` reports. The chosen GPU provider is followed by
  CUDA when it is TensorRT (TensorRT hands unsupported subgraphs to CUDA) and always by the
  CPU provider, which runs the nodes no GPU provider takes.
* **The provider actually used is what the session reports** (``get_providers()``), not what
  was asked for: onnxruntime-gpu lists CUDA even on machines without a driver and then quietly
  builds a CPU session. Every :class:`RunResult` carries that provider and, when a fallback
  happened, the reason.
* **Fallback is sticky per model session.** A GPU provider that fails while the session is
  created, or that runs out of memory (or reports any CUDA/TensorRT/DirectML/CoreML failure)
  during a run, is replaced by a CPU session; the failed run is repeated on the CPU and later
  runs go straight to the CPU, because the condition (no driver, memory held by another
  program) usually persists. :meth:`SessionCache.clear` forgets it. Errors that are not
  GPU failures (a wrong input shape, say) are reported, not retried.
* **Threads.** ``intra_op_num_threads`` is the number of physical cores (hyper-threads slow
  convolutions down), capped by the CPUs this process may run on (containers, ``taskset``).
* **Caching.** :class:`SessionCache` keeps one onnxruntime session per (model path, provider
  tuple) and one :class:`ModelSession` per (model path, requested providers); creating a session
  optimises the graph and can take seconds, so the viewer builds the cache once (composition
  root) and passes it down. It is safe to use from several threads.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radview.core.errors import InputFileError, RadviewError

__all__ = [
    "CPU_PROVIDER",
    "GPU_PROVIDERS",
    "PROVIDER_PREFERENCE",
    "DEVICES",
    "NO_GPU_REASON",
    "InferenceUnavailableError",
    "InferenceError",
    "ProviderChoice",
    "ProviderStatus",
    "RunResult",
    "ModelSession",
    "SessionCache",
    "import_onnxruntime",
    "available_providers",
    "provider_status",
    "choose_providers",
    "inference_threads",
    "session_options",
    "is_gpu_failure",
    "runtime_errors",
    "run",
]

CPU_PROVIDER = "CPUExecutionProvider"
#: GPU execution providers, best first.
GPU_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
PROVIDER_PREFERENCE = (*GPU_PROVIDERS, CPU_PROVIDER)
#: What ``--device`` accepts.
DEVICES = ("auto", "cpu", "gpu")
NO_GPU_REASON = "no GPU provider: install radview[gpu] (onnxruntime-gpu) and a CUDA driver"

#: What to install for each provider when it is missing (DESIGN rule 6).
_INSTALL_HINTS = {
    "TensorrtExecutionProvider": "install radview[gpu] (onnxruntime-gpu) with the TensorRT "
                                 "libraries and a CUDA driver",
    "CUDAExecutionProvider": "install radview[gpu] (onnxruntime-gpu) and a CUDA driver",
    "DmlExecutionProvider": "Windows only: install onnxruntime-directml instead of onnxruntime",
    "CoreMLExecutionProvider": "macOS only: part of the onnxruntime wheel for macOS",
    CPU_PROVIDER: "reinstall onnxruntime",
}
#: Text of onnxruntime errors that mean "the GPU could not do it", not "the input is wrong".
_GPU_FAILURE_TEXT = re.compile(
    r"out of memory|\bOOM\b|failed to allocate|bad_alloc|CUDA|cuDNN|cuBLAS|TensorRT|"
    r"DirectML|\bDML\b|D3D12|CoreML",
    re.IGNORECASE,
)

SessionFactory = Callable[..., Any]


class InferenceUnavailableError(RadviewError):
    """onnxruntime cannot be imported, so no model can run; the message says what to install."""


class InferenceError(InputFileError):
    """A model could not be loaded or run (``path`` is the ``.onnx`` file)."""


# ---------------------------------------------------------------------------- providers
def import_onnxruntime():
    """Import and return :mod:`onnxruntime`, or say why it cannot be used.

    Raises
    ------
    InferenceUnavailableError
        onnxruntime is not installed or its native library does not load.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise InferenceUnavailableError(
            f"onnxruntime cannot be imported ({_first_line(error)}); install it with "
            "`pip install onnxruntime` (or radview[gpu] for onnxruntime-gpu)") from None
    return onnxruntime


def available_providers() -> tuple[str, ...]:
    """The execution providers this onnxruntime build offers, as it reports them."""
    return tuple(import_onnxruntime().get_available_providers())


@dataclass(frozen=True)
class ProviderStatus:
    """One known provider: whether it is available and, if not, what to install."""

    name: str
    available: bool
    hint: str


def provider_status(available: Iterable[str] | None = None) -> list[ProviderStatus]:
    """Every provider radview knows, in preference order, with an install hint if missing."""
    present = set(available_providers() if available is None else available)
    return [ProviderStatus(name, name in present, "" if name in present else _INSTALL_HINTS[name])
            for name in PROVIDER_PREFERENCE]


@dataclass(frozen=True)
class ProviderChoice:
    """The providers to ask onnxruntime for, best first, and why."""

    providers: tuple[str, ...]
    reason: str
    device: str = "auto"

    @property
    def primary(self) -> str:
        """The provider expected to run the model."""
        return self.providers[0]

    @property
    def uses_gpu(self) -> bool:
        return self.primary != CPU_PROVIDER


def choose_providers(device: str = "auto",
                     available: Iterable[str] | None = None) -> ProviderChoice:
    """Choose execution providers for ``device``.

    Parameters
    ----------
    device
        ``"auto"`` (best available), ``"cpu"``, or ``"gpu"`` (best GPU provider; the CPU with a
        reason when there is none).
    available
        Providers to choose from; default: what onnxruntime reports.

    Returns
    -------
    ProviderChoice
        ``providers`` always ends with the CPU provider.

    Raises
    ------
    ValueError
        ``device`` is not one of :data:`DEVICES`.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    present = set(available_providers() if available is None else available)
    cpu_only = (CPU_PROVIDER,)
    if device == "cpu":
        return ProviderChoice(cpu_only, "CPU requested", device)
    gpus = [name for name in GPU_PROVIDERS if name in present]
    if not gpus:
        return ProviderChoice(cpu_only, f"{NO_GPU_REASON}; running on the CPU", device)
    best = gpus[0]
    chain = [best]
    if best == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in present:
        chain.append("CUDAExecutionProvider")
    chain.append(CPU_PROVIDER)
    return ProviderChoice(tuple(chain), f"{best} is the best available provider", device)


def inference_threads() -> int:
    """Threads for one session: physical cores, capped by the CPUs this process may use."""
    import psutil

    cores = psutil.cpu_count(logical=False) or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS/Windows have no sched_getaffinity
        allowed = cores
    return max(1, min(cores, allowed))


def session_options(*, threads: int | None = None, optimize: bool = True):
    """``onnxruntime.SessionOptions`` for radview: full graph optimisation, physical cores."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads or inference_threads()
    # No CPU memory arena: the arena keeps the largest batch's activations for the session's
    # life (measured: +300 MiB peak segmenting a 512x512x300 CT) for about 20 % more speed.
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # errors only; ORT's warnings are not for a radiologist
    return options


def is_gpu_failure(error: BaseException) -> bool:
    """Whether an onnxruntime error means the GPU provider failed (memory, driver, EP)."""
    name = type(error).__name__
    if name in ("EPFail", "DeviceReset"):
        return True
    if name in ("InvalidArgument", "NotImplemented", "InvalidGraph"):  # the input or the model
        return False
    return bool(_GPU_FAILURE_TEXT.search(str(error)))


@functools.cache
def runtime_errors() -> tuple[type[BaseException], ...]:
    """The exception types loading or running a session raises: onnxruntime's own (plain
    ``Exception`` subclasses) plus the Python ones its bindings use."""
    import_onnxruntime()
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    native = tuple(value for value in vars(state).values()
                   if isinstance(value, type) and issubclass(value, Exception))
    return (*native, RuntimeError, MemoryError, ValueError)


# ---------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class RunResult:
    """The outputs of one run and the provider that produced them."""

    outputs: dict[str, Any]
    provider: str
    #: Why the model is not running on the provider that was chosen; ``None`` if it is.
    fallback_reason: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.fallback_reason is not None


class ModelSession:
    """One model's onnxruntime session that moves itself to the CPU when the GPU fails.

    Get instances from :meth:`SessionCache.open`.
    """

    def __init__(self, cache: SessionCache, model_path: Path, choice: ProviderChoice,
                 session: Any, fallback_reason: str | None) -> None:
        self.cache = cache
        self.model_path = model_path
        self.choice = choice
        self.session = session
        self.fallback_reason = fallback_reason
        self._lock = threading.Lock()

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers the current session really has, best first."""
        return tuple(self.session.get_providers())

    @property
    def provider(self) -> str:
        """The provider that runs the model now."""
        return self.providers[0]

    @property
    def on_gpu(self) -> bool:
        return self.provider != CPU_PROVIDER

    def run(self, feeds: Mapping[str, Any],
            output_names: Sequence[str] | None = None) -> RunResult:
        """Run the model; on a GPU failure, move to the CPU and run again.

        Parameters
        ----------
        feeds
            Input name -> array.
        output_names
            Outputs to compute; default all, in graph order.

        Returns
        -------
        RunResult
            Output name -> array, the provider used and the fallback reason, if any.

        Raises
        ------
        InferenceError
            The run failed on the CPU, or failed on a GPU for a reason a CPU run cannot fix.
        """
        errors = runtime_errors()
        names = list(output_names) if output_names else None
        session = self.session
        provider = session.get_providers()[0]
        try:
            values = session.run(names, dict(feeds))
        except errors as error:
            if provider == CPU_PROVIDER or not is_gpu_failure(error):
                raise InferenceError(self.model_path, f"inference failed on {provider}: "
                                                      f"{_first_line(error)}") from error
            session = self._move_to_cpu(session, f"{provider} failed during inference "
                                                 f"({_first_line(error)}); re-ran on the CPU")
            provider = session.get_providers()[0]
            try:
                values = session.run(names, dict(feeds))
            except errors as cpu_error:
                raise InferenceError(self.model_path, f"inference failed on {provider} after "
                                                      f"a GPU failure: {_first_line(cpu_error)}"
                                     ) from cpu_error
        names = names or [output.name for output in session.get_outputs()]
        return RunResult(dict(zip(names, values, strict=True)), provider, self.fallback_reason)

    def _move_to_cpu(self, failed_session: Any, reason: str) -> Any:
        with self._lock:
            if self.session is failed_session:  # another thread may have moved it already
                gpu_providers = tuple(failed_session.get_providers())
                self.session = self.cache.get(self.model_path, (CPU_PROVIDER,))
                self.fallback_reason = reason
                # Free the GPU memory the failed session holds.
                self.cache.discard(self.model_path, gpu_providers)
                self.cache.discard(self.model_path, self.choice.providers)
            return self.session


class SessionCache:
    """onnxruntime sessions, one per (model path, provider tuple), created on first use.

    Parameters
    ----------
    session_factory
        Called as ``factory(path_str, sess_options=..., providers=[...])``; default
        ``onnxruntime.InferenceSession``. Tests pass fakes.
    threads
        ``intra_op_num_threads``; default :func:`inference_threads`.
    """

    def __init__(self, session_factory: SessionFactory | None = None,
                 threads: int | None = None) -> None:
        self._factory = session_factory
        self._threads = threads
        self._sessions: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._models: dict[tuple[str, tuple[str, ...]], ModelSession] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, model_path: str | Path, providers: Sequence[str]) -> Any:
        """The onnxruntime session for ``model_path`` on ``providers`` (created once).

        Raises
        ------
        InferenceError
            onnxruntime cannot load the model with these providers.
        """
        key = (_key_path(model_path), tuple(providers))
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                factory = self._factory or import_onnxruntime().InferenceSession
                try:
                    session = factory(key[0], sess_options=session_options(threads=self._threads),
                                      providers=list(key[1]))
                except runtime_errors() as error:
                    raise InferenceError(key[0], f"cannot be loaded with {', '.join(key[1])}: "
                                                 f"{_first_line(error)}") from error
                self._sessions[key] = session
            return session

    def open(self, model_path: str | Path,
             device: str | ProviderChoice = "auto") -> ModelSession:
        """A :class:`ModelSession` for ``model_path`` on ``device`` (or an explicit choice).

        A GPU provider that fails while the session is created is replaced by the CPU; the
        returned session's ``fallback_reason`` says so.

        Raises
        ------
        InferenceError
            The model cannot be loaded even on the CPU.
        """
        choice = device if isinstance(device, ProviderChoice) else choose_providers(device)
        key = (_key_path(model_path), choice.providers)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                return model
            fallback = None
            try:
                session = self.get(key[0], choice.providers)
            except InferenceError as error:
                if not choice.uses_gpu:
                    raise
                session = self.get(key[0], (CPU_PROVIDER,))
                fallback = (f"{choice.primary} failed to start ({_first_line(error.__cause__)}); "
                            "running on the CPU")
            actual = tuple(session.get_providers())
            if fallback is None and choice.uses_gpu and choice.primary not in actual:
                fallback = (f"onnxruntime could not enable {choice.primary} (driver or libraries "
                            f"missing?); running on {actual[0] if actual else CPU_PROVIDER}")
            model = ModelSession(self, Path(key[0]), choice, session, fallback)
            self._models[key] = model
            return model

    def discard(self, model_path: str | Path, providers: Sequence[str]) -> None:
        """Forget the session for (``model_path``, ``providers``), if any."""
        with self._lock:
            self._sessions.pop((_key_path(model_path), tuple(providers)), None)

    def clear(self) -> None:
        """Forget every session (and every sticky CPU fallback)."""
        with self._lock:
            self._sessions.clear()
            self._models.clear()


def run(session: ModelSession, feeds: Mapping[str, Any],
        output_names: Sequence[str] | None = None) -> RunResult:
    """Run ``session`` on ``feeds``; see :meth:`ModelSession.run`."""
    return session.run(feeds, output_names)


def _key_path(model_path: str | Path) -> str:
    return str(Path(model_path).resolve())


def _first_line(error: object) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
