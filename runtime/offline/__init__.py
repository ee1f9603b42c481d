"""Offline evaluation: tubes, their geometry, temporal localization, video-AP, datasets.

``tubes`` reads and writes tube files; ``tube_geometry`` computes IoUs and NMS;
``localize`` turns per-frame track scores into detection tubes; ``video_ap``
evaluates them under the published presets; ``datasets`` loads the UCF101-24 and
JHMDB-21 ground truth (pickles only through ``safe_pickle``, which never runs
code); ``cli`` is ``reclnet eval``. Nothing is imported here, so importing one
module does not load the others.
"""
