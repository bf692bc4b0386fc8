//! `.npy` arrays. Reading takes every numeric layout numpy writes — C or Fortran order,
//! little- or big-endian, float16/32/64 and (where a reader allows them) integer dtypes —
//! through `npyz`, checks the header against the bytes actually present before anything is
//! allocated, and returns the values in logical C order. Samples are written as
//! little-endian f32 with the sample shape.

use crate::error::{Result, S3Error};
use npyz::{DType, Order, TypeChar, WriterBuilder};
use std::path::Path;

/// A batch of samples read from a `.npy` file.
#[derive(Debug, Clone)]
pub struct SampleArray {
    /// Number of samples (the leading axis).
    pub count: usize,
    /// `count × dim` values.
    pub data: Vec<f32>,
}

/// Any numeric `.npy` array with finite values: its shape and its values as f32, in C order.
#[derive(Debug, Clone)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Whether an array holds floating-point or integer numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numeric {
    /// float16, float32 or float64.
    Float,
    /// A signed or unsigned integer of 1, 2, 4 or 8 bytes.
    Int,
}

/// The `.npy` magic string, then the major and minor version and the header length.
const MAGIC: &[u8] = b"\x93NUMPY";
/// Bytes before the header text in format version 1 (2-byte header length).
const PREAMBLE_V1: usize = 10;
/// Bytes before the header text in format versions 2 and 3 (4-byte header length).
const PREAMBLE_V2: usize = 12;

/// A parsed `.npy` file whose header has been checked: a numeric dtype, and a shape whose
/// element count fits in memory and whose data bytes are all present in the file.
pub struct NpyArray<'a> {
    file: npyz::NpyFile<&'a [u8]>,
    shape: Vec<usize>,
    len: usize,
    dtype: npyz::TypeStr,
}

impl<'a> NpyArray<'a> {
    /// Parses the header of `bytes` (a whole `.npy` file); the error says what is wrong.
    pub fn parse(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        check_preamble(bytes)?;
        let mut rest = bytes;
        let header =
            npyz::NpyHeader::from_reader(&mut rest).map_err(|e| format!("not a .npy file: {e}"))?;
        let dtype = match header.dtype() {
            DType::Plain(ts) if numeric_of(&ts).is_some() => ts,
            other => {
                return Err(format!(
                    "dtype {}; expected a numeric array (float16, float32, float64 or an integer type)",
                    describe_dtype(&other)
                ));
            }
        };
        let shape: Vec<usize> = header
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        let item = dtype.size_field() as usize;
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let need = len.and_then(|n| n.checked_mul(item));
        match (len, need) {
            (Some(len), Some(need)) if need <= rest.len() => Ok(Self {
                file: npyz::NpyFile::with_header(header, rest),
                shape,
                len,
                dtype,
            }),
            _ => Err(format!(
                "truncated: the header declares shape {shape:?} of dtype {dtype} ({} bytes of \
                 data) but the file holds {} bytes after the header",
                need.map_or_else(|| "more than addressable".to_string(), |n| n.to_string()),
                rest.len()
            )),
        }
    }

    /// The array's shape, in logical (C) axis order.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Floating-point or integer elements.
    pub fn numeric(&self) -> Numeric {
        numeric_of(&self.dtype).expect("checked in parse")
    }

    /// numpy's type string of the elements, e.g. `<f8` or `>f4`.
    pub fn dtype(&self) -> String {
        self.dtype.to_string()
    }

    /// Every value, in logical C order (a Fortran-order file is transposed), passed through
    /// `convert`; a value it refuses (`None`) is an error naming its index and `expected`.
    pub fn into_values<T: Copy + Default>(
        self,
        convert: impl Fn(f64) -> Option<T>,
        expected: &str,
    ) -> std::result::Result<Vec<T>, String> {
        use npyz::half::f16;
        let c = Converter { convert, expected };
        match (self.dtype.type_char(), self.dtype.size_field()) {
            (TypeChar::Float, 2) => self.read(|v: f16| v.to_f64(), &c),
            (TypeChar::Float, 4) => self.read(|v: f32| f64::from(v), &c),
            (TypeChar::Float, 8) => self.read(|v: f64| v, &c),
            (TypeChar::Int, 1) => self.read(|v: i8| f64::from(v), &c),
            (TypeChar::Int, 2) => self.read(|v: i16| f64::from(v), &c),
            (TypeChar::Int, 4) => self.read(|v: i32| f64::from(v), &c),
            (TypeChar::Int, 8) => self.read(|v: i64| v as f64, &c),
            (TypeChar::Uint, 1) => self.read(|v: u8| f64::from(v), &c),
            (TypeChar::Uint, 2) => self.read(|v: u16| f64::from(v), &c),
            (TypeChar::Uint, 4) => self.read(|v: u32| f64::from(v), &c),
            (TypeChar::Uint, 8) => self.read(|v: u64| v as f64, &c),
            _ => Err(format!("dtype {}; not a numeric dtype", self.dtype)),
        }
    }

