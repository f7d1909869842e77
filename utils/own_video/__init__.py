"""Your own videos through VEC: `test.py --video PATH …` scores them, `train.py --videos DIR` trains on them.

    source.py    what a source is (video file or folder of frames), its name, folder key and content
                 identity; decoding it once into a frames folder; the split over such folders
    labels.py    per-frame 0/1 labels files (--labels)
    model.py     which trained model scores the videos (--model)
    derived.py   a video's work folder as a dataset: the RunConfig pointing into it, derived.json
    outputs.py   frame_scores.csv and annotated.mp4 (the score plot is utils.report.plot_video_scores)
    pipeline.py  score_videos and train_on_videos: the benchmark pipeline's stages on those folders

User documentation: docs/own_videos.md.
"""
from utils.own_video.pipeline import score_videos, train_on_videos

__all__ = ["score_videos", "train_on_videos"]
