"""What a researcher looks at after test.py: plots of scores, ROC and top frames."""
from utils.report.plots import plot_frame_scores, plot_results, plot_roc, plot_top_frames

__all__ = ["plot_frame_scores", "plot_roc", "plot_top_frames", "plot_results"]
