"""Provider choice, session caching and the GPU -> CPU fallback (no GPU needed: fakes)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import psutil
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from radview.core.errors import RadviewError
from radview.inference import runtime
from radview.inference.runtime import (
    CPU_PROVIDER,
    NO_GPU_REASON,
    InferenceError,
    ModelSession,
    ProviderChoice,
    SessionCache,
    available_providers,
    choose_providers,
    inference_threads,
    is_gpu_failure,
    provider_status,
    run,
    session_options,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
DML = "DmlExecutionProvider"
COREML = "CoreMLExecutionProvider"
OOM_TEXT = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
            "running Conv node. Name:'' Status Message: CUDA error cudaErrorMemoryAllocation:"
            "out of memory")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """image [N, 2, 4, 4] -> logits [N, 1, 4, 4] = 1 * channel0 + 2 * channel1."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 2, 4, 4])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, 4, 4])
    weight = numpy_helper.from_array(np.array([1, 2], np.float32).reshape(1, 2, 1, 1), "weight")
    graph = helper.make_graph([helper.make_node("Conv", ["image", "weight"], ["logits"])],
                              "tiny", [image], [logits], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def feeds():
    image = np.random.default_rng(0).random((1, 2, 4, 4), dtype=np.float32)
    return {"image": image}


def expected(feeds) -> np.ndarray:
    image = feeds["image"]
    return image[:, :1] + 2 * image[:, 1:]


def fake_providers(monkeypatch, *names: str) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(names))


class FakeGpuSession:
    """Claims to run on a GPU provider; its runs fail with ``error`` ``failures`` times."""

    def __init__(self, providers, error: Exception | None, failures: int = 1) -> None:
        self.providers = list(providers)
        self.error = error
        self.failures = failures
        self.runs = 0

    def get_providers(self):
        return self.providers

    def get_outputs(self):
        return [SimpleNamespace(name="logits")]

    def run(self, output_names, feeds):
        self.runs += 1
        if self.error is not None and self.runs <= self.failures:
            raise self.error
        return [np.zeros((1, 1, 4, 4), np.float32)]


class Factory:
    """A session factory: a fake for GPU provider lists, the real onnxruntime for the CPU."""

    def __init__(self, make_gpu) -> None:
        self.make_gpu = make_gpu
        self.calls: list[tuple[str, ...]] = []
        self.gpu_sessions: list = []

    def __call__(self, path, sess_options=None, providers=None):
        self.calls.append(tuple(providers))
        if providers[0] != CPU_PROVIDER:
            session = self.make_gpu(providers)
            self.gpu_sessions.append(session)
            return session
        return onnxruntime.InferenceSession(path, sess_options=sess_options, providers=providers)


# ---------------------------------------------------------------------------- providers
def test_available_providers_reports_onnxruntime():
    assert CPU_PROVIDER in available_providers()
    assert available_providers() == tuple(onnxruntime.get_available_providers())


@pytest.mark.parametrize(("present", "device", "providers"), [
    ([CPU_PROVIDER], "auto", (CPU_PROVIDER,)),
    ([CPU_PROVIDER], "cpu", (CPU_PROVIDER,)),
    (["AzureExecutionProvider", CPU_PROVIDER], "auto", (CPU_PROVIDER,)),
    ([CUDA, CPU_PROVIDER], "auto", (CUDA, CPU_PROVIDER)),
    ([CUDA, CPU_PROVIDER], "gpu", (CUDA, CPU_PROVIDER)),
    ([CUDA, CPU_PROVIDER], "cpu", (CPU_PROVIDER,)),
    ([CPU_PROVIDER, CUDA, TRT], "auto", (TRT, CUDA, CPU_PROVIDER)),
    ([TRT, CPU_PROVIDER], "gpu", (TRT, CPU_PROVIDER)),
    ([DML, COREML, CPU_PROVIDER], "auto", (DML, CPU_PROVIDER)),
    ([COREML, CPU_PROVIDER], "gpu", (COREML, CPU_PROVIDER)),
    ([COREML, CUDA, DML, CPU_PROVIDER], "auto", (CUDA, CPU_PROVIDER)),
])
def test_provider_preference(monkeypatch, present, device, providers):
    fake_providers(monkeypatch, *present)
    choice = choose_providers(device)
    assert choice.providers == providers
    assert choice.device == device
    assert choice.uses_gpu == (providers[0] != CPU_PROVIDER)
    if choice.uses_gpu:
        assert choice.reason == f"{providers[0]} is the best available provider"


