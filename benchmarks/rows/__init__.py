"""The rows of benchmarks/speed.py, one module per row family. Each module has ROWS (row name →
function(args, device) → list[harness.Result]) and, where its rows take options of their own,
add_options(parser)."""
