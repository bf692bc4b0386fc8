//! Files: `.npy` arrays in and out, and sample grids as PNG pictures.

pub mod grid;
pub mod images;
pub mod npy;