    /// Reads the stored elements as `S` and places each at its C-order position.
    fn read<S: npyz::Deserialize, T: Copy + Default>(
        self,
        to_f64: impl Fn(S) -> f64,
        c: &Converter<impl Fn(f64) -> Option<T>>,
    ) -> std::result::Result<Vec<T>, String> {
        let mut place = Placement::new(&self.shape, self.file.order());
        let shape = self.shape.clone();
        let reader = self.file.data::<S>().map_err(|e| e.to_string())?;
        let mut out = vec![T::default(); self.len];
        for (i, v) in reader.enumerate() {
            let v = to_f64(v.map_err(|e| format!("reading value {i}: {e}"))?);
            let at = place.next();
            out[at] = (c.convert)(v).ok_or_else(|| {
                format!(
                    "value at index {:?} is {v}; expected {}",
                    unravel(at, &shape),
                    c.expected
                )
            })?;
        }
        Ok(out)
    }
}

/// A conversion of each value and the words for what it accepts.
struct Converter<'e, F> {
    convert: F,
    expected: &'e str,
}

/// Where each stored element goes in C order: the identity for C order, a transposition
/// for Fortran order (whose first axis varies fastest).
struct Placement {
    fortran: bool,
    shape: Vec<usize>,
    /// C-order strides of the logical shape.
    strides: Vec<usize>,
    /// The Fortran multi-index of the next stored element, and its C offset.
    index: Vec<usize>,
    offset: usize,
    count: usize,
}

impl Placement {
    fn new(shape: &[usize], order: Order) -> Self {
        let mut strides = vec![1; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * shape[k + 1];
        }
        Self {
            fortran: order == Order::Fortran && shape.len() > 1,
            shape: shape.to_vec(),
            strides,
            index: vec![0; shape.len()],
            offset: 0,
            count: 0,
        }
    }

    /// The C offset of the next stored element.
    fn next(&mut self) -> usize {
        if !self.fortran {
            self.count += 1;
            return self.count - 1;
        }
        let at = self.offset;
        for k in 0..self.shape.len() {
            self.index[k] += 1;
            self.offset += self.strides[k];
            if self.index[k] < self.shape[k] {
                break;
            }
            self.offset -= self.index[k] * self.strides[k];
            self.index[k] = 0;
        }
        at
    }
}

/// Checks the magic string and that the declared header fits in the file, and that the
/// shape's element count does not overflow, before `npyz` allocates or multiplies anything.
fn check_preamble(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < PREAMBLE_V1 || !bytes.starts_with(MAGIC) {
        return Err(format!(
            "not a .npy file: {} bytes without the \\x93NUMPY magic string",
            bytes.len()
        ));
    }
    let (start, header_len) = match bytes[MAGIC.len()] {
        1 => (
            PREAMBLE_V1,
            u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        ),
        2 | 3 if bytes.len() >= PREAMBLE_V2 => (
            PREAMBLE_V2,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => return Err(format!("not a .npy file: unknown format version {v}")),
    };
    let Some(text) = bytes.get(start..start.saturating_add(header_len)) else {
        return Err(format!(
            "truncated: the header declares {header_len} bytes but the file has {}",
            bytes.len() - start
        ));
    };
    if let Some(dims) = declared_shape(&String::from_utf8_lossy(text))
        && dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .is_none()
    {
        return Err(format!(
            "shape {dims:?} holds more values than can be addressed"
        ));
    }
    Ok(())
}

/// The integers of the header's `'shape': (…)` tuple, when they can be read simply (npyz
/// parses the header fully afterwards).
fn declared_shape(header: &str) -> Option<Vec<u64>> {
    let after = &header[header.find("'shape'")? + "'shape'".len()..];
    let open = after.find('(')?;
    let close = after.find(')')?;
    after
        .get(open + 1..close)?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

fn numeric_of(ts: &npyz::TypeStr) -> Option<Numeric> {
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 2 | 4 | 8) => Some(Numeric::Float),
        (TypeChar::Int | TypeChar::Uint, 1 | 2 | 4 | 8) => Some(Numeric::Int),
        _ => None,
    }
}

fn describe_dtype(d: &DType) -> String {
    match d {
        DType::Plain(ts) => ts.to_string(),
        DType::Array(..) => "a sub-array dtype".into(),
        DType::Record(_) => "a structured (record) dtype".into(),
    }
}

/// The multi-index of flat C-order position `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d.max(1);
        i /= d.max(1);
    }
    idx
}

/// A finite f32, or `None` (out of float32 range, NaN or infinite).
pub fn finite_f32(v: f64) -> Option<f32> {
    let x = v as f32;
    x.is_finite().then_some(x)
}

/// What [`finite_f32`] accepts, in words.
pub const FINITE_F32: &str = "finite numbers within float32 range";

