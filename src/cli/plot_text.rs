//! Text for `s3 runs plot` in an embedded font (DejaVu Sans, from the `dejavu` crate), so a
//! picture looks the same on every machine without system fonts.
//!
//! [`GlyphText`] wraps a plotters backend. It measures text with the font's own metrics (so
//! label areas fit the text) and, on a bitmap, draws the glyphs itself with `ab_glyph`; an SVG
//! backend keeps writing `<text>` elements for the viewer's sans-serif. Drawing text here
//! instead of through plotters' `ab_glyph` feature keeps plotters' font handling unchanged for
//! every other user of the crate in the build (criterion's reports).

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// plotters' font size over the em size it renders (its SVG backend writes `size / 1.24`).
const PLOTTERS_SIZE_PER_EM: f64 = 1.24;
/// Baseline below the anchor of top-anchored text, in em (as the SVG backend's `dy`).
const TOP_BASELINE_EM: f32 = 0.76;
/// Baseline below the anchor of centred text, in em: half DejaVu Sans' x-height (0.546 em),
/// the SVG backend's `0.5ex`.
const CENTRE_BASELINE_EM: f32 = 0.273;

/// A backend whose text is measured, and on a bitmap drawn, in the embedded font.
pub(crate) struct GlyphText<B> {
    inner: B,
    font: FontRef<'static>,
    /// Draw glyphs as pixels (bitmap); otherwise hand text to the inner backend (SVG).
    raster: bool,
}

/// The embedded font.
fn font() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans::regular()).expect("the embedded DejaVu Sans is valid")
}

impl<B: DrawingBackend> GlyphText<B> {
    /// Wraps a bitmap backend: text is drawn as glyph pixels.
    pub(crate) fn raster(inner: B) -> Self {
        GlyphText {
            inner,
            font: font(),
            raster: true,
        }
    }

    /// Wraps a vector backend: text is only measured here.
    pub(crate) fn vector(inner: B) -> Self {
        GlyphText {
            inner,
            font: font(),
            raster: false,
        }
    }

    /// The em size in pixels and the matching `ab_glyph` scale of a plotters font size.
    fn scale(&self, size: f64) -> (f32, PxScale) {
        let em = (size / PLOTTERS_SIZE_PER_EM) as f32;
        let units = self.font.units_per_em().unwrap_or(1.0);
        (em, PxScale::from(em * self.font.height_unscaled() / units))
    }

    /// Width and height in pixels of `text` at plotters font size `size`.
    fn measure(&self, text: &str, size: f64) -> (f32, f32) {
        let (_, scale) = self.scale(size);
        let font = self.font.as_scaled(scale);
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                width += font.kern(p, id);
            }
            width += font.h_advance(id);
            prev = Some(id);
        }
        (width, font.height())
    }

    /// Draws `text` as glyph pixels, anchored and rotated as plotters asks.
    fn draw_glyphs<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        let color = style.color();
        let (em, scale) = self.scale(style.size());
        let (width, _) = self.measure(text, style.size());
        let x0 = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let baseline = em
            * match style.anchor().v_pos {
                VPos::Top => TOP_BASELINE_EM,
                VPos::Center => CENTRE_BASELINE_EM,
                VPos::Bottom => -CENTRE_BASELINE_EM,
            };
        let font = self.font.as_scaled(scale);
        let transform = style.transform();
        let mut pixels = Vec::new();
        let mut caret = x0;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                caret += font.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(caret, baseline));
            caret += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let x = bounds.min.x as i32 + gx as i32;
                let y = bounds.min.y as i32 + gy as i32;
                pixels.push((transform.transform(x, y), coverage));
            });
        }
        for ((x, y), coverage) in pixels {
            let shade = BackendColor {
                alpha: color.alpha * f64::from(coverage),
                rgb: color.rgb,
            };
            self.inner.draw_pixel((pos.0 + x, pos.1 + y), shade)?;
        }
        Ok(())
    }
}

impl<B: DrawingBackend> DrawingBackend for GlyphText<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        if !self.raster {
            return self.inner.draw_text(text, style, pos);
        }
        if style.color().alpha == 0.0 {
            return Ok(());
        }
        self.draw_glyphs(text, style, pos)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (w, h) = self.measure(text, style.size());
        Ok((w.ceil() as u32, h.ceil() as u32))
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }
}
