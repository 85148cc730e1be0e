"""What a run becomes in a snapshot file: dimensions, variables, their attributes, the root
attributes, and the per-snapshot diagnostics.

Everything here is pure description: no file is opened. The writer (:mod:`.writer`) creates
exactly these variables in HDF5 and :func:`pde_popdyn.io.to_dataset` builds the same ones as an
``xarray.Dataset`` in memory, so that a result converted to xarray is the Dataset its file
opens as. See the package docstring for the layout in words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from ..grid import Axis, Grid

FORMAT = "pde_popdyn snapshots"
FORMAT_VERSION = 2
KINDS = ("joint", "reduced", "ensemble")
CONVENTIONS = "CF-1.8"

TIME_CHUNK = 512          # rows per chunk of the 1-D variables along time
FILL_VALUE = np.nan       # declared _FillValue of every floating-point variable
BOUNDS_DIM = "bnds"       # the two ends of a cell
RNG_DIM = "rng_chars"     # characters of a generator state
AGENT_DIM = "agent"
#: the name netCDF-4 gives a dimension that has no coordinate variable
NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."

#: per-snapshot arrays that are the state itself (not diagnostics)
STATE_VARIABLES = ("density", "particle_theta", "particle_h")

#: root attributes the writer sets and maintains; ``attrs=`` may not use these names
RESERVED_ATTRIBUTES = ("format", "format_version", "kind", "title", "Conventions",
                       "pde_popdyn_version", "created", "history", "status", "closed",
                       "writer_host", "writer_pid", "grid", "model", "preset", "seed",
                       "rng_state_initial", "json_attributes", "diagnostics", "agent_fields")
#: attributes stored as JSON text whatever their value
JSON_ATTRIBUTES = ("grid", "model", "preset", "seed", "rng_state_initial")
#: the attributes that record when and where a file was written, not what it holds: they
#: differ between a file and ``to_xarray()`` of the same result
RUNTIME_ATTRIBUTES = ("created", "closed", "history", "status", "writer_host", "writer_pid")

#: the keys of a result's ``info`` that its run stores as root attributes when it starts ...
RUN_SETTINGS = {
    "joint": ("scheme", "splitting", "integrator", "dt", "dt_requested", "save_every",
              "interval"),
    "reduced": ("scheme", "splitting", "dt", "dt_requested", "save_every", "interval",
                "fitness_kind"),
    "ensemble": ("dt", "dt_requested", "save_every", "summary_every", "interval", "t0",
                 "n_agents", "splitting", "engine", "fast", "substeps",
                 "gradient", "noise", "fitness_mode", "window", "window_kind",
                 "effective_fitness", "bandwidth", "replicator", "resampling",
                 "ess_threshold", "jump_order", "boundary", "h_box", "selection",
                 "bit_generator"),
}
#: ... and when it ends (:func:`closing_attributes`)
CLOSING_ATTRIBUTES = ("run_seconds", "t_final", "n_steps", "stop_reason")

_TIME_COMMENT = ("the model's dimensionless time. It is not a calendar time: it has no "
                 "reference date, so it is an ordinary coordinate (units '1', no axis='T') "
                 "and readers keep it as plain numbers")
_DENSITY = {
    "joint": "joint density f(t, θ, h)",
    "reduced": "h-marginal density ρ(t, h)",
    "ensemble": "histogram density of the agents on the grid",
}
_DIAGNOSTICS = {
    "mass": "total mass of the density",
    "mean_theta": "population mean of θ",
    "mean_h": "population mean of h",
    "var_theta": "population variance of θ",
    "var_h": "population variance of h",
    "cov_theta_h": "population covariance of θ and h",
    "mean_fitness": "population mean fitness ⟨F⟩ (⟨F̄⟩ for a reduced run)",
}


class SnapshotFileError(ValueError):
    """A snapshot file that cannot be used: not HDF5, not ours, damaged, or inconsistent."""


# -- attributes ---------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return repr(o)


def dumps(obj: Any) -> str:
    """JSON text of ``obj`` (numpy values as plain numbers and lists, others by repr)."""
    return json.dumps(obj, default=_json_default)


def encode_attributes(values: dict[str, Any], json_names: tuple[str, ...] = ()
                      ) -> tuple[dict[str, Any], list[str]]:
    """Attribute values as the file stores them, and the names of those stored as JSON.

    Strings, integers and floats are stored natively; everything else (None, booleans, lists,
    dicts, arrays) as JSON text, whose names the root attribute ``json_attributes`` lists
    (netCDF has no boolean or null attribute types).
    """
    out: dict[str, Any] = {}
    as_json: list[str] = []
    for k, v in values.items():
        native = isinstance(v, (str, int, float, np.integer, np.floating)) \
            and not isinstance(v, (bool, np.bool_))
        if k in json_names or not native:
            out[k] = dumps(v)
            as_json.append(k)
        else:
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out, as_json


def decode_attributes(raw: Any) -> dict[str, Any]:
    """Root attributes as Python values: bytes decoded, JSON attributes parsed."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    for k in set(str(out.get("json_attributes", "")).split(",")) - {""}:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError:
                pass
    return out


