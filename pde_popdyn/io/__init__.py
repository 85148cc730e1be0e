"""Snapshot files: the file format of pde_popdyn, written as a run goes and read back.

This package holds the format only. It knows nothing of solvers: :func:`pde_popdyn.load`
turns what :func:`read` returns into a :class:`~pde_popdyn.Solution` or
:class:`~pde_popdyn.Ensemble`, and :mod:`pde_popdyn.resume` continues a stored run.

File layout (``format = "pde_popdyn snapshots"``, ``format_version = 2``)
-------------------------------------------------------------------------
A snapshot file is a netCDF-4 file (HDF5 with dimension scales) that follows the CF
conventions (``Conventions = "CF-1.8"``), so ``xarray.open_dataset(path,
engine="h5netcdf")`` and CF tools see named dimensions, coordinates and their cell bounds.

Coordinates, each with ``long_name`` and ``units``:

* ``time`` (time): the saved times, extensible. The model's time is dimensionless and has no
  calendar, so it is not a CF *time* coordinate (which needs ``"<unit> since <date>"``): it
  is an ordinary coordinate with ``units = "1"``, no ``axis = "T"``, and a ``comment`` saying
  so; xarray keeps it as plain floats.
* ``theta`` and ``h`` (or ``theta1``, ``theta2``, ``h1``, … with several axes): the grid's
  nodes, each with ``bounds = "<axis>_bnds"``, a (cells, 2) variable of its cell ends along the
  dimension ``bnds`` (for Chebyshev nodes: the ends and the midpoints between nodes).
* ``agent`` and ``theta_component``/``h_component`` (ensembles): integer indices.

Variables along ``time`` (extensible, the state chunked one snapshot per chunk and
compressed; every floating-point variable declares ``_FillValue = NaN``):

* ``kind = "joint"``: ``density`` (time, theta, h), f(t, θ, h);
* ``kind = "reduced"``: ``density`` (time, h), ρ(t, h), and ``effective_fitness`` (h), the
  F̄ its selection used;
* ``kind = "ensemble"``: ``particle_theta`` (time, agent[, theta_component]) and
  ``particle_h`` (time, agent[, h_component]), the agents' positions; optionally ``density``
  (time, theta, h), their histogram on the grid; and any per-agent fields given to
  :meth:`SnapshotWriter.write` (``agent_fields={"fitness": ..., "parent": ...}``), each a
  (time, agent) variable of floats or integers, named in the root attribute ``agent_fields``;
* diagnostics, 1-D along ``time``, named in the root attribute ``diagnostics``: ``mass``,
  ``mean_theta``, ``mean_h``, ``var_theta``, ``var_h``, ``cov_theta_h``, ``mean_fitness`` (⟨F⟩,
  or ⟨F̄⟩ for a reduced run), those that apply, and any given to :meth:`SnapshotWriter.write`;
* ``rng_state`` (time, rng_chars): the JSON state of the random generator after each
  snapshot, as characters.

A density's ``cell_methods`` says what its numbers are: ``"theta: mean h: mean"`` for the cell
averages of finite volumes (and for histograms), ``"theta: point h: point"`` for the point
values of spectral collocation (``Grid(nodes="spectral")`` or ``scheme="spectral"``).

Root attributes: ``format``, ``format_version``, ``kind``, ``title``, ``Conventions``,
``status`` ("running", "complete", "interrupted", "failed", "killed"),
``pde_popdyn_version``, ``created``, ``closed``, ``history``, ``grid``, ``model``
(``Model.describe()``: callables only by name), ``preset`` (``{"name", "params"}`` when the
model came from a preset, so that it can be rebuilt), ``seed``, ``rng_state_initial``, and the
run's settings such as ``scheme``, ``splitting``, ``dt``, ``save_every``, ``run_seconds``,
``t_final``, ``n_steps``. Values that netCDF cannot store natively (None, booleans, lists,
dicts) are JSON strings, listed in the attribute ``json_attributes``. The host name and
process id of the writer (``writer_host``, ``writer_pid``) are stored only with
``SnapshotWriter(record_process=True)``.

Format version 1 (files written before this layout) had no cell bounds, ``cell_methods``
or ``_FillValue``, declared ``time`` with ``axis = "T"``, stored ``rng_state`` as
fixed-length strings and always recorded the writer's host and process; it is still read.

Crash safety
------------
The file is written in HDF5's single-writer/multiple-reader (SWMR) mode and each snapshot is
committed in two flushes, first its data and then its time, so a run killed at any moment
(even by SIGKILL) leaves every snapshot committed before it. Such a file still carries HDF5's
"open for writing" flag: :func:`read` reads it anyway (also while the run is still going),
resuming clears it, and :func:`repair` clears it for other programs. A ``KeyboardInterrupt``
or other exception closes the file cleanly with ``status="interrupted"``.

Hooking a solver in
-------------------
The writer is an ``observers`` callable of :func:`pde_popdyn.splitting.integrate`::

    writer = SnapshotWriter(output, kind="reduced", grid=grid, model=model,
                            overwrite=overwrite, attrs=run_attributes("reduced", info))
    try:
        integrate(step, rho0, schedule, observers=[writer])
    except BaseException:
        writer.close(status="interrupted")
        raise
    writer.finish(**closing_attributes(t, info))

``writer(t, f)`` takes f of shape ``grid.shape`` (joint) or ``grid.h_shape`` (reduced). For
particles, ``SnapshotWriter(path, kind="ensemble", grid=grid or None, rng=generator,
seed=seed, histogram=True)`` and ``writer.write(t, theta=..., h=..., diagnostics={...},
agent_fields={...})``. The generator's state is stored with each snapshot, so a resumed
particle run continues the same random stream.

Reading
-------
:func:`read` gives a :class:`SnapshotRecord` (plain arrays and attributes);
:func:`to_dataset` gives the ``xarray.Dataset`` of a record and :func:`open_dataset` a lazy
one of a file; :func:`inspect` summarises a file.
"""

from .convert import (ensemble_record, solution_record, write_ensemble, write_record,
                      write_solution)
from .dataset import open_dataset, to_dataset
from .files import OutputExistsError, check_writable
from .inspection import inspect
from .reader import EnsembleRecord, SnapshotRecord, read, read_attributes
from .recovery import repair
from .schema import (FORMAT, FORMAT_VERSION, KINDS, RUNTIME_ATTRIBUTES, SnapshotFileError,
                     closing_attributes, density_moments, run_attributes)
from .writer import SnapshotWriter

__all__ = ["SnapshotWriter", "SnapshotFileError", "OutputExistsError", "SnapshotRecord",
           "EnsembleRecord", "read", "read_attributes", "inspect", "repair", "check_writable", "write_solution",
           "write_ensemble", "write_record", "solution_record", "ensemble_record",
           "to_dataset", "open_dataset", "density_moments", "run_attributes",
           "closing_attributes", "FORMAT", "FORMAT_VERSION", "KINDS", "RUNTIME_ATTRIBUTES"]
