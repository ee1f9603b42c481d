"""The camera path: frames in, person tracks, overlays and plots out.

``source`` decodes video files, cameras and network streams; ``persons`` finds
people (MOTChallenge track files, OpenCV's HOG detector or a user's ONNX
detector); ``tracking`` links detections into tracks; ``events_io`` writes the
events file; ``render`` and ``timeline`` draw the overlay video and the score
plot; ``pipeline`` wires them to the feature networks and the online scorer.
These are the only modules of ``reclnet.runtime`` that import OpenCV or PyAV;
this package's ``__init__`` imports neither.
"""
