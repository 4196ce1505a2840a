"""Model quality, cross-validated beside baselines, peers and published anchors (``python -m training.quality``).

- `training.quality.experiment`: splits, our models, baselines and peers trained and measured; returns data.
- `training.quality.report` (tables, prose, ``report.md``) and `training.quality.charts` (``img/``): made from
  that data only.
- `training.quality.cli`: the command line, running one and then the other.
"""
