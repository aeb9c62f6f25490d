//! `rvq train`, `sweep` and `export`: making models and reproducing the study.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rvq::Model;
use rvq::ModelConfig;
use rvq::train::{self, Event, TrainOptions};

use crate::args::*;
use crate::support::*;

pub(crate) fn run_train(a: TrainArgs, verbose: bool) -> Result<()> {
    let options = train_options(&a)?;
    // --force does not replace a checkpoint folder that a run did not write: refused first,
    // so the hint below never sends the user to --force for it.
    train::check_checkpoint_replaceable(&a.out)?;
    // A new run's first checkpoint would replace a stopped run's, and its end the model
    // folder's three files: any of them already there (a user's own config.json too) is
    // refused unless forced.
    if !a.resume && !a.force {
        // A finished run keeps its last checkpoint beside its model: only a folder without a
        // model is a stopped run that --resume continues.
        let finished = a.out.join("model.bpk").exists();
        if !finished && train::has_checkpoint(&a.out) {
            anyhow::bail!(
                "{}: holds a stopped run's checkpoint; continue that run with --resume, or replace it with --force",
                a.out.display()
            );
        }
        if let Some(name) = train::RUN_FILES.iter().find(|n| a.out.join(n).exists()) {
            anyhow::bail!(
                "{}: holds {name} already; train into another folder, or replace it with --force",
                a.out.display()
            );
        }
    }
    let chosen = choose_backend(a.backend, verbose)?;
    let splits = train::load_mixed_data(&a.data, a.valid, (a.crops, a.crop_size), a.seed)?;
    eprintln!("rvq: {}", splits.description);
    let progress = TrainProgress::new();
    let card = train::train(
        &options,
        &splits,
        &a.out,
        &chosen.device,
        &machine(&chosen),
        a.resume,
        a.stop_at,
        &mut |e| progress.on_event(e),
    )
    .with_context(|| format!("training into {}", a.out.display()))?;
    progress.bar.finish();
    let Some(card) = card else {
        println!(
            "stopped before the end of the run (--stop-at {}); the checkpoint is in {}; continue with --resume",
            a.stop_at.unwrap_or_default(),
            a.out.join("checkpoint").display()
        );
        return Ok(());
    };
    println!(
        "trained {} steps in {:.0} s; model written to {} (fingerprint {})",
        card.steps,
        card.wall_seconds,
        a.out.display(),
        card.fingerprint
    );
    Ok(())
}

/// The run's options from the flags, checked before any data is read.
fn train_options(a: &TrainArgs) -> Result<TrainOptions> {
    let config = ModelConfig {
        latent_dim: a.latent_dim,
        codebook_size: a.codebook_size,
        num_codebooks: if a.no_quantize { 0 } else { a.codebooks },
        grid_factor: a.grid_factor,
        channels: a.channels.clone(),
        res_blocks: a.res_blocks,
        res_channels: a.res_channels,
        quantize: !a.no_quantize,
        linear_path: !a.no_linear,
        depth_input: a.depth_input,
        upsample: a.upsample,
        up_res_blocks: a.up_res_blocks,
    };
    config.validate()?;
    let options = TrainOptions {
        config,
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        max_steps: a.max_steps,
        init: a.init,
        dropout_fraction: a.dropout,
        dropout_weights: a.dropout_weights.clone(),
        start_from: a.from.clone(),
        weight_decay: a.weight_decay,
        l1_fraction: a.l1_fraction,
        weight_average: a.weight_average,
        ..TrainOptions::default()
    };
    options.check()?;
    Ok(options)
}

/// Training's progress: a bar with the latest losses on a terminal, and the validations above
/// it; plain stderr lines every 50 steps where the bar is hidden (not a terminal, as in logs).
struct TrainProgress {
    bar: ProgressBar,
}

impl TrainProgress {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta} | {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self { bar }
    }

    /// Above the bar when it is drawn; plain stderr lines when it is hidden.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn on_event(&self, e: Event) {
        let bar = &self.bar;
        match e {
            Event::Start { step, total_steps } => {
                bar.set_length(total_steps as u64);
                bar.set_position(step as u64);
            }
            Event::Step {
                step,
                epoch,
                mse,
                loss,
                codebooks,
            } => {
                bar.set_position(step as u64);
                if step % 10 == 0 || !bar.is_hidden() {
                    let util: Vec<String> = codebooks
                        .iter()
                        .map(|s| format!("{:.0}%/{:.0}", s.utilisation * 100.0, s.perplexity))
                        .collect();
                    bar.set_message(format!(
                        "epoch {epoch} loss {loss:.5} mse {mse:.5} use/ppl {}",
                        util.join(" ")
                    ));
                }
                if bar.is_hidden() && step % 50 == 0 {
                    eprintln!("step {step} epoch {epoch} loss {loss:.5} mse {mse:.5}");
                }
            }
            Event::Validation { epoch, quality } => {
                let parts: Vec<String> = quality
                    .iter()
                    .map(|q| {
                        let name = if q.codebooks == 0 {
                            "ae".to_string()
                        } else {
                            format!("m={}", q.codebooks)
                        };
                        format!("{name}: {:.5} ({:.2} dB)", q.mse, q.psnr)
                    })
                    .collect();
                self.say(format!(
                    "validation after epoch {epoch}: {}",
                    parts.join(", ")
                ));
            }
            Event::Checkpoint { .. } => {}
            Event::Pca {
                images,
                truncation_mse,
            } => self.say(format!(
                "linear path from the PCA of {images} images' patches (truncation MSE {truncation_mse:.6})"
            )),
        }
    }
}

