"""The TOML configuration of ``pde-popdyn run``: parsing, checking, and building the run.

A config names a built-in model (``preset = "..."`` with ``[params]``) or a model of your own
(``model = "package.module:function"`` or ``model = "path/to/file.py:function"``, a function
returning a :class:`pde_popdyn.Model`, called with the keyword arguments of ``[model_args]``;
a relative file path is taken from the config file's folder)::

    model = "mymodels.py:make_model"   # or preset = "quadratic-bilevel" with [params]
    name = "run1"                      # stem of the output files: run1.h5, run1.png, ...
    [model_args]                       # make_model(**model_args)
    temperature = 0.05
    [selection]                        # optional: replaces the model's selection rule
    rule = "BoltzmannJump"             # any rule class of pde_popdyn, by name ("none": off)
    rate = 2.0
    pressure = 3.0
    [mutation]                         # optional: replaces the model's mutation
    rule = "Diffusion"
    coefficient = 0.01
    [grid]
    theta = [-3.0, 3.0, 128]           # (low, high, cells); a list of them for several axes
    h = [-2.0, 2.0, 64]                # presets: n_theta = 128, n_h = 96 on their own box
    periodic = []                      # e.g. ["theta"]
    nodes = "cells"                    # "spectral" (the default with scheme = "spectral")
    [initial]                          # presets: their Gaussian
    mean = [-0.5, -1.0]                # a Gaussian N(mean, cov), cov a matrix or variances,
    cov = [0.04, 0.04]                 # or kind = "uniform", or
                                       # function = "module:function" (called with the grid
                                       # and [initial.args], returning an array)
    [run]
    t_final = 5.0
    dt = 0.02
    save_every = 2                     # steps between snapshots (default: about 100)
    splitting = "strang"               # "lie"
    integrator = "ap"                  # "split", "uniformisation"
    scheme = "fv"                      # "spectral"
    [output]
    figures = true
    animation = true                   # a GIF; "mp4" (needs ffmpeg); false

Every error names its key, e.g. ``[run] dt = -1: must be > 0``; an unknown key is an error.
Command-line options override the config (and are named as such in errors).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .presets import build

SPLITTINGS = ("strang", "lie", "exact")      # "exact": the first version's uniformisation
INTEGRATORS = ("ap", "split", "uniformisation")
SCHEMES = ("fv", "spectral")


@dataclass
class RunConfig:
    """The settings of ``pde-popdyn run`` (defaults: the built-in example)."""

    preset: str | None = None
    model: str | None = None
    name: str = "example"
    params: dict | None = None
    model_args: dict = field(default_factory=dict)
    selection: dict | None = None
    mutation: dict | None = None
    n_theta: int | None = None
    n_h: int | None = None
    theta: list | None = None
    h: list | None = None
    periodic: list = field(default_factory=list)
    nodes: str | None = None
    initial: dict | None = None
    t_final: float = 5.0
    dt: float = 0.02
    save_every: int | None = None
    splitting: str = "strang"
    integrator: str = "ap"
    scheme: str = "fv"
    figures: bool = True
    animation: bool | str = True
    base: Path = field(default_factory=Path.cwd)     # folder for relative file paths
    origin: dict = field(default_factory=dict)       # field -> how to name it in errors

    def where(self, name: str) -> str:
        """How a setting is named in messages: '[run] dt', or '--dt' after an override."""
        return self.origin.get(name, _DEFAULT_LABELS.get(name, name))

    @property
    def uses_preset(self) -> bool:
        return self.model is None


# section -> key -> (RunConfig field, type(s)); None: a free table (checked when it is used)
_SCHEMA: dict[str, dict[str, tuple[str, tuple[type, ...]]] | None] = {
    "": {"preset": ("preset", (str,)), "model": ("model", (str,)), "name": ("name", (str,))},
    "params": None, "model_args": None, "selection": None, "mutation": None,
    "grid": {"n_theta": ("n_theta", (int,)), "n_h": ("n_h", (int,)),
             "theta": ("theta", (list,)), "h": ("h", (list,)),
             "periodic": ("periodic", (list,)), "nodes": ("nodes", (str,))},
    "initial": {"kind": ("kind", (str,)), "mean": ("mean", (list,)), "cov": ("cov", (list,)),
                "function": ("function", (str,)), "args": ("args", (dict,))},
    "run": {"t_final": ("t_final", (int, float)), "dt": ("dt", (int, float)),
            "save_every": ("save_every", (int,)), "splitting": ("splitting", (str,)),
            "integrator": ("integrator", (str,)), "scheme": ("scheme", (str,))},
    "output": {"figures": ("figures", (bool,)), "animation": ("animation", (bool, str))},
}
_DEFAULT_LABELS = {f: (f"[{sec}] {key}" if sec else key)
                   for sec, table in _SCHEMA.items() if table for key, (f, _) in table.items()}
_DEFAULT_LABELS.update({"params": "[params]", "model_args": "[model_args]",
                        "selection": "[selection]", "mutation": "[mutation]",
                        "initial": "[initial]"})


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run config; an unknown section or key is a ValueError naming it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not valid TOML: {exc}") from None
    return config_from_dict(raw, source=str(p), base=p.resolve().parent)


def config_from_dict(raw: dict[str, Any], source: str = "config",
                     base: Path | None = None) -> RunConfig:
    """A checked :class:`RunConfig` from a parsed TOML table (see the module docstring)."""
    cfg = RunConfig(base=base or Path.cwd())
    try:
        for key, value in raw.items():
            if isinstance(value, dict):
                _section(cfg, key, value)
            else:
                _set(cfg, "", key, value)
        check(cfg)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return cfg


def _section(cfg: RunConfig, name: str, table: dict) -> None:
    if name not in _SCHEMA or name == "":
        names = ", ".join(f"[{s}]" for s in sorted(_SCHEMA) if s)
        raise ValueError(f"[{name}]: unknown section; the sections are {names}")
    if _SCHEMA[name] is None:
        setattr(cfg, name, dict(table))
    elif name == "initial":
        for key, v in table.items():
            _set(cfg, name, key, v, store=False)
        cfg.initial = dict(table)
    else:
        for key, v in table.items():
            _set(cfg, name, key, v)


def _set(cfg: RunConfig, section: str, key: str, value: Any, store: bool = True) -> None:
    table = _SCHEMA[section]
    label = f"[{section}] {key}" if section else key
    if key not in table:
        where = f"in [{section}]" if section else "at the top level"
        raise ValueError(f"{label}: unknown key; the keys {where} are "
                         f"{', '.join(sorted(table))}")
    name, types = table[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ValueError(f"{label} = {value!r}: must be of type "
                         f"{' or '.join(t.__name__ for t in types)}")
    if store:
        setattr(cfg, name, value)


def _bad(cfg: RunConfig, name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{cfg.where(name)} = {value!r}: {why}")


def check(cfg: RunConfig) -> None:
    """Check every setting on its own (the model, grid and f0 are checked when built)."""
    if cfg.preset is not None and cfg.model is not None:
        raise ValueError(f"preset = {cfg.preset!r} and model = {cfg.model!r}: give one of them")
    if cfg.model is None:
        if cfg.model_args:
            raise ValueError("[model_args]: sets the arguments of model = 'module:function'; "
                             "a preset takes its parameters from [params]")
        cfg.preset = cfg.preset or "quadratic-bilevel"
        try:
            build(cfg.preset, cfg.params)   # names an unknown preset or parameter
        except ValueError as exc:
            raise ValueError(f"{'[params]: ' if cfg.params else ''}{exc}") from None
    elif cfg.params:
        raise ValueError("[params]: sets a preset's parameters; the arguments of model = ... "
                         "go in [model_args]")
    t = cfg.t_final
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
        raise _bad(cfg, "t_final", t, "must be a finite number >= 0")
    if not (isinstance(cfg.dt, (int, float)) and math.isfinite(cfg.dt) and cfg.dt > 0):
        raise _bad(cfg, "dt", cfg.dt, "must be > 0")
    if cfg.save_every is not None and (not isinstance(cfg.save_every, int)
                                       or cfg.save_every < 1):
        raise _bad(cfg, "save_every", cfg.save_every, "must be a positive integer")
    for name, options in (("splitting", SPLITTINGS), ("integrator", INTEGRATORS),
                          ("scheme", SCHEMES)):
        if getattr(cfg, name) not in options:
            raise _bad(cfg, name, getattr(cfg, name), f"must be one of {', '.join(options)}")
    for name in ("n_theta", "n_h"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 3):
            raise _bad(cfg, name, v, "must be an integer >= 3")
    if cfg.nodes is not None and cfg.nodes not in ("cells", "spectral"):
        raise _bad(cfg, "nodes", cfg.nodes, "must be 'cells' or 'spectral'")
    if not all(isinstance(p, str) for p in cfg.periodic):
        raise _bad(cfg, "periodic", cfg.periodic, "must be a list of axis names")
    if isinstance(cfg.animation, str):
        if cfg.animation not in ("gif", "mp4"):
            raise _bad(cfg, "animation", cfg.animation, "must be true, false, 'gif' or 'mp4'")
        if cfg.animation == "mp4" and cfg.figures:
            from .plot import ffmpeg_available
            if not ffmpeg_available():
                raise _bad(cfg, "animation", "mp4", "needs the ffmpeg program, which is not "
                           "installed (apt install ffmpeg, or pip install "
                           "\"pde_popdyn[animation]\"); use 'gif'")
    for name in ("selection", "mutation"):
        table = getattr(cfg, name)
        if table is not None and not isinstance(table.get("rule"), str):
            raise ValueError(f"[{name}] rule = {table.get('rule')!r}: give the rule's class "
                             f"name, e.g. rule = \"{'Replicator' if name == 'selection' else 'Diffusion'}\""
                             f" (or \"none\")")
    init = cfg.initial or {}
    kind = init.get("kind")
    if kind is not None and kind not in ("gaussian", "uniform", "function", "preset"):
        raise ValueError(f"[initial] kind = {kind!r}: must be 'gaussian', 'uniform', "
                         f"'function' or 'preset'")


# -- callables named in a config -----------------------------------------------------------
def load_callable(spec: str, label: str, base: Path) -> Callable:
    """``"package.module:function"`` or ``"path/to/file.py:function"`` (relative to ``base``)
    as the callable it names; errors name ``label``, the config key."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"{label} = {spec!r}: expected 'package.module:function' or "
                         f"'path/to/file.py:function'")
    where, attr = spec.split(":")
    if where.endswith(".py"):
        path = Path(where) if Path(where).is_absolute() else base / where
        if not path.is_file():
            raise ValueError(f"{label} = {spec!r}: the file {path} does not exist")
        mod_name = f"_pde_popdyn_config_{abs(hash(str(path.resolve())))}"
        spec_ = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[mod_name] = module   # dataclasses and pickling look modules up here
        try:
            spec_.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[mod_name]
            raise ValueError(f"{label} = {spec!r}: importing {path} failed: "
                             f"{type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ValueError(f"{label} = {spec!r}: cannot import {where!r} ({exc}); give an "
                             f"importable module or a path ending in .py") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{label} = {spec!r}: {where} has no function {attr!r}")
    return fn