/// Reads `path` as an f32 array; `ints` allows integer dtypes (class labels) besides
/// floats. Errors name the file and what is wrong (dtype, truncation, a non-finite value
/// and its index).
fn read_numeric(path: &Path, ints: bool) -> Result<Array> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
    let npy = NpyArray::parse(&bytes).map_err(err)?;
    if !ints && npy.numeric() == Numeric::Int {
        return Err(err(format!(
            "dtype {}; expected float16, float32 or float64",
            npy.dtype()
        )));
    }
    let shape = npy.shape().to_vec();
    let data = npy.into_values(finite_f32, FINITE_F32).map_err(err)?;
    Ok(Array { shape, data })
}

/// Reads `path` as an f32 array, from any float or integer dtype, order and byte order.
pub fn read_array(path: &Path) -> Result<Array> {
    read_numeric(path, true)
}

/// Reads `path` as samples of `sample_shape`: the array must be `[n, *sample_shape]` or
/// `[n, prod(sample_shape)]` with n ≥ 1, of a float dtype, with finite values.
pub fn read_samples(path: &Path, sample_shape: &[usize]) -> Result<SampleArray> {
    let a = read_numeric(path, false)?;
    let shape = &a.shape;
    let dim: usize = sample_shape.iter().product();
    let ok_shape = shape.len() >= 2
        && shape[0] > 0
        && (shape[1..] == *sample_shape || (shape.len() == 2 && shape[1] == dim));
    if !ok_shape {
        return Err(S3Error::Array {
            path: path.into(),
            message: format!(
                "array shape {shape:?}; expected [n, {}] or [n, {dim}] with n ≥ 1",
                sample_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(SampleArray {
        count: shape[0],
        data: a.data,
    })
}

/// Writes `data` (`n × prod(sample_shape)`) as an f32 array of shape `[n, *sample_shape]`.
pub fn write_samples(path: &Path, data: &[f32], sample_shape: &[usize]) -> Result<()> {
    let dim: usize = sample_shape.iter().product::<usize>().max(1);
    let mut shape = vec![(data.len() / dim) as u64];
    shape.extend(sample_shape.iter().map(|&d| d as u64));
    let file = std::fs::File::create(path).map_err(|e| S3Error::io(path, e))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| S3Error::io(path, e))?;
    w.extend(data.iter().copied())
        .map_err(|e| S3Error::io(path, e))?;
    w.finish().map_err(|e| S3Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_samples(&p, &data, &[3, 2, 2]).unwrap();
        let back = read_samples(&p, &[3, 2, 2]).unwrap();
        assert_eq!(back.count, 2);
        assert_eq!(back.data, data);
        // The flat form [n, dim] is accepted too.
        let back = read_samples(&p, &[12]).unwrap_err();
        assert!(back.to_string().contains("expected [n, 12]"));
    }

    /// A v1 `.npy` with a hand-written header and raw data bytes.
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while !(PREAMBLE_V1 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = MAGIC.to_vec();
        b.extend([1, 0]);
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn fortran_order_is_transposed_to_c_order() {
        // Logical [[0, 1, 2], [3, 4, 5]] stored column by column.
        let data: Vec<u8> = [0u8, 3, 1, 4, 2, 5].to_vec();
        let bytes = npy("|u1", true, "(2, 3)", &data);
        let a = NpyArray::parse(&bytes).unwrap();
        let v = a.into_values(|v| Some(v as u8), "").unwrap();
        assert_eq!(v, [0, 1, 2, 3, 4, 5]);
        // Three axes: logical value = 100i + 10j + k, stored with i fastest.
        let (d0, d1, d2) = (2, 3, 4);
        let mut stored = Vec::new();
        for k in 0..d2 {
            for j in 0..d1 {
                for i in 0..d0 {
                    stored.push((100 * i + 10 * j + k) as u8);
                }
            }
        }
        let bytes = npy("|u1", true, "(2, 3, 4)", &stored);
        let v = NpyArray::parse(&bytes)
            .unwrap()
            .into_values(|v| Some(v as u8), "")
            .unwrap();
        let expected: Vec<u8> = (0..24)
            .map(|f| {
                let idx = unravel(f, &[d0, d1, d2]);
                (100 * idx[0] + 10 * idx[1] + idx[2]) as u8
            })
            .collect();
        assert_eq!(v, expected);
    }

    #[test]
    fn truncated_and_overflowing_headers_are_refused_before_reading() {
        let bytes = npy("<f8", false, "(1000000000000,)", &[0; 16]);
        let e = NpyArray::parse(&bytes).err().unwrap();
        assert!(e.contains("truncated"), "{e}");
        let bytes = npy("<f8", false, "(4294967296, 4294967296, 4)", &[]);
        let e = NpyArray::parse(&bytes).err().unwrap();
        assert!(e.contains("more values"), "{e}");
        let mut bytes = npy("<f4", false, "(2,)", &[0; 8]);
        bytes[8] = 0xff;
        let e = NpyArray::parse(&bytes).err().unwrap();
        assert!(e.contains("truncated"), "{e}");
        let e = NpyArray::parse(b"\x93NUMPY").err().unwrap();
        assert!(e.contains("not a .npy"), "{e}");
        let e = NpyArray::parse(&npy("|b1", false, "(1,)", &[1]))
            .err()
            .unwrap();
        assert!(e.contains("numeric"), "{e}");
    }
}
