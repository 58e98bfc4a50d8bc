"""ONNX export of a network's inference forward, checked against PyTorch before it is written.

Only the plain ``nn.Module`` a model runs at inference is exported; the numpy pre- and
post-processing around it (scaling, masking schedules, sliding windows, calibration) stays
in Python. A :class:`GraphSpec` says what the graph takes and returns and how to draw
sample inputs from the model's own shapes; :func:`export_onnx` exports it, runs ONNX
Runtime (CPU) and PyTorch on fresh deterministic samples (several batch sizes, and other
spatial sizes where those axes are dynamic), and writes the ``.onnx`` file atomically only
when every output agrees within ``atol + rtol * |torch|`` (NumPy's ``isclose``). The
parity result is recorded in the model's ``metadata_props`` (``unmask.parity``).

The exporter: ``torch.onnx.export(..., dynamo=True)``, PyTorch's default since 2.9 (the
TorchScript one is deprecated). It needs ``onnxscript``. The model is first captured with
``torch.export.export`` and decomposed to core ATen with the default table; the ONNX
exporter's own decompositions fail on ``cross_entropy`` with a symbolic batch size (torch
2.13: "slice() cannot be applied to a 0-dim tensor"), which the tabular network uses.

Example:
    >>> report = export_onnx(TabularDetector(components=("network",)).fit(X),
    ...                      "tabular.onnx")                           # doctest: +SKIP
    >>> report.max_abs_diff <= report.atol                             # doctest: +SKIP
    True
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from . import __version__
from .errors import NotFittedError, UnmaskError
from .cli_options import DEFAULT_ATOL, DEFAULT_RTOL
from .io import atomic_path
from .tabular.network import LearnedMaskAutoencoder

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
CHECK_BATCH_SIZES = (1, 2, 5)
# torch.export specialises sizes 0 and 1, which would pin the batch axis: export with 2
EXAMPLE_BATCH = 2
PARITY_KEY = "unmask.parity"


class ExportError(UnmaskError):
    """The network cannot be exported (missing extra, unsupported operation, no network)."""


class ParityError(ExportError):
    """The exported graph disagrees with PyTorch beyond the tolerance; nothing was written."""


@dataclass
class GraphSpec:
    """A network to export, its named inputs and outputs, and how to draw sample inputs.

    Args:
        module: the ``nn.Module`` whose ``forward(*inputs)`` is exported (put in eval mode);
            it returns one tensor or a tuple of tensors, in ``output_names`` order.
        input_names: graph input names, in ``forward``'s order.
        output_names: graph output names.
        dynamic_axes: per input, ``{axis: (dim name, multiple)}``: the axis takes any size
            that is a positive multiple of ``multiple``; other axes are fixed.
        sample: ``sample(rng, sizes) -> tuple of numpy arrays`` (one per input), for
            ``sizes`` mapping each dim name to a size; realistic values (codes in range).
        example: the sizes the graph is traced at.
        checks: the sizes the parity check runs at (fresh samples for each).
        description: what the graph takes and returns, with shapes and dtypes; becomes the
            model's ``doc_string``.
        metadata: extra JSON-able entries for ``metadata_props`` (key ``unmask.<name>``).
    """

    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, tuple[str, int]]]
    sample: Callable[[np.random.Generator, dict], tuple]
    example: dict
    checks: list[dict]
    description: str
    metadata: dict = field(default_factory=dict)


def batch_checks(**fixed) -> tuple[dict, list[dict]]:
    """``(example, checks)`` sizes for a graph whose only dynamic axis is ``batch``."""
    return ({"batch": EXAMPLE_BATCH, **fixed},
            [{"batch": b, **fixed} for b in CHECK_BATCH_SIZES])


@dataclass
class ParityReport:
    """How far ONNX Runtime's outputs are from PyTorch's over the parity check's samples.

    ``max_rel_diff`` is taken over outputs larger than ``atol`` in magnitude (smaller ones
    are judged by ``atol`` alone). ``passed``: every output within
    ``atol + rtol * |torch|``.
    """

    passed: bool
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    checks: list[dict]
    seed: int
    runtime: str

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: the differences, the tolerance and the sizes checked."""
        sizes = "; ".join(", ".join(f"{k} {v}" for k, v in c.items()) for c in self.checks)
        return (f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g} "
                f"(tolerance atol {self.atol:g} + rtol {self.rtol:g} x |torch|; "
                f"{self.runtime}; {sizes})")