def _call(fn: Callable, kwargs: dict, label: str, what: str, args: tuple = ()) -> Any:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{label}: {what} does not take these arguments ({exc})") from None
    except ValueError:   # no signature (a builtin): let the call say it
        pass
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{label}: {what}: {exc}") from None
    except Exception as exc:      # the user's function failed otherwise: one line, no traceback
        raise ValueError(f"{label}: {what} raised {type(exc).__name__}: {exc}") from None


# -- rules by name ---------------------------------------------------------------------------
_NOT_RULES = {"Grid", "Model", "Solution", "Ensemble", "SweepResult", "ConvergenceStudy"}


def rule_classes(kind: type | None = None) -> dict[str, type]:
    """The public rule classes of pde_popdyn, by name: every selection and mutation rule it
    exports (``kind``: only the subclasses of that base), so that rules added later are found
    too."""
    import pde_popdyn
    from .rules.base import MutationRule, SelectionRule
    bases = (kind,) if kind is not None else (SelectionRule, MutationRule)
    return {n: c for n in pde_popdyn.__all__
            if inspect.isclass(c := getattr(pde_popdyn, n, None)) and n not in _NOT_RULES
            and issubclass(c, bases)}


def make_rule(table: dict, section: str) -> Any:
    """The rule ``[section] rule = "Name"`` with the table's other keys as its arguments;
    ``rule = "none"`` turns it off (None)."""
    args = {k: v for k, v in table.items() if k != "rule"}
    name = table["rule"]
    if name.lower() in ("none", "off"):
        if args:
            raise ValueError(f"[{section}] rule = {name!r} takes no arguments, got "
                             f"{', '.join(args)}")
        return None
    from .rules.base import MutationRule, SelectionRule
    kind = {"selection": SelectionRule, "mutation": MutationRule}.get(section)
    classes = rule_classes(kind)
    if name not in classes:
        raise ValueError(f"[{section}] rule = {name!r}: not a {section} rule of pde_popdyn; "
                         f"they are {', '.join(sorted(classes))} (or \"none\")")
    shown = ", ".join(f"{k} = {v!r}" for k, v in args.items())
    return _call(classes[name], args, f"[{section}] rule = {name!r}" + (
        f" with {shown}" if shown else ""), name)


