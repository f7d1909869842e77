"""What a researcher looks at after test.py: plots of scores, ROC, top frames, and report.html."""
from utils.report.html import write_report
from utils.report.plots import (plot_frame_and_heat_map, plot_frame_scores, plot_results, plot_roc, plot_top_frames,
                                plot_video_scores)

__all__ = ["plot_frame_scores", "plot_roc", "plot_top_frames", "plot_results", "plot_video_scores",
           "plot_frame_and_heat_map", "write_report"]
