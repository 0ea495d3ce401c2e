"""Reports of a flow run: the energy model and report.md / report.json / plots."""
