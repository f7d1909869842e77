"""What fp16 / bf16 do to FlowNet2's flow and Cascade R-CNN's detections, against fp32, on the golden inputs.

    python -m benchmarks.precision [--device cpu|cuda]      (or python benchmarks/precision.py ...)

For each reduced precision torch.autocast supports on the device (CPU: bf16, and fp16 where
supported; CUDA: fp16, bf16) the networks run exactly as the pipeline runs them with
`flow_precision` / `detector_precision` set (utils/infra/precision.py: autocast around the network,
float32 out), on the inputs and weights of the parity tests:

- FlowNet2 on tests/data/flownet2_forward.npz's input pair (det_fill weights, as
  tests/test_flownet2.py): end-point error (EPE, pixels) of the flow against the fp32 flow
  on the same device, mean and max over pixels, and the fp32 flow's mean magnitude for scale;
- Cascade R-CNN on tests/data/cascade_rcnn.npz's input (det_fill weights, score_thr 0, as
  tests/test_cascade_rcnn.py): detections matched one to one to the fp32 detections (linear
  assignment on IoU, same label, IoU >= 0.5, support/box_matching.py), mean / min IoU of the
  pairs, max box and score differences of the pairs, boxes left unmatched on either side;
  end to end, then the RPN's proposals alone, then the cascade alone on fp32 features and
  proposals (which part of the difference comes from where).

The det_fill weights are stand-ins (no checkpoint is needed), so these figures show the size
of the rounding, not a quality loss on real frames. TF32 is turned off, so fp32 is true fp32.
Needs only torch, torchvision, numpy and scipy (no pytest).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/precision.py`: import from the repository's root, as `-m` does
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.harness import timed  # noqa: E402
from benchmarks.networks import usable_precisions, with_stand_in_weights  # noqa: E402
from FlowNet2_src import FlowNet2  # noqa: E402
from models import CascadeRCNN  # noqa: E402
from support.box_matching import match_boxes  # noqa: E402
from utils.infra.precision import autocast  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"  # the parity tests' golden inputs
MATCH_IOU = 0.5


@torch.inference_mode()
def flownet2_figures(device: torch.device, precisions: list[str]) -> list[dict]:
    model = with_stand_in_weights(FlowNet2(), device)
    inputs = torch.from_numpy(np.load(DATA / "flownet2_forward.npz")["inputs"]).to(device)
    reference = model(inputs).float()
    rows = []
    for precision in precisions:
        flows = []

        def run() -> None:
            with autocast(precision, device):
                flows.append(model(inputs).float())

        seconds = timed(run, device)
        flow = flows[0]
        epe = torch.linalg.vector_norm(flow - reference, dim=1)  # (B, H, W) pixels
        rows.append({"precision": precision, "finite": bool(torch.isfinite(flow).all()),
                     "epe_mean": epe.mean().item(), "epe_max": epe.max().item(),
                     "magnitude": torch.linalg.vector_norm(reference, dim=1).mean().item(),
                     "seconds": seconds})
    return rows


@torch.inference_mode()
def cascade_figures(device: torch.device, precisions: list[str]) -> list[dict]:
    golden = np.load(DATA / "cascade_rcnn.npz")
    img_shape = tuple(golden["img_shape"].tolist())
    scale_factor = tuple(golden["scale_factor"].tolist())
    model = with_stand_in_weights(CascadeRCNN(), device)
    inputs = torch.from_numpy(golden["inputs"]).to(device)

    def numpy(*tensors: torch.Tensor) -> list[np.ndarray]:
        return [t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy() for t in tensors]

    def end_to_end(precision: str) -> list[np.ndarray]:
        with autocast(precision, device):  # as CascadeRCNNDetector runs it
            feats = model.extract_feat(inputs)
            return numpy(*model.detect(inputs, img_shape, scale_factor, 0.0, feats=feats))

    def proposals(precision: str) -> list[np.ndarray]:
        with autocast(precision, device):
            return numpy(*model.proposals_with_scores(model.extract_feat(inputs), img_shape)) + [None]

    with torch.inference_mode():
        ref_feats = model.extract_feat(inputs)
        ref_proposals = model.proposals(ref_feats, img_shape)

    def heads(precision: str) -> list[np.ndarray]:
        with autocast(precision, device):  # the cascade alone, on fp32 features and proposals
            return numpy(*model.roi_head.predict(ref_feats, ref_proposals, img_shape, scale_factor, 0.0))

    rows = []
    for scope, run in (("end to end", end_to_end), ("RPN proposals", proposals), ("cascade on fp32 proposals", heads)):
        ref_boxes, ref_scores, ref_labels = run("fp32")
        for precision in precisions:
            rows.append(compare(scope, precision, run, ref_boxes, ref_scores, ref_labels, device))
    return rows


def compare(scope: str, precision: str, run, ref_boxes, ref_scores, ref_labels, device: torch.device) -> dict:
    """`run(precision)`'s boxes matched one to one to the fp32 ones (labels compared where there are any)."""
    outputs = []
    seconds = timed(lambda: outputs.append(run(precision)), device)
    boxes, scores, labels = outputs[0]
    m = match_boxes(boxes, ref_boxes, scores, ref_scores, labels, ref_labels, min_iou=MATCH_IOU, score_atol=1.0)
    return {"scope": scope, "precision": precision, "n": len(boxes), "n_ref": len(ref_boxes), "pairs": len(m.actual),
            "iou_mean": float(m.ious.mean()) if len(m.ious) else float("nan"),
            "iou_min": float(m.ious.min()) if len(m.ious) else float("nan"),
            "box_diff": m.max_box_diff, "score_diff": m.max_score_diff,
            "unmatched": (len(m.unmatched_actual), len(m.unmatched_expected)),
            "finite": bool(np.isfinite(boxes).all() and np.isfinite(scores).all()), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"torch {torch.__version__}, {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} threads") + "; TF32 off")
    precisions = usable_precisions(["fp16", "bf16"], device)
    if not precisions:
        print("error: no reduced precision is supported by torch.autocast on this device", file=sys.stderr)
        return 2

    print("\nFlowNet2, golden pair (1 x 128x192, det_fill weights): flow against fp32 on the same device")
    print(f"{'precision':<10}{'EPE mean px':>12}{'EPE max px':>12}{'|flow| mean':>13}{'finite':>8}{'s':>7}")
    for r in flownet2_figures(device, precisions):
        print(f"{r['precision']:<10}{r['epe_mean']:>12.4f}{r['epe_max']:>12.4f}{r['magnitude']:>13.3f}"
              f"{str(r['finite']):>8}{r['seconds']:>7.1f}")

    print(f"\nCascade R-CNN, golden frame (384x256 input, det_fill weights, score_thr 0): detections against fp32 "
          f"(one-to-one, same label, IoU >= {MATCH_IOU})")
    print(f"{'what':<27}{'precision':<10}{'boxes':>6}{'fp32':>6}{'pairs':>7}{'IoU mean':>10}{'IoU min':>9}"
          f"{'box px':>8}{'score':>9}{'unmatched (this/fp32)':>23}{'finite':>8}{'s':>7}")
    for r in cascade_figures(device, precisions):
        unmatched = f"{r['unmatched'][0]}/{r['unmatched'][1]}"
        print(f"{r['scope']:<27}{r['precision']:<10}{r['n']:>6}{r['n_ref']:>6}{r['pairs']:>7}{r['iou_mean']:>10.4f}"
              f"{r['iou_min']:>9.4f}{r['box_diff']:>8.2f}{r['score_diff']:>9.4f}{unmatched:>23}"
              f"{str(r['finite']):>8}{r['seconds']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