def with_rules(model, *, selection=..., mutation=...):
    """A copy of ``model`` with its selection and/or mutation replaced, re-checked by the
    Model constructor (every constructor argument is read back from the model)."""
    from .model import Model
    params = inspect.signature(Model.__init__).parameters
    kwargs = {n: getattr(model, n) for n in params if n != "self" and hasattr(model, n)}
    if selection is not ...:
        kwargs["selection"] = selection
    if mutation is not ...:
        kwargs["mutation"] = mutation
    return Model(**kwargs)


# -- building the run ------------------------------------------------------------------------
@dataclass
class Run:
    """What a config builds: the model, grid, initial density, and the preset problem when
    its closed-form theory applies to this run (else None)."""

    model: Any
    grid: Any
    f0: np.ndarray
    problem: Any
    label: str
    initial: str


def build_run(cfg: RunConfig) -> Run:
    """Model, grid and f0 of a config; every error names the key it comes from."""
    from .model import Model
    prob = build(cfg.preset, cfg.params) if cfg.uses_preset else None
    if prob is not None:
        model, label = prob.model(), cfg.preset
    else:
        fn = load_callable(cfg.model, "model", cfg.base)
        model = _call(fn, cfg.model_args, f"model = {cfg.model!r} with [model_args]",
                      f"{getattr(fn, '__name__', 'the function')}()")
        if not isinstance(model, Model):
            raise ValueError(f"model = {cfg.model!r}: returned {type(model).__name__}, not a "
                             f"pp.Model")
        label = cfg.model
    theory = prob is not None and getattr(prob, "has_theory", True)
    changes = {}
    for name in ("selection", "mutation"):
        table = getattr(cfg, name)
        if table is not None:
            changes[name] = make_rule(table, name)
    if changes:
        try:
            model = with_rules(model, **changes)
        except (ValueError, TypeError) as exc:
            keys = " and ".join(f"[{k}] rule = {getattr(cfg, k)['rule']!r}" for k in changes)
            raise ValueError(f"{keys}: {exc}") from None
        theory = False     # the preset's closed forms assume its own rules
    grid = _grid(cfg, prob)
    f0, initial = _initial(cfg, prob, grid)
    if cfg.initial and cfg.initial.get("kind", "preset" if prob else None) != "preset":
        theory = False     # ... and its own initial Gaussian
    return Run(model, grid, f0, prob if theory else None, label, initial)