def test_gpu_requested_without_gpu_falls_back_to_cpu_with_a_reason(monkeypatch):
    fake_providers(monkeypatch, "AzureExecutionProvider", CPU_PROVIDER)
    choice = choose_providers("gpu")
    assert choice.providers == (CPU_PROVIDER,)
    assert choice.reason == (
        "no GPU provider: install radview[gpu] (onnxruntime-gpu) and a CUDA driver; "
        "running on the CPU")
    assert choice.reason.startswith(NO_GPU_REASON)
    assert "\n" not in choice.reason
    assert choose_providers("auto").reason == choice.reason
    assert choose_providers("cpu").reason == "CPU requested"


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be one of auto, cpu, gpu"):
        choose_providers("tpu")


def test_provider_status_says_what_to_install(monkeypatch):
    fake_providers(monkeypatch, CPU_PROVIDER)
    status = {s.name: s for s in provider_status()}
    assert list(status) == [TRT, CUDA, DML, COREML, CPU_PROVIDER]
    assert status[CPU_PROVIDER].available and status[CPU_PROVIDER].hint == ""
    assert not status[CUDA].available
    assert "radview[gpu]" in status[CUDA].hint


def test_threads_are_physical_cores(monkeypatch):
    assert 1 <= inference_threads() <= (psutil.cpu_count(logical=False) or 1)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: None)
    assert inference_threads() == 1


def test_session_options_optimise_fully():
    options = session_options(threads=3)
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == 3
    assert session_options().intra_op_num_threads == inference_threads()


@pytest.mark.parametrize(("error", "gpu"), [
    (RuntimeException(OOM_TEXT), True),
    (Fail("CUDA failure 100: no CUDA-capable device is detected"), True),
    (RuntimeError("TensorRT EP failed to create engine from network"), True),
    (MemoryError("std::bad_alloc"), True),
    (InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for "
                     "input: image"), False),
])
def test_gpu_failures_are_recognised(error, gpu):
    assert is_gpu_failure(error) is gpu


# ---------------------------------------------------------------------------- sessions
def test_cpu_session_runs_and_reports_its_provider(model_path, feeds):
    cache = SessionCache()
    session = cache.open(model_path, "cpu")
    assert isinstance(session, ModelSession)
    result = run(session, feeds)
    assert result.provider == CPU_PROVIDER
    assert result.fallback_reason is None and not result.fell_back
    assert list(result.outputs) == ["logits"]
    np.testing.assert_allclose(result.outputs["logits"], expected(feeds), rtol=1e-6)


def test_sessions_are_cached_per_path_and_providers(model_path, tmp_path):
    options_seen = []

    def factory(path, sess_options=None, providers=None):
        options_seen.append(sess_options)
        return onnxruntime.InferenceSession(path, sess_options=sess_options, providers=providers)

    cache = SessionCache(session_factory=factory)
    first = cache.get(model_path, [CPU_PROVIDER])
    assert cache.get(model_path, (CPU_PROVIDER,)) is first
    # The same file through another spelling of its path is the same key.
    other_spelling = model_path.parent / ".." / model_path.parent.name / model_path.name
    assert cache.get(other_spelling, [CPU_PROVIDER]) is first
    assert len(options_seen) == 1 and len(cache) == 1
    level = options_seen[0].graph_optimization_level
    assert level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options_seen[0].intra_op_num_threads == inference_threads()
    assert cache.open(model_path, "cpu") is cache.open(model_path, "cpu")
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(model_path.read_bytes())
    assert cache.get(copy, [CPU_PROVIDER]) is not first
    cache.clear()
    assert len(cache) == 0
    assert cache.get(model_path, [CPU_PROVIDER]) is not first


def test_cache_is_thread_safe(model_path):
    cache = SessionCache()
    sessions = []
    threads = [threading.Thread(target=lambda: sessions.append(cache.get(model_path,
                                                                         [CPU_PROVIDER])))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in sessions}) == 1