def require_onnx() -> None:
    """Raise one line naming the extra to install when an ONNX package is missing."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: "
                          "pip install 'unmask[export]'")


def export_onnx(model, path, *, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                seed: int = 0, metadata: dict | None = None) -> ParityReport:
    """Export ``model`` to ONNX at ``path`` after checking it against PyTorch.

    Args:
        model: a :class:`GraphSpec`, a fitted ``core.TabularDetector`` with the
            ``"network"`` component, or a ``LearnedMaskAutoencoder`` (the graph is
            described in :func:`tabular_spec`).
        path: the ``.onnx`` file (written atomically; an existing file is replaced only
            when the check passes).
        atol, rtol: the parity tolerance.
        seed: seeds the parity check's sample inputs.
        metadata: extra ``metadata_props`` entries (JSON-able values).

    Returns:
        The :class:`ParityReport` (also stored in the file as ``unmask.parity``).

    Raises:
        ExportError: an ONNX package is missing, or the network cannot be exported.
        ParityError: the graph disagrees with PyTorch beyond the tolerance.
    """
    require_onnx()
    import onnx

    if atol < 0 or rtol < 0:
        raise ExportError(f"tolerances must be >= 0, got atol {atol}, rtol {rtol}")
    spec = model if isinstance(model, GraphSpec) else tabular_spec(model)
    spec.module.eval()
    proto = _to_onnx(spec)
    report = check_parity(spec, proto, atol, rtol, seed)
    if not report.passed:
        raise ParityError(f"the ONNX graph disagrees with PyTorch: {report.summary()}; "
                          f"nothing written to {path}")
    _annotate(proto, spec, report, metadata or {})
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return report


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' progress warnings and logs (the CLI prints one line)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript",
                                                    "onnx_ir", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _Varargs(nn.Module):
    """``forward(*inputs)`` around any network, so one dynamic-shapes layout fits all."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor):
        return self.module(*inputs)


def _dynamic_shapes(spec: GraphSpec) -> tuple:
    dims = {}
    shapes = []
    for name in spec.input_names:
        axes = {}
        for axis, (dim_name, multiple) in spec.dynamic_axes.get(name, {}).items():
            dim = dims.setdefault(dim_name, Dim(dim_name, min=1))
            axes[axis] = dim if multiple == 1 else multiple * dim
        shapes.append(axes or None)
    return (tuple(shapes),)  # one entry: _Varargs.forward's *inputs


def _to_onnx(spec: GraphSpec):
    """Trace ``spec.module`` at ``spec.example`` and translate it: an ``onnx.ModelProto``."""
    example = tuple(torch.from_numpy(a) for a in spec.sample(np.random.default_rng(0), spec.example))
    dynamic = _dynamic_shapes(spec)
    try:
        with _quiet(), torch.no_grad():
            program = torch.export.export(_Varargs(spec.module), example, dynamic_shapes=dynamic,
                                          strict=False).run_decompositions()
            onnx_program = torch.onnx.export(program, example, dynamo=True, verbose=False,
                                             dynamic_shapes=dynamic,
                                             input_names=list(spec.input_names),
                                             output_names=list(spec.output_names))
    except Exception as err:  # torch's export errors are pages long: keep their first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"ONNX export of {type(spec.module).__name__} failed: {first}") from None
    return onnx_program.model_proto


def _run_torch(module, inputs: tuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in inputs))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def _run_onnx(session, spec: GraphSpec, inputs: tuple) -> list[np.ndarray]:
    return session.run(list(spec.output_names), dict(zip(spec.input_names, inputs)))


def check_parity(spec: GraphSpec, proto, atol: float, rtol: float, seed: int = 0) -> ParityReport:
    """Run ONNX Runtime (CPU) and PyTorch on fresh samples at every size of ``spec.checks``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    max_abs = max_rel = 0.0
    passed = True
    for sizes in spec.checks:
        inputs = spec.sample(rng, sizes)
        for name, want, got in zip(spec.output_names, _run_torch(spec.module, inputs),
                                   _run_onnx(session, spec, inputs)):
            if want.shape != got.shape:
                raise ParityError(f"the ONNX graph's output {name!r} has shape {got.shape}, "
                                  f"PyTorch's {want.shape} (sizes {sizes}); nothing written")
            want, got = want.astype(np.float64), np.asarray(got, dtype=np.float64)
            diff = np.abs(got - want)
            diff = np.where(np.isnan(want) & np.isnan(got), 0.0, diff)
            passed &= bool(np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True).all())
            if diff.size:
                max_abs = max(max_abs, float(np.nan_to_num(diff, nan=np.inf).max()))
                large = np.abs(want) > atol
                if large.any():
                    rel = diff[large] / np.abs(want[large])
                    max_rel = max(max_rel, float(np.nan_to_num(rel, nan=np.inf).max()))
    return ParityReport(passed, max_abs, max_rel, float(atol), float(rtol),
                        [dict(c) for c in spec.checks], int(seed),
                        f"onnxruntime {ort.__version__} CPUExecutionProvider")


def _annotate(proto, spec: GraphSpec, report: ParityReport, metadata: dict) -> None:
    """Record the description, parity, versions and ``metadata`` in the model."""
    import onnx
    import onnxruntime

    proto.doc_string = spec.description
    entries = {"graph": spec.description, "parity": report.to_dict(),
               "versions": {"unmask": __version__, "torch": torch.__version__,
                            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
               **spec.metadata, **metadata}
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key = f"unmask.{key}"
        prop.value = value if isinstance(value, str) else json.dumps(value)


def read_parity(path) -> dict:
    """The parity record of an exported file (``unmask.parity`` in ``metadata_props``)."""
    import onnx

    model = onnx.load(str(Path(path)), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if PARITY_KEY not in props:
        raise ExportError(f"{path}: no {PARITY_KEY} record (not exported by unmask)")
    return json.loads(props[PARITY_KEY])


# -- the tabular network ---------------------------------------------------------------------

TABULAR_GRAPH = """\
Inputs (B = any batch size):
  numeric  float32 (B, {n_numeric})  numeric columns standardised with the training mean and
                                     scale ((x - mean) / scale, unmask.preprocess)
  codes    int64   (B, {n_codes})  category codes: 1 + index in the training vocabulary,
                                     0 = unseen category
  (an input is absent when the table has no columns of its kind)
