"""Where a generated video goes: a movie strip in the add-on's own sequencer scene (made on first use, so that the
scene being animated renders what it rendered before) or in the sequencer scene, on a free channel; and, on request,
the video as the background image of the armature's camera, behind the armature, in time with the motion.

Strips are read through :func:`strip_span`: Blender 5.1 renamed ``frame_final_start``/``frame_final_end`` to
``left_handle``/``right_handle`` (the old names are deprecated, their removal planned for 6.0)."""

from __future__ import annotations

from pathlib import Path

import bpy

from .armature import fps_fraction

#: Custom property marking the add-on's own sequencer scene (found by it, whatever the user renames it to).
VIDEO_SCENE_TAG = "mtvcrafter_videos"
VIDEO_SCENE_NAME = "MTVCrafter Videos"
#: Custom properties of an armature whose motion was animated: its last video, and the scene frame it starts at.
VIDEO_PROP = "mtvcrafter_video"
VIDEO_START_PROP = "mtvcrafter_video_start"
#: Custom property marking the movie clips Show Video Behind loads (so a second call replaces, never stacks).
CLIP_TAG = "mtvcrafter_video"


# --- the sequencer -----------------------------------------------------------------------------------------------


def strip_span(strip) -> tuple[int, int]:
    """A strip's first frame and the frame after its last, on the timeline: ``left_handle``/``right_handle``
    (Blender 5.1+), else ``frame_final_start``/``frame_final_end`` (4.2–5.0)."""
    if hasattr(strip, "left_handle"):
        return int(strip.left_handle), int(strip.right_handle)
    return int(strip.frame_final_start), int(strip.frame_final_end)


def editor_strips(editor):
    """The top-level strips of a sequence editor (``strips`` in 4.4+, ``sequences`` in 4.2)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def free_channel(strips, frame_start: int, frame_end: int) -> int:
    """The lowest channel with no strip between ``frame_start`` and ``frame_end`` (excluded)."""
    busy = set()
    for strip in strips:
        first, after = strip_span(strip)
        if first < frame_end and after > frame_start:
            busy.add(strip.channel)
    channel = 1
    while channel in busy:
        channel += 1
    return channel


def video_scene():
    """The add-on's own sequencer scene, or None before its first video."""
    return next((scene for scene in bpy.data.scenes if scene.get(VIDEO_SCENE_TAG)), None)


def make_video_scene(fps: float, size: tuple[int, int] | None = None):
    """The add-on's own sequencer scene, made now: the videos' frame rate, the first video's size, the Standard view
    transform (a strip looks as the file does)."""
    scene = bpy.data.scenes.new(VIDEO_SCENE_NAME)
    scene[VIDEO_SCENE_TAG] = True
    scene.render.fps, scene.render.fps_base = fps_fraction(fps)
    if size and all(size):
        scene.render.resolution_x, scene.render.resolution_y = int(size[0]), int(size[1])
        scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.frame_start = scene.frame_end = 1
    scene.sequence_editor_create()
    return scene


def add_movie_strip(scene, name: str, filepath: str, frame_start: int, frames: int):
    """A movie strip of ``filepath`` (``frames`` long) at ``frame_start`` on a free channel of ``scene`` (prefetch
    off meanwhile), scaled to fit the scene's frame; the add-on's own scene's frame range grows to show it whole."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor_strips(editor)
    channel = free_channel(list(strips), frame_start, frame_start + frames)
    prefetch = getattr(editor, "use_prefetch", False)
    if prefetch:
        editor.use_prefetch = False  # no frame being prefetched while the strip is added
    try:
        # fitted to the scene's frame: a 512-pixel video fills it rather than a corner of a larger frame
        strip = strips.new_movie(
            name=name, filepath=filepath, channel=channel, frame_start=frame_start, fit_method="FIT"
        )
    finally:
        if prefetch:
            editor.use_prefetch = True
    if scene.get(VIDEO_SCENE_TAG):
        first, after = strip_span(strip)
        scene.frame_end = max(scene.frame_end, after - 1)
        scene.frame_start = first if len(strips) == 1 else min(scene.frame_start, first)  # from its first video
    return strip


# --- the video behind the armature -------------------------------------------------------------------------------


def show_video_behind(camera, video: str | Path, frame_start: int, opacity: float = 0.5):
    """``video`` as ``camera``'s background image (a movie clip, drawn behind the scene in the camera view) at
    ``opacity``, its first frame at scene frame ``frame_start``: a clip an earlier call loaded is replaced, the
    camera's other background images are kept. Returns the movie clip."""
    data = camera.data
    clip = bpy.data.movieclips.load(str(video), check_existing=True)
    clip[CLIP_TAG] = True
    clip.frame_start, clip.frame_offset = int(frame_start), 0
    ours = [bg for bg in data.background_images if bg.source == "MOVIE_CLIP" and bg.clip and bg.clip.get(CLIP_TAG)]
    background = ours[0] if ours else data.background_images.new()
    old = background.clip
    background.source = "MOVIE_CLIP"
    background.use_camera_clip = False  # this clip, not the scene's active one
    background.clip = clip
    background.alpha = opacity
    background.display_depth = "BACK"
    background.frame_method = "FIT"
    background.show_background_image = True
    data.show_background_images = True
    if old is not None and old != clip and old.users == 0:
        bpy.data.movieclips.remove(old)
    return clip


def hide_video_behind(camera) -> bool:
    """Hide the video Show Video Behind put behind ``camera``'s view. Returns whether there was one."""
    found = False
    for background in camera.data.background_images:
        if background.source == "MOVIE_CLIP" and background.clip and background.clip.get(CLIP_TAG):
            background.show_background_image = False
            found = True
    return found


def video_shown_behind(camera) -> bool:
    """Whether ``camera`` shows a video of ours behind the scene."""
    return (
        camera is not None
        and any(
            bg.source == "MOVIE_CLIP" and bg.clip and bg.clip.get(CLIP_TAG) and bg.show_background_image
            for bg in camera.data.background_images
        )
        and camera.data.show_background_images
    )
