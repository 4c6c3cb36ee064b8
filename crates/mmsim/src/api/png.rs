//! Tiny real PNG images (avatars, emoji, seeded attachments, thumbnails and previews), encoded
//! by hand: uncompressed zlib "stored" blocks, so no image crate is needed.

/// A colour derived from some bytes (stable per user / file).
#[must_use]
pub fn color_for(seed: &[u8]) -> [u8; 3] {
    let h = seed.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, _] = h.to_le_bytes();
    [64 + a / 2, 64 + b / 2, 64 + c / 2]
}

/// A square avatar: a coloured disc on white.
#[must_use]
pub fn avatar(color: [u8; 3], size: u32) -> Vec<u8> {
    let r = i64::from(size) / 2;
    encode(size, size, |x, y| {
        let (dx, dy) = (i64::from(x) - r, i64::from(y) - r);
        if dx * dx + dy * dy <= r * r {
            color
        } else {
            [255, 255, 255]
        }
    })
}

/// A "photo": a diagonal gradient of `color`.
#[must_use]
pub fn picture(color: [u8; 3], width: u32, height: u32) -> Vec<u8> {
    let span = (width + height).max(1);
    encode(width, height, |x, y| {
        let t = (x + y) * 255 / span;
        let mix = |c: u8| u8::try_from((u32::from(c) * (255 - t) + 255 * t) / 255).unwrap_or(255);
        [mix(color[0]), mix(color[1]), mix(color[2])]
    })
}

/// Encode an RGB image given by `pixel(x, y)`.
pub fn encode(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_spec_example() {
        // CRC of "IEND" with no data is the well-known 0xAE426082.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn png_has_signature_and_sizes() {
        let png = picture([10, 20, 30], 4, 3);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[16..24], &[0, 0, 0, 4, 0, 0, 0, 3]);
    }
}
