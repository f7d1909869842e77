"""Print how far this machine's float32 results lie from the golden vectors (not a test).

Run it under the settings whose noise the parity tests must tolerate, e.g.

    python -m tests.noise_report
    ONEDNN_MAX_CPU_ISA=AVX2 python -m tests.noise_report
    OMP_NUM_THREADS=1 python -m tests.noise_report
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python -m tests.noise_report

and compare the figures; the tolerances in the parity tests are set from them.
"""
import os
from pathlib import Path

import numpy as np
import torch

from support.box_matching import match_boxes
from support.stand_in_weights import det_fill

DATA = Path(__file__).parent / "data"


def rel(actual, expected):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    diff = np.abs(actual.astype(np.float64) - expected)
    return f"max|d| {diff.max():.3e}  /max|g| {diff.max() / np.abs(expected).max():.3e}"


def cascade():
    from models.cascade_rcnn import CascadeRCNN, decode_deltas
    from models.cascade_rcnn.roi_heads import STAGE_STDS
    from utils.foreground import CascadeRCNNDetector

    g = np.load(DATA / "cascade_rcnn.npz")
    img_shape, scale_factor = tuple(g["img_shape"].tolist()), tuple(g["scale_factor"].tolist())
    model = CascadeRCNN()
    model.load_state_dict(det_fill(model.state_dict()))
    model.eval()
    golden_feats = [torch.from_numpy(g[f"neck_p{i}"]) for i in range(2, 7)]
    with torch.no_grad():
        feats = model.extract_feat(torch.from_numpy(g["inputs"]))
        for i, f in zip(range(2, 7), feats):
            print(f"  FPN p{i}: {rel(f, g[f'neck_p{i}'])}")
        cls, reg = model.rpn(golden_feats)
        print("  RPN head on golden P2-P6: cls", max((rel(c, g[f"rpn_cls_p{i}"]) for i, c in zip(range(2, 7), cls))),
              "| reg", max(rel(r, g[f"rpn_reg_p{i}"]) for i, r in zip(range(2, 7), reg)))
        for name, fs in (("golden P2-P6", golden_feats), ("own features", feats)):
            boxes, scores = model.proposals_with_scores(fs, img_shape)
            m = match_boxes(boxes, g["proposals"], scores, g["proposal_scores"], min_iou=0.99, score_atol=5e-3, coord_atol=0.5)
            same_len = len(boxes) == len(g["proposals"])
            rank = np.abs(boxes.numpy() - g["proposals"]).max() if same_len else float("nan")
            print(f"  proposals from {name}: {len(boxes)} vs {len(g['proposals'])}, unmatched "
                  f"{len(m.unmatched_actual)}/{len(m.unmatched_expected)}, paired max box diff {m.max_box_diff:.3e} px, "
                  f"score diff {m.max_score_diff:.3e}; rank-wise max box diff {rank:.3e}")
        for s in range(3):
            rois = torch.from_numpy(g[f"stage{s}_rois"])
            c, d = model.roi_stage(s, golden_feats, rois)
            print(f"  stage {s} on golden feats+rois: cls {rel(c, g[f'stage{s}_cls_score'])} | "
                  f"deltas {rel(d, g[f'stage{s}_bbox_pred'])}")
            if s < 2:
                nxt = decode_deltas(rois[:, 1:], torch.from_numpy(g[f"stage{s}_bbox_pred"]), STAGE_STDS[s], img_shape)
                print(f"  stage {s} decode of golden deltas vs golden stage{s + 1}_rois: "
                      f"{rel(nxt, g[f'stage{s + 1}_rois'][:, 1:])}")
        rois, cs, ds = model.refine(golden_feats, torch.from_numpy(g["proposals"]), img_shape)
        for s in range(3):
            print(f"  refine(golden feats, golden proposals) stage {s}: rois {rel(rois[s], g[f'stage{s}_rois'])} | "
                  f"cls {rel(cs[s], g[f'stage{s}_cls_score'])} | deltas {rel(ds[s], g[f'stage{s}_bbox_pred'])}")
        for name, fs in (("golden P2-P6", golden_feats), ("own features", None)):
            b, sc, lab = model.detect(torch.from_numpy(g["inputs"]), img_shape, scale_factor, 0.0, feats=fs)
            report_dets(f"detections from {name}", b.numpy(), sc.numpy(), lab.numpy(), g["det_bboxes"],
                        g["det_scores"], g["det_labels"])
    frame = g["image_bgr"]
    both = CascadeRCNNDetector(model, batch_size=2, score_thr=0.0, scale=(384, 256))(
        [frame, frame[:, ::-1].copy()])
    single = CascadeRCNNDetector(model, batch_size=1, score_thr=0.0, scale=(384, 256))([frame])
    report_dets("batched vs one at a time", both[0][:, :4], both[0][:, 4], None, single[0][:, :4], single[0][:, 4], None)
    report_dets("batched vs golden", both[0][:, :4], both[0][:, 4], None, g["det_bboxes"], g["det_scores"], None)