pub(crate) fn run_export(a: ExportArgs, verbose: bool) -> Result<()> {
    let outputs: Vec<&Path> = std::iter::once(&a.output)
        .chain(&a.reference)
        .map(|p| p.as_path())
        .collect();
    refuse_outputs(&outputs, a.force)?;
    let chosen = choose_backend(a.backend, verbose)?;
    let model = Model::load_or_default(a.model.as_deref(), &chosen.device)?;
    model.export_safetensors(&a.output)?;
    if let Some(reference) = &a.reference {
        model.export_reference(reference, a.reference_images as usize)?;
    }
    Ok(())
}

pub(crate) fn run_extend(a: ExtendArgs, verbose: bool) -> Result<()> {
    if a.out.exists() {
        anyhow::bail!(
            "{} exists; give a new folder for the extended model",
            a.out.display()
        );
    }
    let options = train::ExtendOptions {
        codebooks: a.codebooks,
        iterations: a.iterations,
        max_vectors: a.max_vectors,
        seed: a.seed,
    };
    let files = rvq::data::collect_images(&a.data)?;
    let chosen = choose_backend(a.backend, verbose)?;
    let model = Model::load_or_default(a.model.as_deref(), &chosen.device)?;
    let card = train::extend_codebooks(&model, &files, &options, &a.out)
        .with_context(|| format!("extending into {}", a.out.display()))?;
    for (level, r) in card.residual.iter().enumerate() {
        println!("level {:2}: mean squared latent residual {r:.6}", level + 1);
    }
    println!(
        "{} codebooks fitted on {} latent vectors of {} images; model written to {} (fingerprint {})",
        card.options.codebooks,
        card.vectors,
        card.images.len(),
        a.out.display(),
        card.fingerprint
    );
    Ok(())
}

pub(crate) fn run_sweep(a: SweepArgs, verbose: bool) -> Result<()> {
    if let Some(SweepAction::Report { dir }) = &a.action {
        let r = crate::sweep_report::report(dir)?;
        println!(
            "{} runs; figures in {}/figures: {}",
            r.rows,
            dir.display(),
            r.figures.join(", ")
        );
        if let Some(f) = r.fit {
            println!(
                "residual VQ: MSE ≈ {:.4} · bits^(−{:.4}) + {:.6} (RMS error {:.4} in log10 MSE)",
                f.a, f.b, f.c, f.rmse_log10
            );
        }
        println!("report: {}", dir.join("report.md").display());
        return Ok(());
    }
    let (Some(data), Some(grid), Some(out)) = (&a.data, &a.grid, &a.out) else {
        anyhow::bail!("rvq sweep needs --data, --grid and --out (or `rvq sweep report DIR`)");
    };
    let spec = crate::sweep::load_spec(grid)?;
    let runs = spec.expand(&ModelConfig::default())?;
    if out.join("results.csv").exists() && !a.resume {
        anyhow::bail!(
            "{}: a sweep is already there; continue it with --resume or choose another --out",
            out.join("results.csv").display()
        );
    }
    let chosen = choose_backend(a.backend, verbose)?;
    let sources = std::slice::from_ref(data);
    let splits = train::load_mixed_data(
        sources,
        a.valid,
        (train::DEFAULT_CROPS, train::DEFAULT_CROP_SIDE),
        0,
    )?;
    let options = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        max_steps: a.max_steps,
        ..TrainOptions::default()
    };
    let machine = machine(&chosen);
    let rows = crate::sweep::run(
        &runs,
        &options,
        &splits,
        out,
        &chosen.device,
        &machine,
        &mut |e| match e {
            crate::sweep::SweepEvent::RunStart { run, index, total } => {
                eprintln!("rvq: sweep run {}/{total}: {}", index + 1, run.id)
            }
            crate::sweep::SweepEvent::RunDone(row) => eprintln!(
                "rvq: {}: MSE {:.5} ({:.2} dB) at {} bits per image",
                row.run, row.mse, row.psnr, row.bits_per_image
            ),
            crate::sweep::SweepEvent::Train(Event::Validation { epoch, quality }) if verbose => {
                let mse: Vec<String> = quality
                    .iter()
                    .map(|q| format!("m={} {:.5}", q.codebooks, q.mse))
                    .collect();
                eprintln!("rvq:   epoch {epoch}: MSE {}", mse.join(", "))
            }
            crate::sweep::SweepEvent::Train(_) => {}
        },
    )?;
    println!(
        "{} runs finished; results in {}",
        rows.len(),
        out.join("results.csv").display()
    );
    Ok(())
}
