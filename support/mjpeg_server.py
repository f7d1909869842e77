"""A paced MJPEG camera on this machine: a clip served as `multipart/x-mixed-replace` over HTTP.

For trying `test.py --live` without a camera, and for the tests and benchmarks/live.py:

    python -m support.mjpeg_server clip.mp4 [--fps 25] [--port 8080] [--loop]
    python test.py --live http://127.0.0.1:8080/video.mjpg

Each connection gets the frames from where the previous one stopped (the first from frame
0), one every 1/fps seconds, as a live camera would; `plan` (connection → how many frames
it gets before the server cuts it) makes a camera that drops mid-stream. Once the clip's
frames are all sent (and not looping), or the plan is used up, the server refuses
connections and stops serving by itself.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from utils.infra.errors import VECError
from utils.infra.video_frames import declared_properties, read_video_frames

BOUNDARY = b"frame"


class PacedMJPEGServer:
    """`with PacedMJPEGServer(jpegs, fps) as server: … server.url …` (binds 127.0.0.1 on a free port by default)."""

    def __init__(self, jpegs: list[bytes], fps: float, *, host: str = "127.0.0.1", port: int = 0,
                 plan: list[int] | None = None, loop: bool = False) -> None:
        if not jpegs or not fps > 0:
            raise ValueError("an MJPEG server needs frames and a positive frame rate")
        self.jpegs, self.fps, self.plan, self.loop = list(jpegs), float(fps), list(plan or []), loop
        self.sent = 0  # frames sent over all connections
        self.connections = 0
        self.finished = threading.Event()  # every frame (or the whole plan) is served
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the client reports what matters
                pass

            def do_GET(self) -> None:
                server._serve(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/video.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server", daemon=True)

    def __enter__(self) -> "PacedMJPEGServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.finished.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            connection = self.connections
            self.connections += 1
            refuse = self.finished.is_set() or (self.plan and connection >= len(self.plan))
        if refuse:
            handler.send_error(503, "the clip is over")
            return
        quota = self.plan[connection] if self.plan else None
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        started, count = time.monotonic(), 0
        try:
            while quota is None or count < quota:
                if self.finished.is_set() or (self.sent >= len(self.jpegs) and not self.loop):
                    break
                delay = started + count / self.fps - time.monotonic()
                if delay > 0 and self.finished.wait(delay):
                    break
                jpeg = self.jpegs[self.sent % len(self.jpegs)]
                handler.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                    + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                handler.wfile.flush()
                self.sent, count = self.sent + 1, count + 1
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away
        finally:
            if (self.sent >= len(self.jpegs) and not self.loop) or (self.plan and connection + 1 >= len(self.plan)):
                self.finished.set()
        handler.close_connection = True


def encode_jpegs(frames, quality: int = 90) -> list[bytes]:
    jpegs = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("a frame cannot be encoded as JPEG")
        jpegs.append(data.tobytes())
    return jpegs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a video file as a paced MJPEG camera on this machine.")
    parser.add_argument("video", help="a video file OpenCV decodes")
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the file's, else 25)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    args = parser.parse_args(argv)
    try:
        fps = args.fps or declared_properties(args.video).fps or 25.0
        frames = read_video_frames(args.video)
    except VECError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not frames:
        print(f"error: {args.video} gives no frame", file=sys.stderr)
        return 2
    with PacedMJPEGServer(encode_jpegs(frames), fps, host=args.host, port=args.port, loop=args.loop) as server:
        print(f"serving {len(frames)} frames of {args.video} at {fps:g} frames/s on {server.url} (Ctrl-C stops)")
        try:
            while not server.finished.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