def test_out_of_memory_on_gpu_reruns_on_cpu_and_says_so(model_path, feeds, monkeypatch):
    fake_providers(monkeypatch, CUDA, CPU_PROVIDER)
    factory = Factory(lambda providers: FakeGpuSession(providers, RuntimeException(OOM_TEXT)))
    cache = SessionCache(session_factory=factory)

    session = cache.open(model_path, "auto")
    assert session.provider == CUDA and session.fallback_reason is None
    result = session.run(feeds)

    assert result.provider == CPU_PROVIDER
    assert result.fell_back
    assert result.fallback_reason.startswith("CUDAExecutionProvider failed during inference (")
    assert "out of memory" in result.fallback_reason
    assert result.fallback_reason.endswith("re-ran on the CPU")
    assert "\n" not in result.fallback_reason
    np.testing.assert_allclose(result.outputs["logits"], expected(feeds), rtol=1e-6)
    assert factory.calls == [(CUDA, CPU_PROVIDER), (CPU_PROVIDER,)]
    [gpu] = factory.gpu_sessions
    assert gpu.runs == 1

    # Sticky: the next run goes straight to the CPU and still says why.
    again = session.run(feeds)
    assert (again.provider, again.fallback_reason) == (CPU_PROVIDER, result.fallback_reason)
    assert gpu.runs == 1
    assert cache.open(model_path, "auto") is session
    assert len(cache) == 1  # the failed GPU session was dropped (its memory freed)
    assert cache.get(model_path, (CUDA, CPU_PROVIDER)) is not gpu  # a fresh one if asked


def test_gpu_failure_when_the_session_is_created_falls_back(model_path, feeds, monkeypatch):
    fake_providers(monkeypatch, TRT, CUDA, CPU_PROVIDER)

    def fail(providers):
        raise Fail("TensorRT EP could not load libnvinfer.so.10: cannot open shared object file")

    cache = SessionCache(session_factory=Factory(fail))
    session = cache.open(model_path, "gpu")
    assert session.choice.providers == (TRT, CUDA, CPU_PROVIDER)
    assert session.provider == CPU_PROVIDER
    assert session.fallback_reason.startswith(
        "TensorrtExecutionProvider failed to start (TensorRT EP could not load libnvinfer")
    assert session.fallback_reason.endswith("running on the CPU")
    result = session.run(feeds)
    assert (result.provider, result.fallback_reason) == (CPU_PROVIDER, session.fallback_reason)


def test_provider_silently_dropped_by_onnxruntime_is_reported(model_path, feeds, monkeypatch):
    fake_providers(monkeypatch, CUDA, CPU_PROVIDER)
    # onnxruntime-gpu without a driver builds a CPU-only session instead of failing.
    cache = SessionCache(session_factory=Factory(
        lambda providers: FakeGpuSession([CPU_PROVIDER], None)))
    session = cache.open(model_path, "auto")
    assert session.provider == CPU_PROVIDER
    assert session.fallback_reason == ("onnxruntime could not enable CUDAExecutionProvider "
                                       "(driver or libraries missing?); running on "
                                       "CPUExecutionProvider")
    assert session.run(feeds).fallback_reason == session.fallback_reason


def test_input_errors_on_gpu_are_not_retried(model_path, feeds, monkeypatch):
    fake_providers(monkeypatch, CUDA, CPU_PROVIDER)
    bad_input = InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid "
                                "dimensions for input: image")
    factory = Factory(lambda providers: FakeGpuSession(providers, bad_input))
    session = SessionCache(session_factory=factory).open(model_path)
    with pytest.raises(InferenceError) as caught:
        session.run(feeds)
    assert str(caught.value).startswith(f"{model_path.resolve()}: inference failed on "
                                        "CUDAExecutionProvider: [ONNXRuntimeError]")
    assert factory.calls == [(CUDA, CPU_PROVIDER)]
    assert session.provider == CUDA


def test_cpu_run_failure_is_a_one_line_radview_error(model_path):
    session = SessionCache().open(model_path, "cpu")
    with pytest.raises(InferenceError) as caught:
        session.run({"image": np.zeros((1, 3, 4, 4), np.float32)})  # 3 channels, not 2
    assert isinstance(caught.value, RadviewError)
    assert "inference failed on CPUExecutionProvider" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unloadable_model_is_a_radview_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(InferenceError, match=r"broken.onnx: cannot be loaded with "
                                             r"CPUExecutionProvider: "):
        SessionCache().open(path, "cpu")


def test_explicit_provider_choice(model_path):
    choice = ProviderChoice((CPU_PROVIDER,), "benchmark", "cpu")
    session = SessionCache().open(model_path, choice)
    assert session.choice is choice and session.provider == CPU_PROVIDER


def test_onnxruntime_missing_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(runtime.InferenceUnavailableError,
                       match=r"onnxruntime cannot be imported .*pip install onnxruntime"):
        available_providers()
