"""Images come in as viewers show them, checked against Pillow's reading.

Files are made the way phones, cameras and the web make them: JPEGs whose pixels are stored
turned or mirrored with the EXIF orientation (1..8) saying how to show them, a big-endian EXIF
with a date, a GPS position and a thumbnail (as phones write it), a Display P3 colour profile
(phones), a CMYK JPEG (print/stock photos), PNG/WebP/TIFF with their own ways of carrying
orientation and profiles, and the plain 16-bit, grey and RGBA files that must still work. The
reference is Pillow: ``ImageOps.exif_transpose`` for orientation, ``ImageCms`` to sRGB for
profiles, ``convert("RGB")`` for CMYK.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageOps
from skimage import data as skdata

from gfpgan.images import decode_image, encode_image, exif_for_output, read_image

# The pixels a camera stores for each orientation: the upright picture under the inverse of the
# transform a viewer applies (Pillow's exif_transpose applies 2: mirror, 3: 180, 4: flip,
# 5: transpose, 6: 90 clockwise, 7: transverse, 8: 90 counter-clockwise).
T = Image.Transpose
STORED = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
          6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}
DATE = "2021:07:14 10:20:30"


def portrait() -> np.ndarray:
    """A portrait photo (512 high, 384 wide) with a face MTCNN finds: scikit-image's astronaut."""
    return np.ascontiguousarray(skdata.astronaut()[:, 64:448])


def stored_as(upright: np.ndarray, orientation: int) -> Image.Image:
    im = Image.fromarray(upright)
    return im if STORED[orientation] is None else im.transpose(STORED[orientation])


def _ifd(order: str, entries, next_ifd: int, base: int) -> bytes:
    """One TIFF IFD at offset ``base``; entries are (tag, type, count, value bytes), values
    longer than 4 bytes go right after the IFD."""
    head = struct.pack(order + "H", len(entries))
    extra_at = base + 2 + 12 * len(entries) + 4
    body, extra = b"", b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            body += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            body += struct.pack(order + "HHII", tag, kind, count, extra_at + len(extra))
            extra += value + b"\0" * (len(value) % 2)
    return head + body + struct.pack(order + "I", next_ifd) + extra


def phone_exif(orientation: int, order: str = ">") -> bytes:
    """EXIF as a phone writes it (big-endian like iPhones): make, orientation, the date in the
    Exif IFD, a GPS position and a JPEG thumbnail in IFD1 (stored like the main picture). With
    the ``Exif\\0\\0`` prefix of a JPEG's APP1 segment, as Pillow's ``Exif.tobytes`` gives it."""
    def asc(s: str) -> bytes:
        return s.encode() + b"\0"

    def rat(*vals) -> bytes:
        return b"".join(struct.pack(order + "II", int(v * 100), 100) for v in vals)

    def short(v: int) -> bytes:
        return struct.pack(order + "H", v)

    def long_(v: int) -> bytes:
        return struct.pack(order + "I", v)

    thumb_buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(thumb_buf, "JPEG")
    thumb = thumb_buf.getvalue()
    # layout: header(8) IFD0 | ExifIFD | GPS IFD | IFD1 | thumbnail; sizes are computed in order
    ifd0 = lambda exif_at, gps_at, ifd1_at: _ifd(order, [  # noqa: E731
        (0x010F, 2, 6, asc("Phone")), (0x0110, 2, 8, asc("Model X")),
        (0x0112, 3, 1, short(orientation)), (0x8769, 4, 1, long_(exif_at)),
        (0x8825, 4, 1, long_(gps_at))], ifd1_at, 8)
    n0 = len(ifd0(0, 0, 0))
    exif_ifd = _ifd(order, [(0x9003, 2, 20, asc(DATE))], 0, 8 + n0)
    gps_at = 8 + n0 + len(exif_ifd)
    gps = _ifd(order, [(1, 2, 2, asc("N")), (2, 5, 3, rat(48, 51, 29.5)), (3, 2, 2, asc("E")),
                       (4, 5, 3, rat(2, 17, 40.2))], 0, gps_at)
    ifd1_at = gps_at + len(gps)
    ifd1 = lambda at: _ifd(order, [(0x0201, 4, 1, long_(at)),  # noqa: E731
                                   (0x0202, 4, 1, long_(len(thumb)))], 0, ifd1_at)
    thumb_at = ifd1_at + len(ifd1(0))
    head = (b"MM\0*" if order == ">" else b"II*\0") + struct.pack(order + "I", 8)
    return (b"Exif\0\0" + head + ifd0(8 + n0, gps_at, ifd1_at) + exif_ifd + gps + ifd1(thumb_at)
            + thumb)


def _s15(x: float) -> bytes:
    return struct.pack(">i", int(round(x * 65536)))


