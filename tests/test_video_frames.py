"""utils/infra/video_frames.py, the one reader of video files, on real files written by OpenCV here; and the test
camera's command line (support/mjpeg_server.py) on a file that is no video."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from support import mjpeg_server
from utils.infra.errors import VECError
from utils.infra.video_frames import VideoFile, declared_properties, iter_video_frames, read_video_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame 64x48 MJPG .avi at 10 frames/s, each frame a different grey with a moving square."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        frame[10:20, 4 * i:4 * i + 10] = 255
        writer.write(frame)
    writer.release()
    return path


def test_frames_are_opencvs_own_in_order(clip):
    capture = cv2.VideoCapture(str(clip))
    expected = []
    while (read := capture.read())[0]:
        expected.append(read[1])
    capture.release()
    frames = read_video_frames(clip)
    assert len(frames) == len(expected) == 12
    assert all(f.dtype == np.uint8 and f.shape == (48, 64, 3) and np.array_equal(f, e) for f, e in zip(frames, expected))
    assert all(np.array_equal(f, e) for f, e in zip(iter_video_frames(clip), expected))


def test_what_the_container_declares(clip):
    declared = declared_properties(clip)
    assert (declared.frames, declared.width, declared.height) == (12, 64, 48)
    assert declared.fps == pytest.approx(10.0)
    with VideoFile(clip) as video:  # declarations and frames from one capture
        assert video.declared == declared and sum(1 for _ in video.frames()) == 12


@pytest.mark.parametrize("content", [b"", b"just some notes\n", bytes(range(256)) * 20])
def test_a_file_opencv_cannot_open_is_one_line(tmp_path, content):
    path = tmp_path / "notes.mp4"
    path.write_bytes(content)
    with pytest.raises(VECError) as default:
        read_video_frames(path)
    assert str(default.value).startswith(f"OpenCV cannot open {path} as a video") and "\n" not in str(default.value)
    with pytest.raises(VECError, match=r"^not a clip; use another$"):
        declared_properties(path, cannot_open="not a clip; use another")
    # must_open=False: OpenCV's own answer, nothing declared and no frame
    assert read_video_frames(path, must_open=False) == []
    assert declared_properties(path, must_open=False).frames is None


def test_the_test_camera_refuses_a_file_that_is_no_video(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("no video here\n")
    assert mjpeg_server.main([str(notes), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: OpenCV cannot open {notes} as a video (not a video file, a damaged one or an unsupported "
                   "codec); convert it to .mp4 or .avi"]
