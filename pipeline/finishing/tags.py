"""Tags that players read: title, album, artist, track number and total, language, cover.

Written with mutagen into a finished file (before it is renamed into place), one writer
per container: Vorbis comments for FLAC and Opus (the cover as a FLAC picture block, in
Opus as ``METADATA_BLOCK_PICTURE``), ID3v2.4 for MP3, iTunes atoms for M4A and M4B. An M4B
is marked as an audiobook (``stik`` = 2); its ``M4B `` brand is set by the muxer (see
``export.write_m4b``), as is the MP4 track language, which lives outside the tag atoms.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from mutagen import flac, id3, mp4, oggopus
from mutagen.flac import Picture


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str  # image/jpeg, image/png, or another image type FFmpeg can decode


@dataclass(frozen=True)
class Tags:
    title: str
    album: str | None = None
    artist: str | None = None
    track: int | None = None  # 1-based
    track_total: int | None = None
    language: str | None = None  # ISO 639-1 ("en") or 639-2 ("eng")
    cover: Cover | None = None
    genre: str | None = "Audiobook"
    audiobook: bool = False  # M4B: media kind "audiobook"

    def __post_init__(self) -> None:
        if self.track is not None and self.track < 1:
            raise ValueError(f"track numbers start at 1, got {self.track}")
        if self.track is not None and self.track_total is not None and self.track > self.track_total:
            raise ValueError(f"track {self.track} is past the total of {self.track_total}")


# ISO 639-1 -> 639-2/T for the languages a book here is likely to be in; ID3 and MP4 want three letters.
_ISO639_2 = {
    "en": "eng", "zh": "zho", "fr": "fra", "de": "deu", "es": "spa", "it": "ita", "pt": "por",
    "ru": "rus", "ja": "jpn", "ko": "kor", "nl": "nld", "sv": "swe", "pl": "pol", "ar": "ara",
}


def iso639_2(language: str | None) -> str | None:
    """Three-letter code for ``language`` ("en", "en-GB", "eng"), or None when unknown."""
    if not language:
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if len(code) == 3 and code.isalpha():
        return code
    return _ISO639_2.get(code)


def _picture(cover: Cover) -> Picture:
    picture = Picture()
    picture.type = 3  # front cover
    picture.mime = cover.mime
    picture.desc = "Cover"
    picture.data = cover.data
    return picture


def _track_text(tags: Tags) -> str | None:
    if tags.track is None:
        return None
    return f"{tags.track}/{tags.track_total}" if tags.track_total else str(tags.track)


def _vorbis_comments(tags: Tags) -> dict[str, list[str]]:
    fields = {
        "TITLE": tags.title, "ALBUM": tags.album, "ARTIST": tags.artist, "ALBUMARTIST": tags.artist,
        "GENRE": tags.genre, "LANGUAGE": tags.language,
        "TRACKNUMBER": None if tags.track is None else str(tags.track),
        "TRACKTOTAL": None if tags.track_total is None else str(tags.track_total),
    }
    return {key: [value] for key, value in fields.items() if value}


def _write_flac(path: Path, tags: Tags) -> None:
    audio = flac.FLAC(path)
    audio.delete()
    audio.clear_pictures()
    for key, values in _vorbis_comments(tags).items():
        audio[key] = values
    if tags.cover is not None:
        audio.add_picture(_picture(tags.cover))
    audio.save()


def _write_opus(path: Path, tags: Tags) -> None:
    audio = oggopus.OggOpus(path)
    audio.delete()
    for key, values in _vorbis_comments(tags).items():
        audio[key] = values
    if tags.cover is not None:
        audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(_picture(tags.cover).write()).decode("ascii")]
    audio.save()


def _write_mp3(path: Path, tags: Tags) -> None:
    frames = id3.ID3()
    encoding = id3.Encoding.UTF8
    frames.add(id3.TIT2(encoding=encoding, text=tags.title))
    if tags.album:
        frames.add(id3.TALB(encoding=encoding, text=tags.album))
    if tags.artist:
        frames.add(id3.TPE1(encoding=encoding, text=tags.artist))
        frames.add(id3.TPE2(encoding=encoding, text=tags.artist))
    if tags.genre:
        frames.add(id3.TCON(encoding=encoding, text=tags.genre))
    if _track_text(tags):
        frames.add(id3.TRCK(encoding=encoding, text=_track_text(tags)))
    if iso639_2(tags.language):
        frames.add(id3.TLAN(encoding=encoding, text=iso639_2(tags.language)))
    if tags.cover is not None:
        frames.add(id3.APIC(encoding=encoding, mime=tags.cover.mime, type=3, desc="Cover", data=tags.cover.data))
    frames.save(path, v2_version=4)


def _write_mp4(path: Path, tags: Tags) -> None:
    audio = mp4.MP4(path)
    audio.delete()
    audio.tags = audio.tags or mp4.MP4Tags()
    fields = {"\xa9nam": tags.title, "\xa9alb": tags.album, "\xa9ART": tags.artist, "aART": tags.artist,
              "\xa9gen": tags.genre}
    for key, value in fields.items():
        if value:
            audio.tags[key] = [value]
    if tags.track is not None:
        audio.tags["trkn"] = [(tags.track, tags.track_total or 0)]
    if tags.audiobook:
        audio.tags["stik"] = [2]  # media kind: audiobook
    if tags.cover is not None:
        kind = mp4.MP4Cover.FORMAT_PNG if tags.cover.mime.lower() == "image/png" else mp4.MP4Cover.FORMAT_JPEG
        audio.tags["covr"] = [mp4.MP4Cover(tags.cover.data, imageformat=kind)]
    audio.save()


_WRITERS = {".flac": _write_flac, ".opus": _write_opus, ".ogg": _write_opus, ".mp3": _write_mp3,
            ".m4a": _write_mp4, ".m4b": _write_mp4, ".mp4": _write_mp4}


def write_tags(path: str | Path, tags: Tags) -> None:
    """Replace the tags of the audio file at ``path`` (its type from the extension)."""
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"no tag writer for {path.name}; supported: {', '.join(sorted(_WRITERS))}")
    writer(path, tags)