def display_p3_profile() -> bytes:
    """An ICC v2 matrix/TRC profile with Display P3's primaries (D50-adapted, as Apple's) and the
    sRGB tone curve: Pillow and littlecms ship only sRGB, so it is built here."""
    def xyz(x, y, z):
        return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)
    name = b"Display P3 (test)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 78
    lin = [(v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4) for v in
           np.linspace(0, 1, 1024)]
    curve = b"curv\0\0\0\0" + struct.pack(">I", 1024) + struct.pack(
        ">1024H", *(int(round(v * 65535)) for v in lin))
    tags = [(b"desc", desc), (b"cprt", b"text\0\0\0\0none\0"), (b"wtpt", xyz(0.9642, 1, 0.8249)),
            (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
            (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", curve)]
    offset = 128 + 4 + 12 * (len(tags) + 2)
    body, table = b"", []
    for sig, blob in tags:
        body += b"\0" * (-len(body) % 4)
        table.append((sig, offset + len(body), len(blob)))
        body += blob
    table += [(b"gTRC",) + table[-1][1:], (b"bTRC",) + table[-1][1:]]  # one curve, shared
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acspAPPL" + b"\0" * 24 + _s15(0.9642) + _s15(1)
              + _s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(table)) + b"".join(
        s + struct.pack(">II", o, n) for s, o, n in table) + body


def pillow_view(data: bytes) -> np.ndarray:
    """What a viewer shows, by Pillow: orientation applied, profile to sRGB, CMYK to RGB."""
    im = Image.open(io.BytesIO(data))
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    if icc and "srgb" not in ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(icc))).lower().replace(" ", ""):
        im = ImageCms.profileToProfile(im.convert("RGB") if im.mode == "RGBA" else im,
                                       ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                       ImageCms.createProfile("sRGB"), outputMode="RGB")
    return np.asarray(im.convert("RGB"))


def save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phone_jpeg_reads_upright_like_pillow(orientation):
    upright = portrait()
    jpeg = save(stored_as(upright, orientation), "JPEG", quality=92,
                exif=phone_exif(orientation))
    ours, ref = decode_image(jpeg), pillow_view(jpeg)
    assert ours.shape == ref.shape == (512, 384, 3)
    assert np.abs(ours.astype(int) - ref).max() <= 1  # the same JPEG decoded by two libjpegs
    assert np.abs(ours.astype(int) - upright).mean() < 4  # JPEG loss only: upright, not mirrored
    if orientation != 1:  # the stored pixels as they are would be another picture
        stored = np.asarray(stored_as(upright, orientation))
        assert stored.shape != upright.shape or np.abs(stored.astype(int) - upright).mean() > 20


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_in_png_webp_and_tiff(fmt, orientation):
    """PNG (eXIf chunk), WebP (EXIF chunk, as browsers and Android save) and TIFF (the
    orientation tag of the TIFF itself, as scanners and cameras' TIFFs have it)."""
    upright = portrait()[::2, ::2]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    if fmt == "TIFF":
        kw["tiffinfo"] = {0x0112: orientation}
    else:
        kw["exif"] = phone_exif(orientation, order="<")
    blob = save(stored_as(upright, orientation), fmt, **kw)
    ours = decode_image(blob)
    assert np.array_equal(ours, pillow_view(blob)) and np.array_equal(ours, upright)