def _axis_list(spec: Any, name: str, cells: int | None, cfg: RunConfig) -> Any:
    """``[low, high, cells]`` (or ``[low, high]`` with ``n_theta``/``n_h``), or a list of them."""
    label = cfg.where(name)
    several = bool(spec) and all(isinstance(s, list) for s in spec)
    if several:
        if cells is not None:
            raise ValueError(f"{cfg.where('n_' + name)} = {cells}: sets the cells of a single "
                             f"{name}-axis; {label} has {len(spec)} axes: give each its cells")
        return [tuple(s) for s in spec]
    spec = list(spec)
    if len(spec) == 2 and cells is not None:
        spec = spec + [cells]
    elif len(spec) == 3 and cells is not None:
        spec[2] = cells
    if len(spec) != 3:
        raise ValueError(f"{label} = {spec!r}: give [low, high, cells] (or [low, high] and "
                         f"n_{name})")
    return tuple(spec)


def _grid(cfg: RunConfig, prob) -> Any:
    from .grid import Grid
    if prob is not None:
        theta = cfg.theta if cfg.theta is not None else list(prob.theta_box)
        h = cfg.h if cfg.h is not None else list(prob.h_box)
        n_theta = cfg.n_theta if cfg.n_theta is not None else (None if cfg.theta else 128)
        n_h = cfg.n_h if cfg.n_h is not None else (None if cfg.h else 96)
    else:
        missing = [k for k in ("theta", "h") if getattr(cfg, k) is None]
        if missing:
            raise ValueError(f"[grid] {' and '.join(missing)}: required with model = ... "
                             f"(e.g. theta = [-3.0, 3.0, 128] and h = [-2.0, 2.0, 64])")
        theta, h, n_theta, n_h = cfg.theta, cfg.h, cfg.n_theta, cfg.n_h
    theta = _axis_list(theta, "theta", n_theta, cfg)
    h = _axis_list(h, "h", n_h, cfg)
    nodes = cfg.nodes
    if nodes is None:
        nodes = "spectral" if cfg.scheme == "spectral" and not any(
            p.startswith("theta") for p in cfg.periodic) else "cells"
    try:
        return Grid(theta=theta, h=h, periodic=tuple(cfg.periodic), nodes=nodes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"[grid] theta = {list(theta)!r}, h = {list(h)!r}: {exc}") from None