def names_list(value: Any) -> list[str]:
    """A comma-separated attribute (``diagnostics``, ``agent_fields``) as a list."""
    return [n for n in str(value or "").split(",") if n]


def header_attributes(kind: str, grid: Grid | None, model: Any, *, seed: Any = None,
                      rng_state: dict | None = None, settings: dict[str, Any] | None = None,
                      created: str, record_process: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The root attributes of a new file (Python values, before :func:`encode_attributes`)."""
    a: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "title": f"pde_popdyn {kind} snapshots", "Conventions": CONVENTIONS,
        "pde_popdyn_version": __version__, "created": created,
        "history": f"{created}: created by pde_popdyn {__version__}", "status": "running",
    }
    if record_process:
        a.update(record_process)
    a.update({
        "grid": grid.to_dict() if isinstance(grid, Grid) else grid,
        "model": model.describe() if hasattr(model, "describe") else None,
        "preset": getattr(model, "preset", None),
        "seed": seed,
        "rng_state_initial": rng_state,
    })
    for k, v in (settings or {}).items():
        if k in RESERVED_ATTRIBUTES:
            raise ValueError(f"attrs[{k!r}] is reserved by the snapshot format; choose another "
                             f"name")
        a[k] = v
    return a


def run_attributes(kind: str, info: dict[str, Any]) -> dict[str, Any]:
    """The settings a run of this kind stores when it starts, taken from a result's ``info``
    (what a solver passes as ``SnapshotWriter(attrs=...)``)."""
    return {k: info[k] for k in RUN_SETTINGS[kind] if k in info}


def closing_attributes(t: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    """What a run stores when it ends: its wall time, final time and total number of steps."""
    out: dict[str, Any] = {}
    if "run_seconds" in info:
        out["run_seconds"] = info["run_seconds"]
    if len(t):
        out["t_final"] = float(t[-1])
        if info.get("dt"):
            out["n_steps"] = int(round(float(t[-1]) / float(info["dt"])))
    if "stop_reason" in info:
        out["stop_reason"] = info["stop_reason"]
    return out


# -- variables ----------------------------------------------------------------------------------
@dataclass
class VariableSpec:
    """One netCDF variable (or, with ``dimension_only``, a dimension without coordinate)."""

    name: str
    dims: tuple[str, ...]
    dtype: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    data: np.ndarray | None = None     # the values of a variable without a time dimension
    scale: bool = False                # a coordinate variable (HDF5 dimension scale)
    dimension_only: bool = False
    compress: bool = False             # chunked one snapshot per chunk and compressed

    @property
    def along_time(self) -> bool:
        return bool(self.dims) and self.dims[0] == "time"


def axes_of(grid: Any, kind: str) -> tuple[Axis, ...]:
    """The grid axes a density of this kind lives on: θ-axes then h-axes (h-axes only for a
    reduced run; an ensemble's histogram lives on the whole grid)."""
    if kind == "reduced":
        return tuple(grid.h_axes)
    return tuple(grid.axes)


def point_values(grid: Grid, scheme: Any) -> bool:
    """Whether a density on ``grid`` solved with ``scheme`` holds point values at the nodes
    (spectral collocation) rather than cell averages (finite volumes)."""
    return grid.nodes == "spectral" or scheme == "spectral"


def cell_methods(axes: tuple[Axis, ...], point: bool) -> str:
    """CF ``cell_methods``: each axis' value is the mean over its cell, or the point value."""
    return " ".join(f"{a.name}: {'point' if point else 'mean'}" for a in axes)


def coordinate_attributes(name: str) -> dict[str, Any]:
    if name == "time":
        return {"long_name": "model time t", "units": "1", "comment": _TIME_COMMENT}
    if name == AGENT_DIM:
        return {"long_name": "agent index", "units": "1"}
    if name.endswith("_component"):
        return {"long_name": f"component of {name[:-len('_component')]}", "units": "1"}
    for stem, what in (("theta", "parameter θ"), ("h", "hyperparameter h")):
        if name == stem:
            return {"long_name": f"{what} (cell centre or node)", "units": "1"}
        if name.startswith(stem) and name[len(stem):].isdigit():
            return {"long_name": f"{what}, component {name[len(stem):]} (cell centre or node)",
                    "units": "1"}
    return {"long_name": name.replace("_", " "), "units": "1"}


def _float_attrs(long_name: str, **extra: Any) -> dict[str, Any]:
    return {"_FillValue": np.float64(FILL_VALUE), "long_name": long_name, "units": "1", **extra}


def static_variables(kind: str, grid: Grid | None, *, scheme: Any = None,
                     fitness: np.ndarray | None = None) -> list[VariableSpec]:
    """The variables a file holds before its first snapshot: the time coordinate, the grid's
    coordinates with their cell bounds, and (reduced runs) F̄ on the h-nodes."""
    out = [VariableSpec("time", ("time",), np.float64, coordinate_attributes("time"),
                        scale=True)]
    if not isinstance(grid, Grid):
        return out
    axes = axes_of(grid, kind)
    out.append(VariableSpec(BOUNDS_DIM, (BOUNDS_DIM,), np.float32, data=np.zeros(2, np.float32),
                            scale=True, dimension_only=True))
    for axis in axes:
        attrs = coordinate_attributes(axis.name)
        attrs["bounds"] = f"{axis.name}_bnds"
        out.append(VariableSpec(axis.name, (axis.name,), np.float64, attrs,
                                data=np.asarray(axis.centres, float), scale=True))
    for axis in axes:
        e = np.asarray(axis.edges, float)
        out.append(VariableSpec(f"{axis.name}_bnds", (axis.name, BOUNDS_DIM), np.float64,
                                data=np.stack([e[:-1], e[1:]], axis=1)))
    if kind == "reduced" and fitness is not None:
        out.append(VariableSpec(
            "effective_fitness", tuple(a.name for a in axes), np.float64,
            _float_attrs("fitness on h used by selection (F̄ or F̄_α)",
                         cell_methods=cell_methods(axes, True)),
            data=np.asarray(fitness, float)))
    return out


def layout_variables(kind: str, grid: Grid | None, shapes: dict[str, tuple[int, ...]], *,
                     scheme: Any = None, diagnostics: list[str] = (),
                     agent_fields: dict[str, Any] | None = None,
                     rng_width: int | None = None) -> list[VariableSpec]:
    """The variables that the first snapshot fixes: the state arrays of ``shapes``
    (per-snapshot shapes by name), the scalar diagnostics, the per-agent fields (name →
    dtype), the generator state as ``rng_width`` characters, and the index coordinates of
    agents and vector components."""
    out: list[VariableSpec] = []
    for name, inner in shapes.items():
        if name == "density":
            axes = axes_of(grid, kind)
            point = kind != "ensemble" and point_values(grid, scheme)
            out.append(VariableSpec(
                name, ("time", *[a.name for a in axes]), np.float64,
                _float_attrs(_DENSITY[kind], cell_methods=cell_methods(axes, point)),
                compress=True))
            continue
        which = name.split("_", 1)[1]  # particle_theta / particle_h
        dims = ["time", AGENT_DIM]
        if not any(s.name == AGENT_DIM for s in out):
            out.insert(0, VariableSpec(AGENT_DIM, (AGENT_DIM,), np.int64,
                                       coordinate_attributes(AGENT_DIM),
                                       data=np.arange(inner[0], dtype=np.int64), scale=True))
        if len(inner) == 2:
            comp = f"{which}_component"
            out.insert(0, VariableSpec(comp, (comp,), np.int64, coordinate_attributes(comp),
                                       data=np.arange(inner[1], dtype=np.int64), scale=True))
            dims.append(comp)
        out.append(VariableSpec(name, tuple(dims), np.float64,
                                _float_attrs(f"agents' {'θ' if which == 'theta' else 'h'}"),
                                compress=True))
    for name, dtype in (agent_fields or {}).items():
        dtype = np.dtype(dtype)
        attrs = _float_attrs(f"per-agent {name.replace('_', ' ')}") if dtype.kind == "f" \
            else {"long_name": f"per-agent {name.replace('_', ' ')}", "units": "1"}
        out.append(VariableSpec(name, ("time", AGENT_DIM), dtype, attrs, compress=True))
    for name in diagnostics:
        out.append(VariableSpec(name, ("time",), np.float64,
                                _float_attrs(_DIAGNOSTICS.get(name, name.replace("_", " ")))))
    if rng_width is not None:
        out.append(VariableSpec(RNG_DIM, (RNG_DIM,), np.float32,
                                data=np.zeros(rng_width, np.float32), scale=True,
                                dimension_only=True))
        out.append(VariableSpec("rng_state", ("time", RNG_DIM), "S1",
                                {"long_name": "JSON state of the random generator after this "
                                              "snapshot", "_Encoding": "utf-8"}))
    return out


def rng_width(state_json: str) -> int:
    """Characters reserved for a generator state: room for states twice as long as the first."""
    return max(256, 2 * len(state_json.encode()))


def check_agent_fields(agent_fields: Any, n_agents: int) -> dict[str, np.ndarray]:
    """Per-agent arrays (N,) by name, checked and copied (float64 or int64)."""
    if agent_fields is None:
        return {}
    if not isinstance(agent_fields, dict):
        raise TypeError(f"agent_fields must be a dict of name -> array of shape ({n_agents},), "
                        f"got {type(agent_fields).__name__}")
    out = {}
    taken = set(RESERVED_ATTRIBUTES) | set(STATE_VARIABLES) | set(_DIAGNOSTICS) | {
        "time", "theta", "h", AGENT_DIM, "rng_state", BOUNDS_DIM, RNG_DIM}
    for name, values in agent_fields.items():
        if not isinstance(name, str) or not name.isidentifier() or name in taken:
            raise ValueError(f"agent_fields name {name!r} is not usable: give a Python "
                             f"identifier that is not one of the file's own names "
                             f"({', '.join(sorted(taken & {'density', 'mass', 'time'}))}, ...)")
        arr = np.asarray(values)
        if arr.shape != (n_agents,):
            raise ValueError(f"agent_fields[{name!r}] has shape {arr.shape}; it needs one value "
                             f"per agent, shape ({n_agents},)")
        if arr.dtype.kind == "f":
            out[name] = np.array(arr, dtype=np.float64)
        elif arr.dtype.kind in "iu":
            out[name] = np.array(arr, dtype=np.int64)
        else:
            raise TypeError(f"agent_fields[{name!r}] has dtype {arr.dtype}; store floats or "
                            f"integers (e.g. .astype(np.int8) for booleans)")
    return out


def fitness_field(kind: str, grid: Grid | None, model: Any,
                  fitness: np.ndarray | None) -> np.ndarray | None:
    """The fitness behind the ``mean_fitness`` diagnostic: ``fitness`` checked against the
    grid (F on the grid for a joint run, F̄ on the h-nodes for a reduced one), or for a joint
    run without it F of the model on the grid; None when unknown."""
    if fitness is not None:
        arr = np.asarray(fitness, dtype=float)
        want = grid.shape if kind == "joint" else grid.h_shape if kind == "reduced" else None
        if want is not None and arr.shape != want:
            raise ValueError(f"fitness has shape {arr.shape}; a {kind} run needs {want}")
        return arr
    if kind == "joint" and model is not None and getattr(model, "fitness", None) is not None:
        return model.fitness_on(grid)
    return None


# -- diagnostics --------------------------------------------------------------------------------
def density_moments(fw: np.ndarray, coords: list[np.ndarray], names: list[str]) -> dict:
    """Mass, means, variances and covariances of a density from ``fw`` = f · (cell weights)
    on axes with centres ``coords``: mean_x = ∫ x f / ∫ f, var_x, cov_x_y (centred sums, one
    pass per marginal). Names follow the axes: mean_theta, var_h, cov_theta_h, …"""
    nd = fw.ndim
    mass = float(fw.sum())
    out: dict[str, float] = {"mass": mass}
    mu = []
    for k in range(nd):
        mk = fw.sum(axis=tuple(i for i in range(nd) if i != k)) if nd > 1 else fw
        m = float(mk @ coords[k]) / mass
        mu.append(m)
        out[f"mean_{names[k]}"] = m
        out[f"var_{names[k]}"] = float(mk @ (coords[k] - m) ** 2) / mass
    for a in range(nd):
        for b in range(a + 1, nd):
            others = tuple(i for i in range(nd) if i not in (a, b))
            mab = fw.sum(axis=others) if others else fw
            out[f"cov_{names[a]}_{names[b]}"] = \
                float((coords[a] - mu[a]) @ mab @ (coords[b] - mu[b])) / mass
    return out


class Diagnostics:
    """The scalar diagnostics stored with each snapshot of a run of ``kind`` on ``grid``.

    Densities: mass, means, variances, covariances over the axes (and ⟨F⟩ or ⟨F̄⟩ when the
    fitness on the grid is known); agents: means, variances and the θ–h covariance of their
    positions (1-D θ and h), and the mass of their histogram when there is one.
    """

    def __init__(self, kind: str, grid: Grid | None, fitness: np.ndarray | None = None):
        self.kind, self.grid, self.fitness = kind, grid, fitness
        if isinstance(grid, Grid):
            axes = axes_of(grid, kind)
            self.names = [a.name for a in axes]
            self.coords = [np.asarray(a.centres, float) for a in axes]
            self.weights = np.asarray(grid.h_weights if kind == "reduced" else grid.weights,
                                      float)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.weights))

    def __call__(self, fields: dict[str, np.ndarray]) -> dict[str, float]:
        if self.kind in ("joint", "reduced"):
            fw = fields["density"] * self.weights
            d = density_moments(fw, self.coords, self.names)
            if self.fitness is not None:
                d["mean_fitness"] = float((fw * self.fitness).sum()) / d["mass"]
            return d
        th, h = fields["particle_theta"], fields["particle_h"]
        d = {}
        if th.ndim == 1:
            d["mean_theta"], d["var_theta"] = float(th.mean()), float(th.var())
        if h.ndim == 1:
            d["mean_h"], d["var_h"] = float(h.mean()), float(h.var())
        if th.ndim == 1 and h.ndim == 1:
            d["cov_theta_h"] = float(np.mean((th - th.mean()) * (h - h.mean())))
        if "density" in fields and isinstance(self.grid, Grid):
            d["mass"] = float(self.grid.mass(fields["density"]))
        return d

    def histogram(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The agents' histogram density on the grid (cell averages; 1-D θ and h)."""
        return self.grid.histogram(theta, h)
