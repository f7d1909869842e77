"""Code that the tests and benchmarks share, and the test camera; the library never imports it.

    stand_in_weights.py  det_fill: deterministic weights from a state dict's key names and shapes
    box_matching.py      two detection lists compared as sets of boxes (a one-to-one matching)
    mjpeg_server.py      a paced MJPEG camera on 127.0.0.1 (`python -m support.mjpeg_server clip.mp4`)

tests/test_import_rules.py checks that utils/, models/, FlowNet2_src/ and the entry scripts
import nothing from here.
"""