def test_display_p3_and_cmyk_are_converted_like_pillow():
    upright = portrait()
    p3 = display_p3_profile()
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(p3))).startswith(
        "Display P3")
    # an iPhone photo: Display P3 and stored sideways
    iphone = save(stored_as(upright, 6), "JPEG", quality=92, exif=phone_exif(6), icc_profile=p3)
    web_png = save(Image.fromarray(upright), "PNG", icc_profile=p3)
    for blob in (iphone, web_png):
        ours, ref = decode_image(blob), pillow_view(blob)
        assert ours.shape == upright.shape and np.abs(ours.astype(int) - ref).max() <= 1
        # the conversion moves the saturated colours (the profile was not ignored)
        assert np.abs(ours.astype(int) - upright).max() > 20
    # an sRGB profile (most web images carry one) leaves the pixels as they are
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.array_equal(decode_image(save(Image.fromarray(upright), "PNG", icc_profile=srgb)),
                          upright)
    cmyk = save(Image.fromarray(upright).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    ours = decode_image(cmyk)
    assert np.array_equal(ours, np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB")))
    assert np.abs(ours.astype(int) - upright).mean() < 4


def test_sixteen_bit_grey_and_rgba_still_work(tmp_path):
    rgb = portrait()[::4, ::4]
    wide = np.minimum(rgb.astype(np.int64) * 257 + 3, 65535).astype(np.uint16)  # low byte: noise
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(
        tmp_path / "alpha.png")
    Image.fromarray(grey).save(tmp_path / "grey_sideways.jpg", exif=phone_exif(8),
                               quality=95)
    assert np.array_equal(read_image(tmp_path / "deep.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    assert np.array_equal(read_image(tmp_path / "alpha.png"), rgb)
    sideways = read_image(tmp_path / "grey_sideways.jpg")
    ref = pillow_view((tmp_path / "grey_sideways.jpg").read_bytes())
    assert sideways.shape == (rgb.shape[1], rgb.shape[0], 3)
    assert np.abs(sideways.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("order", [">", "<"])
def test_restored_jpeg_keeps_the_exif_with_orientation_1(order):
    upright = portrait()
    jpeg = save(stored_as(upright, 6), "JPEG", quality=92, exif=phone_exif(6, order))
    exif = exif_for_output(jpeg)
    out = encode_image(decode_image(jpeg), ".jpg", 95, exif=exif)
    im = Image.open(io.BytesIO(out))
    tags = im.getexif()
    assert tags[0x0112] == 1 and tags[0x010F] == "Phone" and tags[0x0110] == "Model X"
    assert tags.get_ifd(0x8769)[0x9003] == DATE
    gps = tags.get_ifd(0x8825)
    assert gps[1] == "N" and gps[3] == "E" and [float(x) for x in gps[2]] == [48, 51, 29.5]
    assert not tags.get_ifd(ExifTags.IFD.IFD1)  # IFD1 (the sideways thumbnail) is left out
    assert "exif" in Image.open(io.BytesIO(jpeg)).info and \
        Image.open(io.BytesIO(jpeg)).getexif().get_ifd(ExifTags.IFD.IFD1)  # ...which the input had
    # the output is upright for a viewer, and decodes the same with or without its EXIF
    assert np.abs(pillow_view(out).astype(int) - upright).mean() < 5
    assert np.array_equal(decode_image(out), decode_image(encode_image(decode_image(jpeg), ".jpg")))
    assert exif_for_output(save(Image.fromarray(upright), "JPEG")) is None
    assert encode_image(upright, ".png", exif=exif) == encode_image(upright, ".png")


def test_folder_of_frames_reads_upright(tmp_path):
    """Frames of a folder (a video made of photos, the collector's input) are read upright."""
    from gfpgan.inference.video import iter_frames, probe_video
    upright = portrait()[::2, ::2]
    for k in range(3):
        frame = np.roll(upright, 4 * k, axis=1)
        stored_as(frame, 6).save(tmp_path / f"f{k}.jpg", quality=95, exif=phone_exif(6))
    info = probe_video(tmp_path)
    assert (info.width, info.height) == (upright.shape[1], upright.shape[0])
    frames = list(iter_frames(info, 0, None))
    assert len(frames) == 3
    for k, fr in enumerate(frames):
        ref = pillow_view((tmp_path / f"f{k}.jpg").read_bytes())
        assert np.abs(fr.image.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("bad", [b"", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage",
                                 b"not an image at all"])
def test_bad_bytes_are_one_sentence(bad):
    from gfpgan.errors import UserError
    with pytest.raises(UserError) as e:
        decode_image(bad, "x.jpg")
    assert "x.jpg" in str(e.value) and "\n" not in str(e.value)


def test_portrait_phone_photos_restore_upright_with_their_face_and_exif(tmp_path, capsys):
    """``infer_image`` on a folder of the 8 orientations: every face found, every restored JPEG
    upright (compared with Pillow's view of the input away from the face) and carrying the
    input's EXIF with orientation 1."""
    from gfpgan.infer_image import main as infer_image
    from tests.test_video_job import _tiny_model

    upright = portrait()
    src = tmp_path / "photos"
    src.mkdir()
    for o in range(1, 9):
        stored_as(upright, o).save(src / f"o{o}.jpg", quality=92, exif=phone_exif(o))
    model = _tiny_model(tmp_path / "tiny.safetensors")
    assert infer_image(["-i", str(src), "-o", str(tmp_path / "out"), "--model", str(model),
                        "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "no face found" not in out.err and "restored 8 face(s) in 8 image(s)" in out.out
    faces = sorted(p.name for p in (tmp_path / "out" / "restored_faces").iterdir())
    assert faces == [f"o{o}_00.png" for o in range(1, 9)]
    for o in range(1, 9):
        view = pillow_view((src / f"o{o}.jpg").read_bytes())
        restored = tmp_path / "out" / "restored_imgs" / f"o{o}.jpg"
        got = pillow_view(restored.read_bytes())
        assert got.shape == view.shape == (512, 384, 3)
        below = slice(300, None)  # the body, away from the pasted face
        assert np.abs(got[below].astype(int) - view[below]).mean() < 4, o
        assert np.abs(got[below].astype(int) - view[below][:, ::-1]).mean() > 20, o
        tags = Image.open(restored).getexif()
        assert tags[0x0112] == 1 and tags.get_ifd(0x8769)[0x9003] == DATE
        assert tags.get_ifd(0x8825)[1] == "N"
