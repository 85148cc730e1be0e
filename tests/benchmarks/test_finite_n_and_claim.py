"""The finite-N and claim studies run end to end on their ``--quick`` settings."""

import json

import numpy as np


def test_finite_n_study_quick(tmp_path):
    from benchmarks import study_finite_n as study
    out = study.run(True, tmp_path)
    data = json.loads((tmp_path / "finite_n.json").read_text())
    assert (tmp_path / "finite_n.png").stat().st_size > 0
    assert isinstance(out["passed"], bool) and "α=3 copy-h lag" in out["headline"]
    rows = data["map"]["gaussian"]
    cfg = study.CONFIG["quick"]
    assert set(rows) == set(cfg["rules"])
    for name, row in rows.items():
        assert len(row["per_N"]) == len(cfg["N"])
        for r in row["per_N"]:
            # the worst ratio is the maximum over t > 0 of the per-time ratio
            assert r["worst"] == max(r["ratio"][1:])
            assert r["verdict"] in ("trust", "caution", "do not trust")
    # the replicator's reference PDE agrees with the closed form to grid accuracy
    ex = rows["replicator"]["exact_minus_pde"]
    assert max(abs(x) for x in ex["mean_h"]) < 5e-3
    # strong selection: founders are lost faster than under the replicator
    anc = {k: rows[k]["per_N"][-1]["ancestors"][-1] for k in ("replicator", "boltzmann a=3")}
    assert anc["boltzmann a=3"] < anc["replicator"]
    an = data["anatomy"]
    assert len(an["n_sweep"]) == len(cfg["anatomy"]["N"])
    assert all(m["bias_mean_h"][-1] < 0 for m in an["matched"])          # the lag
    assert np.all(np.array(an["donor_weights"]["kappa_w"]) >= 1.0)        # E ω² ≥ (E ω)²


def test_claim_study_quick(tmp_path):
    from benchmarks import study_claim as study
    out = study.run(True, tmp_path)
    data = json.loads((tmp_path / "claim.json").read_text())
    assert (tmp_path / "claim.png").stat().st_size > 0
    assert out["passed"] is True
    cell = data["cells"]["boltzmann 1000"]
    inst, eff = cell["instantaneous"], cell["effective"]
    # strong pressure: on every seed the effective run ends closer to h* than any instantaneous
    assert max(eff["per_seed_at_horizons"][-1]) < min(inst["per_seed_at_horizons"][-1])
    # the reduced equations order the two modes the same way
    assert cell["reduced_effective"]["regret_at_horizons"][-1] < \
        cell["reduced_instantaneous"]["regret_at_horizons"][-1]
    assert cell["argmax_fbar_alpha"] > 0.5
    assert set(data["winners"]) == set(data["cells"])
    # the regret is non-negative: h* maximises F̄
    for c in data["cells"].values():
        for mode in study.CONFIG["quick"]["modes"]:
            assert min(c[mode]["regret_min"]) >= 0