Output:
  column_errors  float32 (B, {n_columns})  each column's reconstruction error (squared error
                 for numbers, cross-entropy for categories) averaged over the network's
                 {n_masks} learned masks; columns in unmask.columns order (numeric first)
Outside the graph: the detector takes the square root per column, sums the columns and
standardises the total (unmask.component_stats, key "network") before adding its other
components and calibrating."""


class TabularGraph(nn.Module):
    """The tabular network's forward over the inputs a table has (empty ones built inside).

    ONNX Runtime rejects zero-width inputs on some providers, and a table without
    categorical columns has nothing to feed ``codes``; the graph then takes ``numeric`` only.
    """

    def __init__(self, network: LearnedMaskAutoencoder):
        super().__init__()
        self.network = network
        config = network.autoencoder.config
        self.has_numeric, self.has_codes = config.n_numeric > 0, bool(config.cardinalities)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[0]
        it = iter(inputs)
        numeric = next(it) if self.has_numeric else torch.zeros(batch, 0)
        codes = next(it) if self.has_codes else torch.zeros(batch, 0, dtype=torch.long)
        return self.network(numeric, codes)  # (B, C)


def tabular_spec(model) -> GraphSpec:
    """The :class:`GraphSpec` of a ``TabularDetector``'s network (or the network itself).

    The graph is the MCM network's forward: per-column reconstruction errors averaged over
    its learned masks (the text of ``TABULAR_GRAPH``). Scaling the raw table and turning
    errors into the score stay in Python.
    """
    network, extra = model, {}
    if not isinstance(model, LearnedMaskAutoencoder):
        network, extra = _detector_network(model)
    config = network.autoencoder.config
    graph = TabularGraph(network)
    names = (("numeric",) if graph.has_numeric else ()) + (("codes",) if graph.has_codes else ())
    cards = np.asarray(config.cardinalities, dtype=np.int64)

    def sample(rng: np.random.Generator, sizes: dict) -> tuple:
        batch = sizes["batch"]
        numeric = rng.standard_normal((batch, config.n_numeric)).astype(np.float32)
        codes = (rng.random((batch, len(cards))) * cards).astype(np.int64)  # 0 .. card - 1
        return ((numeric,) if graph.has_numeric else ()) + ((codes,) if graph.has_codes else ())

    example, checks = batch_checks()
    description = TABULAR_GRAPH.format(n_numeric=config.n_numeric, n_codes=len(cards),
                                       n_columns=config.n_columns, n_masks=network.masks.n_masks)
    return GraphSpec(graph, names, ("column_errors",), {n: {0: ("batch", 1)} for n in names},
                     sample, example, checks, description,
                     {"kind": "tabular-network", **extra})


def _detector_network(detector) -> tuple[LearnedMaskAutoencoder, dict]:
    """A fitted detector's network and what a user needs around it (for metadata)."""
    if not hasattr(detector, "modules_") or not hasattr(detector, "preprocessor_"):
        raise NotFittedError(f"{type(detector).__name__} is not a fitted TabularDetector; "
                             "call fit(X) first")
    if "network" not in detector.modules_:
        raise ExportError(f"this detector has no 'network' component (components: "
                          f"{', '.join(detector.components_)}); only the network exports to "
                          "ONNX: fit with components including 'network'")
    pre = detector.preprocessor_
    columns = [pre.columns_[j] for j in pre.numeric_index + pre.categorical_index]
    return detector.modules_["network"], {"columns": columns, "preprocess": pre.to_dict(),
                                          "component_stats": detector.component_stats_}