def report_dets(name, boxes, scores, labels, eb, es, el):
    m = match_boxes(boxes, eb, scores, es, labels, el, min_iou=0.99, score_atol=5e-3, coord_atol=0.5)
    rank_box = np.abs(boxes - eb).max() if len(boxes) == len(eb) else float("nan")
    rank_lab = int((labels != el).sum()) if labels is not None and len(labels) == len(el) else -1
    print(f"  {name}: {len(boxes)} vs {len(eb)}, unmatched {len(m.unmatched_actual)}/{len(m.unmatched_expected)} "
          f"(expected idx {m.unmatched_expected.tolist()}), paired max box diff {m.max_box_diff:.3e} px, score diff "
          f"{m.max_score_diff:.3e}, pairs out of rank {int((m.actual != m.expected).sum())}; rank-wise max box diff "
          f"{rank_box:.3e}, labels differing by rank {rank_lab}")


def flownet():
    from FlowNet2_src import ChannelNorm, Correlation, FlowNet2, Resample2d

    ops = np.load(DATA / "flownet2_ops.npz")
    t = lambda key: torch.from_numpy(ops[key])  # noqa: E731
    pad, kernel, displacement, stride1, stride2 = ops["corr_k3_args"].tolist()
    print("  Correlation:", rel(Correlation(20, 1, 20, 1, 2, 1)(t("corr_flownetc_in1"), t("corr_flownetc_in2")),
                               ops["corr_flownetc_out"]), "| k3:",
          rel(Correlation(pad, kernel, displacement, stride1, stride2, 1)(t("corr_k3_in1"), t("corr_k3_in2")),
              ops["corr_k3_out"]))
    print("  Resample2d:", rel(Resample2d()(t("resample_img"), t("resample_flow")), ops["resample_out"]),
          "| ChannelNorm:", rel(ChannelNorm()(t("channelnorm_in")), ops["channelnorm_out"]))
    f = np.load(DATA / "flownet2_forward.npz")
    model = FlowNet2()
    model.load_state_dict(det_fill(model.state_dict()))
    with torch.no_grad():
        print("  FlowNet2 full forward:", rel(model.eval()(torch.from_numpy(f["inputs"])), f["flow"]))


def cloze():
    from models import SelfCompleteNet4, SelfCompleteNetFull

    for golden, cls, of, rr in (("selfcomplete_full_of5_nf8.npz", SelfCompleteNetFull, 5, None),
                                ("selfcomplete_net4_of1_nf8.npz", SelfCompleteNet4, 1, None),
                                ("selfcomplete_full_of5_rawRange2_nf8.npz", SelfCompleteNetFull, 5, 2)):
        data = np.load(DATA / golden)
        model = cls(features_root=8, tot_raw_num=5, tot_of_num=of, border_mode="predict", rawRange=rr, useFlow=True,
                    padding=False)
        model.load_state_dict(det_fill(model.state_dict()))
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(data["x"]), torch.from_numpy(data["x_of"]))
        print(f"  {golden}:", "; ".join(f"{n} {rel(v, data[n])}" for n, v in
                                       zip(("of_outputs", "raw_outputs", "of_targets", "raw_targets"), out)))


if __name__ == "__main__":
    keys = ("OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    print("settings:", {k: os.environ[k] for k in keys if k in os.environ}, "threads", torch.get_num_threads(),
          "aten capability", torch.backends.cpu.get_cpu_capability())
    print("Cascade R-CNN:")
    cascade()
    print("FlowNet2:")
    flownet()
    print("cloze networks:")
    cloze()