def _initial(cfg: RunConfig, prob, grid) -> tuple[np.ndarray, str]:
    from .densities import gaussian, uniform
    init = dict(cfg.initial or {})
    kind = init.pop("kind", None)
    if kind is None:
        kind = ("function" if "function" in init else "gaussian" if "mean" in init
                else "preset" if prob is not None else "uniform")
    allowed = {"gaussian": {"mean", "cov"}, "function": {"function", "args"},
               "uniform": set(), "preset": set()}[kind]
    extra = sorted(set(init) - allowed)
    if extra:
        raise ValueError(f"[initial] kind = {kind!r}: does not take {', '.join(extra)}")
    if kind == "preset":
        if prob is None:
            raise ValueError("[initial] kind = 'preset': needs preset = ...; give mean and cov, "
                             "or a function")
        return prob.initial(grid), prob.describe_initial()
    if kind == "uniform":
        return uniform(grid), "uniform"
    if kind == "gaussian":
        missing = [k for k in ("mean", "cov") if k not in init]
        if missing:
            raise ValueError(f"[initial] {' and '.join(missing)}: required for a Gaussian")
        try:
            f0 = gaussian(grid, init["mean"], init["cov"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"[initial] mean = {init['mean']!r}, cov = {init['cov']!r}: "
                             f"{exc}") from None
        return f0, f"Gaussian, mean {init['mean']}"
    fn = load_callable(init.get("function"), "[initial] function", cfg.base)
    f0 = _call(fn, dict(init.get("args", {})), f"[initial] function = {init['function']!r}",
               f"{getattr(fn, '__name__', 'the function')}()", args=(grid,))
    from ._validate import density_array
    try:
        f0 = density_array("f0", f0, grid.shape)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"[initial] function = {init['function']!r}: {exc}") from None
    return f0, f"from {init['function']}"
