//! The one place where rvq chooses where the model runs: burn's flex backend on the CPU, or a
//! GPU through burn-wgpu. Everything else takes the resulting [`Device`].

use burn::prelude::*;
#[cfg(feature = "wgpu")]
use burn::tensor::wgpu::wgpu;

use crate::error::{Error, Result};

/// Where to run the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// burn's flex backend on the CPU.
    Cpu,
    /// A GPU (or any wgpu adapter, software ones included) through burn-wgpu.
    Wgpu,
    /// wgpu when a hardware GPU adapter is found, else the CPU.
    #[default]
    Auto,
}

impl Backend {
    /// Every backend, by the name [`Backend::name`] gives and `parse` takes.
    pub const ALL: [Backend; 3] = [Backend::Cpu, Backend::Wgpu, Backend::Auto];

    /// `cpu`, `wgpu` or `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?}: expected cpu, wgpu or auto"))
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A device chosen for a [`Backend`], with a description of what was chosen.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// The device to put tensors on.
    pub device: Device,
    /// The backend actually used (never `Auto`).
    pub backend: Backend,
    /// Human-readable description (the adapter's name for wgpu).
    pub description: String,
}

/// A wgpu adapter as the system reports it.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// Adapter name.
    pub name: String,
    /// Graphics API (Vulkan, Metal, ...).
    pub api: String,
    /// True for a software renderer (e.g. Mesa's lavapipe).
    pub software: bool,
}

impl Backend {
    /// The wgpu adapters present on the APIs burn-wgpu runs on (Vulkan, Metal, DX12, WebGPU),
    /// best first as wgpu ranks them. OpenGL adapters are left out: burn-wgpu does not use
    /// them. Empty without the `wgpu` feature.
    pub fn adapters() -> Vec<Adapter> {
        adapters()
    }

    /// Picks the device for this backend. `Wgpu` without any adapter is an error; `Auto`
    /// falls back to the CPU unless a hardware adapter is present (a software one would be
    /// slower than flex).
    pub fn choose(self) -> Result<Chosen> {
        choose(self)
    }
}

#[cfg(not(feature = "wgpu"))]
fn adapters() -> Vec<Adapter> {
    Vec::new()
}

#[cfg(feature = "wgpu")]
fn adapters() -> Vec<Adapter> {
    let instance = wgpu::Instance::default();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            Adapter {
                name: info.name,
                api: format!("{:?}", info.backend),
                software: info.device_type == wgpu::DeviceType::Cpu,
            }
        })
        .collect()
}

impl Backend {
    /// Images per inference batch when none is asked for. On the CPU small batches are
    /// fastest, their activations staying in cache (64 was the best of 32, 64, 256 and 1,024
    /// in docs/BENCHMARKS.md); a GPU needs large batches to fill its cores, and the largest
    /// layer of 1,024 32×32 images is 64 MB.
    pub fn default_batch(self) -> usize {
        match self {
            Backend::Wgpu => 1024,
            Backend::Cpu | Backend::Auto => CPU_BATCH,
        }
    }
}

const CPU_BATCH: usize = 64;

/// What choosing the GPU says in a build without it.
const NO_GPU_BUILD: &str = "wgpu: this build of rvq has no GPU backend (the `wgpu` feature is off)";

fn choose(backend: Backend) -> Result<Chosen> {
    let cpu = || Chosen {
        device: Device::flex(),
        backend: Backend::Cpu,
        description: format!(
            "cpu (burn flex, {} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    };
    match backend {
        Backend::Cpu => Ok(cpu()),
        Backend::Wgpu => {
            let found = adapters();
            let first = found.first().ok_or_else(|| {
                Error::Backend(if cfg!(feature = "wgpu") {
                    "wgpu: no wgpu adapter found (no GPU driver, no Vulkan ICD)".into()
                } else {
                    NO_GPU_BUILD.into()
                })
            })?;
            wgpu_device(first)
        }
        Backend::Auto => match adapters().iter().find(|a| !a.software) {
            Some(a) => wgpu_device(a).or_else(|_| Ok(cpu())),
            None => Ok(cpu()),
        },
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_: &Adapter) -> Result<Chosen> {
    Err(Error::Backend(NO_GPU_BUILD.into()))
}

#[cfg(feature = "wgpu")]
fn wgpu_device(adapter: &Adapter) -> Result<Chosen> {
    // burn registers its wgpu runtime once per process: a second initialisation is refused,
    // so every later choice gets the device the first one made.
    static DEVICE: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);
    let mut slot = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    let device = match slot.as_ref() {
        Some(device) => device.clone(),
        None => {
            let device = Device::wgpu_options()
                .init()
                .map_err(|e| Error::Backend(format!("wgpu initialisation failed: {e}")))?;
            slot.insert(device).clone()
        }
    };
    Ok(Chosen {
        device,
        backend: Backend::Wgpu,
        description: format!("wgpu ({}, {})", adapter.name, adapter.api),
    })
}
