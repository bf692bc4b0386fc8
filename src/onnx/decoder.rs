//! A decoder graph applied to final samples before metrics and pictures (e.g. the VAE
//! decoder of a latent diffusion model, with its latent scaling baked into the graph).

use super::config::{DecoderConfig, ModelConfigPath};
use super::session::{Input, OnnxSession, SessionOptions};
use crate::error::{Result, S3Error};
use std::path::Path;

/// A loaded decoder.
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    session: OnnxSession,
    in_shape: Vec<usize>,
    batch_size: usize,
}

impl Decoder {
    /// Loads the config's `decoder` graph for samples of `sample_shape` and checks its input
    /// and output names and shapes; errors name the config field and the graph's shapes.
    pub fn load(
        c: &DecoderConfig,
        config: &ModelConfigPath,
        sample_shape: &[usize],
        options: SessionOptions,
        batch_size: usize,
    ) -> Result<Self> {
        let session = OnnxSession::load(&config.resolve(&c.onnx), options)?;
        let ctx = format!("{} field", config.file().display());
        session.require_shape(
            &c.input,
            true,
            sample_shape,
            &format!("{ctx} decoder.input"),
        )?;
        session.require_shape(
            &c.output,
            false,
            &c.output_shape,
            &format!("{ctx} decoder.output (with decoder.output_shape)"),
        )?;
        Ok(Self {
            config: c.clone(),
            session,
            in_shape: sample_shape.to_vec(),
            batch_size: batch_size.max(1),
        })
    }

    /// The graph file.
    pub fn path(&self) -> &Path {
        self.session.path()
    }

    /// The shape of one decoded output.
    pub fn output_shape(&self) -> &[usize] {
        &self.config.output_shape
    }

    /// Decodes `x` (`n × prod(sample_shape)` values) into `n × prod(output_shape)` values,
    /// in batches.
    pub fn decode(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (din, dout) = (
            self.in_shape.iter().product::<usize>(),
            self.config.output_shape.iter().product::<usize>(),
        );
        if !x.len().is_multiple_of(din) {
            return Err(S3Error::Shape(format!(
                "{}: {} values are not whole samples of {din}",
                self.path().display(),
                x.len()
            )));
        }
        let mut out = vec![0f32; x.len() / din * dout];
        for (xc, oc) in x
            .chunks(self.batch_size * din)
            .zip(out.chunks_mut(self.batch_size * dout))
        {
            let rows = xc.len() / din;
            let mut shape = vec![rows];
            shape.extend(&self.in_shape);
            self.session.run(
                &[Input {
                    name: &self.config.input,
                    shape,
                    data: xc,
                }],
                &self.config.output,
                oc,
            )?;
        }
        Ok(out)
    }
}
