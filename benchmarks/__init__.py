"""Benchmarks: scripts that measure speed, memory and precision and print figures (never tests).

    python -m benchmarks.speed ...       speed of the pipeline's stages (rows/, one module per row family)
    python -m benchmarks.precision ...   what fp16 / bf16 do to the flow and the detections
    python -m benchmarks.main_job ...    wall time, peak memory and AUROC of the README's main job
    python -m benchmarks.mmdet_parity    this project's Cascade R-CNN against MMDetection's

harness.py times (shared by all), synthetic.py makes their inputs, networks.py gives the
networks stand-in weights.
"""
