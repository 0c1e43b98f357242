//! One ONNX graph fed named arrays: for graphs no role adapter covers, and for timing the
//! runtime alone (`cargo xtask bench models`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor};

use crate::error::ModelError;
use crate::runtime::{Array, Device, Runtime, run_named};

pub struct Graph {
    model: String,
    device: Device,
    session: Mutex<Session>,
}

impl Graph {
    /// A session on `path`, on the runtime's device; `model` names it in errors.
    pub fn open(rt: &Runtime, model: &str, path: &Path) -> Result<Self, ModelError> {
        let session = rt.session(model, path)?;
        Ok(Self { model: model.to_string(), device: rt.device(), session })
    }

    /// Run on host arrays; returns the named float outputs (all when `wanted` is empty).
    pub fn run(&self, inputs: &[(&str, &Array)], wanted: &[&str]) -> Result<HashMap<String, Array>, ModelError> {
        run_named(&self.session, &self.model, inputs, wanted)
    }

    /// Bind `inputs` once, copied to the session's device, and every output to device memory
    /// (ONNX Runtime I/O binding): repeated runs then move no data between host and device.
    pub fn bind(&self, inputs: &[(&str, &Array)]) -> Result<Bound<'_>, ModelError> {
        let err = |e: ort::Error| ModelError::session(&self.model, e);
        let device = match self.device {
            Device::Cuda => AllocationDevice::CUDA,
            Device::Cpu | Device::Auto => AllocationDevice::CPU,
        };
        let memory = MemoryInfo::new(device.clone(), 0, AllocatorType::Device, MemoryType::Default).map_err(err)?;
        let session = crate::runtime::lock(&self.session);
        let mut binding = session.create_binding().map_err(err)?;
        for (name, array) in inputs {
            let value = on_device(array, &device).map_err(|e| ModelError::input(&self.model, e))?;
            binding.bind_input(*name, &value).map_err(err)?;
        }
        for output in session.outputs() {
            binding.bind_output_to_device(output.name(), &memory).map_err(err)?;
        }
        drop(session);
        Ok(Bound { graph: self, binding })
    }
}

/// A graph with its inputs and outputs bound on the device ([`Graph::bind`]).
pub struct Bound<'a> {
    graph: &'a Graph,
    binding: ort::session::IoBinding,
}

impl Bound<'_> {
    /// One run on the bound inputs; outputs stay on the device, and the call returns once
    /// they are written.
    pub fn run(&mut self) -> Result<(), ModelError> {
        let err = |e: ort::Error| ModelError::session(&self.graph.model, e);
        let mut session = crate::runtime::lock(&self.graph.session);
        session.run_binding(&self.binding).map_err(err)?;
        self.binding.synchronize_outputs().map_err(err)
    }
}

/// A host array as a tensor on `device` (copied there once).
fn on_device(array: &Array, device: &AllocationDevice<'_>) -> ort::Result<DynValue> {
    fn put<T: PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: &[usize],
        data: &[T],
        device: &AllocationDevice<'_>,
    ) -> ort::Result<DynValue> {
        let host = Tensor::from_array((shape.to_vec(), data.to_vec()))?;
        if *device == AllocationDevice::CPU { Ok(host.into_dyn()) } else { Ok(host.to(device.clone(), 0)?.into_dyn()) }
    }
    match array {
        Array::F32(s, d) => put(s, d, device),
        Array::I64(s, d) => put(s, d, device),
        Array::I32(s, d) => put(s, d, device),
    }
}
